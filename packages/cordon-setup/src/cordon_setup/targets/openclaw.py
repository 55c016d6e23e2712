"""OpenClaw: ``~/.openclaw`` is a cordon scope of its own (``~/.openclaw/cordon.toml``).

* ``~/.openclaw/openclaw.json``: ``proxy.enabled`` and the tokenised ``proxy.proxyUrl`` (OpenClaw's managed
  proxy routing covers ``fetch``, ``node:http(s)`` and WebSockets of the whole process);
* ``~/.openclaw/.env``, the global dotenv OpenClaw copies into its gateway service's environment:
  ``NODE_EXTRA_CA_CERTS`` (cordon's CA), ``NODE_USE_SYSTEM_CA=1`` and the provider's dummy key;
* the skill in ``~/.openclaw/skills/cordon/SKILL.md``.

Node reads ``NODE_EXTRA_CA_CERTS`` only when it starts, so the gateway daemon is reinstalled the way OpenClaw's
own CLI does it (``openclaw gateway install --force``, run with the CA in its environment) and checked with
``openclaw gateway status``; a foreground ``openclaw`` command gets the CA from ``cordon run``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cordon_config.scope import ScopePaths

from cordon_setup.context import SetupContext
from cordon_setup.errors import IntegrationError
from cordon_setup.records import Planned, Record, plan_dotenv, plan_json_keys, plan_text
from cordon_setup.targets.common import dummy_key, route_steps, scope_suffix, start_step
from cordon_setup.targets.skill import SKILL

NAME = "openclaw"
PROVIDER = "anthropic"
MARKER = "# cordon: CA and dummy key (remove with: cordon integration disable openclaw)"
GATEWAY_TIMEOUT = 180.0
#: Variables that make the gateway process trust cordon's CA from its start.
CA_VARIABLES = ("NODE_EXTRA_CA_CERTS", "NODE_USE_SYSTEM_CA")


def home_dir(home: Path) -> Path:
    """``~/.openclaw``: OpenClaw's default state directory."""
    return home / ".openclaw"


def own_config(home: Path) -> Path:
    """The cordon.toml of this integration's own scope."""
    return home_dir(home) / "cordon.toml"


def openclaw_path(environ: Mapping[str, str]) -> str | None:
    """The ``openclaw`` executable on ``PATH``."""
    return shutil.which("openclaw", path=environ.get("PATH"))


def preflight(environ: Mapping[str, str], home: Path) -> None:
    """``openclaw`` must be on PATH (the gateway is reinstalled with it), and OpenClaw's state must live in
    ``~/.openclaw`` (the files cordon writes are read from there)."""
    if openclaw_path(environ) is None:
        raise IntegrationError(
            "openclaw is not on PATH; nothing was changed",
            hint="install OpenClaw first (npm install -g openclaw), then run: cordon setup openclaw",
        )
    state = home_dir(home)
    for name, default in (("OPENCLAW_STATE_DIR", state), ("OPENCLAW_CONFIG_PATH", state / "openclaw.json"),
                          ("OPENCLAW_HOME", home)):
        value = environ.get(name, "").strip()
        if value and os.path.normpath(os.path.expanduser(value)) != str(default):
            raise IntegrationError(
                f"{name} points at {value}, but cordon setup openclaw wires the default state directory {state}",
                hint=f"unset {name} and run it again",
            )


def agent_dir(ctx: SetupContext) -> Path:
    return home_dir(ctx.home)


def ca_environment(ctx_env: Mapping[str, str]) -> dict[str, str]:
    """What the gateway needs in its environment to trust cordon's CA."""
    return {"NODE_EXTRA_CA_CERTS": ctx_env["NODE_EXTRA_CA_CERTS"], "NODE_USE_SYSTEM_CA": "1"}


def plan(ctx: SetupContext, directory: Path, old: Mapping[str, Record]) -> list[Planned]:
    """``openclaw.json`` (proxy), ``.env`` (CA, dummy key) and the skill."""
    config = directory / "openclaw.json"
    dotenv = directory / ".env"
    skill = directory / "skills" / "cordon" / "SKILL.md"
    proxy: dict[tuple[str, ...], object] = {("proxy", "enabled"): True, ("proxy", "proxyUrl"): ctx.env["HTTPS_PROXY"]}
    return [
        plan_json_keys(config, proxy, old=old.get(str(config))),
        plan_dotenv(dotenv, {**ca_environment(ctx.env), **dummy_key(PROVIDER)}, marker=MARKER,
                    old=old.get(str(dotenv))),
        plan_text(skill, SKILL, old=old.get(str(skill))),
    ]


