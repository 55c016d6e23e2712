"""Doctor check of agent integrations: every file setup wrote still says the current port, token and bundle.

It asks cordon-setup to *plan* the integration again from its manifest (exactly what ``cordon setup NAME``
would write now) and compares; nothing is written.
"""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path
from typing import Any

from cordon_doctor.context import DoctorContext
from cordon_doctor.finding import Finding, fail, ok, warn


def _setup_fix(ctx: DoctorContext, name: str) -> str:
    from cordon_setup.context import home_dir
    from cordon_setup.integrations import INTEGRATIONS, own_config

    if name in INTEGRATIONS and own_config(name, home_dir(ctx.environ)) is not None:
        return f"cordon setup {name}"  # Hermes, OpenClaw: a scope of their own, no flag
    if ctx.explicit_config:
        return f"cd {shlex.quote(str(ctx.paths.config_path.parent))} && cordon setup {name}"
    return f"cordon setup {name}{ctx.scope_flag}"


def _loose_private_files(changes: list[Any]) -> list[tuple[Path, int]]:
    """(path, mode) of each file that holds the proxy token and lets group or others read it."""
    loose = []
    for change in changes:
        if not change.private:
            continue
        try:
            mode = stat.S_IMODE(os.lstat(change.path).st_mode)
        except OSError:
            continue
        if mode & 0o077:
            loose.append((Path(change.path), mode))
    return loose


def check_integrations(ctx: DoctorContext) -> list[Finding]:
    """One finding per integration set up in this scope."""
    from cordon_setup.base import token_value
    from cordon_setup.context import SetupContext, home_dir
    from cordon_setup.envvars import env_contract
    from cordon_setup.errors import IntegrationError
    from cordon_setup.integrations import installed, load_manifest, plan_integration

    if ctx.config is None:
        return []
    found: list[Finding] = [*check_node_hook(ctx)]
    for name in installed(ctx.paths):
        check = f"integration.{name}"
        fix = _setup_fix(ctx, name)
        try:
            manifest = load_manifest(ctx.paths, name)
        except IntegrationError as exc:
            found.append(fail(check, str(exc), fix))
            continue
        if manifest is None:
            continue
        token_name = str(manifest.get("token") or name)
        token = token_value(ctx.paths, token_name)
        if token is None:
            found.append(fail(check, f"its proxy token '{token_name}' is missing from {ctx.paths.tokens_path} "
                              "(revoked?), so its requests get 407", fix))
            continue
        env = env_contract(ctx.paths, ctx.config.listen, token, ca_cert=ctx.ca_cert_path,
                           routed_hosts=[route.host for route in ctx.config.routes])
        setup_ctx = SetupContext(
            paths=ctx.paths,
            port=ctx.config.listen,
            env=env,
            cwd=Path(manifest.get("cwd") or ctx.paths.config_path.parent),
            home=home_dir(ctx.environ),
            environ=ctx.environ,
            cordon_cmd=str(manifest.get("cordon_cmd") or "cordon"),
        )
        try:
            plan = plan_integration(name, setup_ctx, agent_dir=Path(manifest["agent_dir"]))
        except (IntegrationError, KeyError, ValueError) as exc:
            found.append(fail(check, f"cannot re-plan its files: {exc}", fix))
            continue
        loose = _loose_private_files(plan.changes)
        if loose:
            found.append(fail(f"{check}.mode", f"{', '.join(f'{p} ({m:04o})' for p, m in loose)}: "
                              "hold(s) the proxy token but other users may read it",
                              "chmod 600 " + " ".join(shlex.quote(str(p)) for p, _ in loose)))
        missing = [str(c.path) for c in plan.changes if c.changed and c.before is None]
        stale = [str(c.path) for c in plan.changes if c.changed and c.before is not None]
        if missing:
            found.append(fail(check, f"file(s) setup wrote are gone: {', '.join(missing)}", fix))
        elif stale:
            found.append(fail(check, f"stale (port, token, CA bundle or routed hosts changed since setup): {', '.join(stale)}",
                              fix))
        else:
            files = len(plan.changes)
            found.append(ok(check, f"{files} file(s) point at 127.0.0.1:{ctx.config.listen}, the current token "
                            "and bundle"))
    return found


def check_node_hook(ctx: DoctorContext) -> list[Finding]:
    """The scope's copy of the Node register hook, which ``NODE_OPTIONS`` in the env contract requires."""
    from cordon_setup.nodehook import hook_is_current, hook_path

    path = hook_path(ctx.paths)
    if not path.is_file():
        return [fail("node-hook", f"the Node register hook {path} is missing: Node programs started with this "
                     "scope's environment (NODE_OPTIONS) cannot start", ctx.setup_fix)]
    if not hook_is_current(ctx.paths):
        return [warn("node-hook", f"{path} is from another version of cordon", ctx.setup_fix)]
    return [ok("node-hook", f"{path} is current (NODE_OPTIONS loads it into every Node program)")]
