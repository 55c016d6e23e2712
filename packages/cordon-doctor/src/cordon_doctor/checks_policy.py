"""Doctor checks of least privilege and evidence: each route's method/path rules, rate limit and response
scrubbing; the egress policy; the decoders scrubbing can use; the audit log and its chain. Read-only."""

from __future__ import annotations

import importlib.util

from cordon_doctor.context import DoctorContext
from cordon_doctor.finding import Finding, fail, ok, warn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cordon_config.model import Config

#: the optional decoders scrubbing uses (cordon-proxy's ``compression`` extra); gzip and deflate are stdlib
OPTIONAL_DECODERS = (("br", "brotli"), ("zstd", "zstandard"))


def check_policy(ctx: DoctorContext) -> list[Finding]:
    """One line per route (rules, limit, scrubbing), then egress, the decoders and the audit log."""
    config = ctx.config
    if config is None:
        return []
    from cordon_config.commands.common import describe_rate_limit
    from cordon_config.commands.egress import describe_egress
    from cordon_config.pathrules import describe_rules
    from cordon_config.providers import by_host

    findings: list[Finding] = []
    for route in config.routes:
        check = f"policy.{route.name}"
        if not route.scrub_responses:
            findings.append(warn(check, f"route {route.name} does not scrub responses: an upstream that echoes the "
                                 "key hands it to the agent (scrub_responses = false)",
                                 f"cordon route edit {route.name} --scrub{ctx.scope_flag}"))
            continue
        text = (f"route {route.name} allows {describe_rules(route.methods, route.paths)}; rate limit "
                f"{describe_rate_limit(route)}; the key is masked in responses")
        provider = by_host(route.host)
        if route.methods is None and route.paths is None and provider is not None and provider.rule_flags():
            text += f" (suggested rules: cordon route edit {route.name} {provider.rule_flags()}{ctx.scope_flag})"
        findings.append(ok(check, text))
    findings.append(ok("policy.egress", "; ".join(describe_egress(config.egress))))
    missing = [coding for coding, module in OPTIONAL_DECODERS if importlib.util.find_spec(module) is None]
    if missing and config.routes:
        findings.append(warn("policy.decoders", "responses in " + "/".join(missing) + " cannot be scanned for the "
                             "key here: cordon asks routed hosts for other codings, and cuts a response that comes "
                             "in one anyway", "pip install 'cordon-proxy[compression]' (brotli, zstandard)"))
    elif config.routes:
        findings.append(ok("policy.decoders", "compressed responses are scanned for the key: gzip, deflate, br, zstd"))
    findings.append(_audit(ctx, config))
    return findings


def _audit(ctx: DoctorContext, config: Config) -> Finding:
    from cordon_config.audit import AuditError, AuditFiles, log_files, verify

    files = AuditFiles(ctx.paths.state_dir)
    if not config.audit.enabled:
        return warn("policy.audit", "the audit log is off ([audit] enabled = false): routed requests leave no "
                    "tamper-evident record", f"set enabled = true under [audit] in {ctx.paths.config_path}")
    if not log_files(files):
        return ok("policy.audit", f"audit log on; nothing written yet (cordon start writes {files.log})")
    try:
        report = verify(files)
    except AuditError as exc:
        return fail("policy.audit", exc.message, exc.hint or f"cordon audit verify{ctx.scope_flag}")
    if not report.ok:
        first = report.problems[0].message
        more = f" (and {len(report.problems) - 1} more)" if len(report.problems) > 1 else ""
        return fail("policy.audit", f"the audit log was changed outside cordon: {first}{more}",
                    f"cordon audit verify{ctx.scope_flag} lists every change; keep a copy of {files.state_dir}/"
                    "audit.log* as it is")
    return ok("policy.audit", f"audit log on: {report.lines} lines in {len(report.files)} file(s), chain intact "
              f"({files.log})")