def _gateway(openclaw: str, args: list[str], env: Mapping[str, str]) -> tuple[int, dict[str, Any] | None, str]:
    """Run ``openclaw gateway ARGS --json``: exit code, the JSON it printed (None if none), a line of stderr."""
    try:
        done = subprocess.run([openclaw, "gateway", *args, "--json"], env=dict(env), capture_output=True,
                              text=True, timeout=GATEWAY_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, None, str(exc)
    try:
        data = json.loads(done.stdout)
    except ValueError:
        data = None
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return done.returncode, data if isinstance(data, dict) else None, lines[-1] if lines else ""


def _service(status: dict[str, Any] | None) -> dict[str, Any]:
    service = (status or {}).get("service")
    return service if isinstance(service, dict) else {}


def _manager_missing(status: dict[str, Any] | None) -> bool:
    return _service(status).get("inspectionReason") == "service-manager-unavailable"


def _running(status: dict[str, Any] | None) -> bool:
    runtime = _service(status).get("runtime")
    return bool(_service(status).get("loaded")) and isinstance(runtime, dict) and runtime.get("status") == "running"


def foreground_command(ctx_flag: str) -> str:
    """The command that runs the gateway in the foreground with cordon's CA (no service manager)."""
    return f"cordon run {ctx_flag} --token {NAME} -- openclaw gateway run"


def reinstall_gateway(env: Mapping[str, str], *, foreground: str, with_ca: bool) -> list[str]:
    """Reinstall OpenClaw's gateway service from ``env`` (``openclaw gateway install --force``) and check it with
    ``openclaw gateway status``; lines for the user (saying exactly what to run where that cannot be done)."""
    openclaw = openclaw_path(env)
    if openclaw is None:
        return ["openclaw is no longer on PATH: its gateway service was not reinstalled"]
    install = "openclaw gateway install --force"
    if with_ca:
        install = " ".join(f"{k}={shlex.quote(env[k])}" for k in CA_VARIABLES) + " " + install
    code, status, err = _gateway(openclaw, ["status", "--no-probe"], env)
    if status is None:
        return [f"could not ask OpenClaw about its gateway service ({err or f'exit {code}'}); run: {install}"]
    if _manager_missing(status):
        return [
            "no user service manager here (systemd --user or launchd), so there is no OpenClaw gateway service "
            "to reinstall",
            f"run the gateway in the foreground with cordon's CA instead: {foreground}",
        ]
    code, result, err = _gateway(openclaw, ["install", "--force"], env)
    if code != 0 or not (result or {}).get("ok", code == 0):
        reason = (result or {}).get("error") or err or f"exit {code}"
        return [f"openclaw gateway install failed: {reason}", f"fix that, then run: {install}",
                f"(or run the gateway in the foreground: {foreground})"]
    code, status, err = _gateway(openclaw, ["status", "--no-probe"], env)
    what = "with cordon's CA in its environment" if with_ca else "without cordon's CA"
    if _running(status):
        return [f"reinstalled the OpenClaw gateway service {what}; openclaw gateway status: running"]
    return [f"reinstalled the OpenClaw gateway service {what}, but openclaw gateway status does not report it "
            "running", "check it with: openclaw gateway status --deep"]


def after_apply(ctx: SetupContext, directory: Path) -> list[str]:
    """Reinstall the gateway service so that it starts with cordon's CA."""
    env = {**ctx.environ, **ca_environment(ctx.env)}
    return reinstall_gateway(env, foreground=foreground_command(ctx.scope_flag), with_ca=True)


def after_disable(paths: ScopePaths, manifest: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Reinstall the gateway service without cordon's CA (a CA of the user's own in the environment stays)."""
    ours = {str(paths.ca_cert)}
    for record in manifest.get("files", []):
        ours |= {str(k["value"]) for k in record.get("keys", []) if k["key"][-1] == "NODE_EXTRA_CA_CERTS"}
    env = {k: v for k, v in environ.items() if not (k == "NODE_EXTRA_CA_CERTS" and v in ours)}
    return reinstall_gateway(env, foreground="openclaw gateway run", with_ca=False)


def next_steps(ctx: SetupContext, directory: Path) -> list[str]:
    """What the user does after ``cordon setup openclaw``."""
    scope = scope_suffix(ctx)
    return [
        *route_steps(ctx, PROVIDER),
        start_step(ctx),
        f"cordon run{scope} --token {NAME} -- openclaw agent exec \"…\"    # a foreground OpenClaw command: Node "
        "trusts cordon's CA only from the environment it starts with",
        f"(the gateway service reads the CA from {directory / '.env'} when it is installed; "
        "after `openclaw gateway install --force` check it with: openclaw gateway status)",
    ]
