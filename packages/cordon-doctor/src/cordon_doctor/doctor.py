"""``cordon doctor``: run every check in order and render the report. Never changes anything."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from cordon_config.scope import ScopePaths

from cordon_doctor.checks_files import check_approvals, check_bundle, check_ca, check_config, check_tokens
from cordon_doctor.checks_integrations import check_integrations
from cordon_doctor.checks_policy import check_policy
from cordon_doctor.checks_runtime import (
    check_codex_home,
    check_listeners,
    check_port,
    check_secrets,
    check_service,
)
from cordon_doctor.checks_scopes import check_no_proxy, check_port_owner
from cordon_doctor.context import DoctorContext
from cordon_doctor.finding import Finding, fail, skip
from cordon_doctor.report import exit_code, render_text, to_json, use_colour

Check = Callable[[DoctorContext], list[Finding]]

CHECKS: tuple[tuple[str, Check], ...] = (
    ("config", check_config),
    ("approvals", check_approvals),
    ("ca", check_ca),
    ("bundle", check_bundle),
    ("tokens", check_tokens),
    ("policy", check_policy),
    ("secrets", check_secrets),
    ("port", check_port),
    ("port.scopes", check_port_owner),
    ("routes.no_proxy", check_no_proxy),
    ("listeners", check_listeners),
    ("service", check_service),
    ("integrations", check_integrations),
    ("codex.home", check_codex_home),
)


def collect(ctx: DoctorContext) -> list[Finding]:
    """Run every check; a check that crashes becomes one fail line naming it (never a traceback)."""
    findings: list[Finding] = []
    if not ctx.paths.config_path.exists():  # nothing else can be right yet: one line, not a cascade
        findings.extend(check_config(ctx))
        findings.append(skip("scope", "CA, bundle, tokens, secrets, port, service and integrations not checked: "
                             "no cordon.toml"))
        return findings
    for name, check in CHECKS:
        if name == "secrets" and ctx.config is None:
            findings.append(skip("routes", "route secrets, port and integration files not checked: cordon.toml "
                                 "did not load (see config)"))
        try:
            findings.extend(check(ctx))
        except Exception as exc:
            findings.append(fail(name, f"the check itself failed: {type(exc).__name__}: {exc}",
                                 "report this as a cordon bug, with this line"))
    return findings


def run_doctor(
    paths: ScopePaths,
    *,
    out: TextIO,
    as_json: bool = False,
    runtimes: bool = False,
    explicit_config: bool = False,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Print the report for ``paths``; 0 when nothing failed, 1 otherwise."""
    ctx = DoctorContext(
        paths=paths,
        environ=dict(os.environ if environ is None else environ),
        cwd=cwd or Path.cwd(),
        explicit_config=explicit_config,
    )
    findings = collect(ctx)
    extra: dict[str, object] = {"scope": paths.scope, "config": str(paths.config_path)}
    if runtimes:
        from cordon_doctor.runtimes import probe_runtimes

        if not as_json:
            out.write(render_text(findings, tty=use_colour(out)))
            out.write("\nruntimes (temporary proxy and local TLS upstream; no network):\n")
            out.flush()
        probe = probe_runtimes(out=None if as_json else out)
        findings = findings + probe.findings
        extra["runtimes"] = probe.details
        if not as_json:
            out.write(render_text(probe.findings, tty=use_colour(out)))
            return exit_code(findings)
    if as_json:
        out.write(to_json(findings, **extra))
    else:
        out.write(render_text(findings, tty=use_colour(out)))
    return exit_code(findings)
