"""Doctor checks on the scope's files: cordon.toml, the CA, the combined bundle, tokens.toml. Read-only."""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import shlex
import stat
from pathlib import Path

from cordon_config.facts import FactsError, approved_hosts, read_facts

from cordon_doctor.context import DoctorContext
from cordon_doctor.finding import Finding, fail, ok, skip, warn

EXPIRY_MARGIN = dt.timedelta(days=30)


def check_config(ctx: DoctorContext) -> list[Finding]:
    """cordon.toml exists, parses and validates; sets ``ctx.config`` when it does."""
    from cordon_config import ConfigError, load_config

    path = ctx.paths.config_path
    if not path.exists():
        from cordon_config.scope import missing_config

        return [fail("config", missing_config(ctx.paths)[0],
                     f"{ctx.setup_fix}   (new to cordon? `cordon demo` shows it working, no account needed)")]
    try:
        config = load_config(path)
    except ConfigError as exc:
        problems = exc.problems
        first = problems[0] if problems else None
        lines = str(exc).splitlines()
        message = lines[0] if len(problems) <= 1 else f"{len(problems)} problems in {path}: " + "; ".join(
            str(p).split("\n", 1)[0] for p in problems
        )
        hint = first.hint if first is not None and first.hint else None
        fix = f"edit {path}" + (f": {hint}" if hint else "") + f", then check with: cordon doctor{ctx.scope_flag}"
        return [fail("config", message, fix)]
    except OSError as exc:
        return [fail("config", f"cannot read {path}: {exc.strerror}", f"check the permissions of {path}")]
    ctx.config = config
    n = len(config.routes)
    found = [ok("config", f"{path} is valid: listen {config.listen}, {n} route{'s' if n != 1 else ''}")]
    migrate = (f"cordon config migrate --config {shlex.quote(str(path))}" if ctx.explicit_config
               else f"cordon config migrate{ctx.scope_flag}")
    for note in config.notes:  # legacy forms: read, and said what they mean
        found.append(warn("config.legacy", note, migrate))
    return found


def check_approvals(ctx: DoctorContext) -> list[Finding]:
    """Everything in cordon.toml that decides where a secret goes is approved as written (docs/security.md);
    sets ``ctx.unapproved`` (their secrets are then not fetched by the secrets check)."""
    from cordon_config.approvals import check_approved, refusal_lines

    if ctx.config is None:
        return []
    ctx.unapproved = check_approved(ctx.config, ctx.paths)
    if not ctx.unapproved:
        return [ok("approvals", "every route and setting of cordon.toml is approved as written")]
    lines = refusal_lines(ctx.unapproved, ctx.paths, flag=ctx.scope_flag)
    if len(lines) == 1 and ctx.unapproved[0].reason in ("unrecorded", "unverified"):
        message, _, fix = lines[0].partition(": review them with ")
        return [fail("approvals", message + " (cordon start refuses it)", "review them with " + fix)]
    found = []
    for entry, line in zip(ctx.unapproved, lines, strict=True):
        message, _, fix = line.partition("; review it, then run: ")
        name = entry.item.name if entry.item.kind == "route" else entry.item.kind
        found.append(fail(f"approvals.{name}", message + " (cordon start refuses it)", fix))
    return found


def _owner_and_mode(path: Path) -> tuple[int, int]:
    st = path.lstat()
    return st.st_uid, stat.S_IMODE(st.st_mode)


def check_ca(ctx: DoctorContext) -> list[Finding]:
    """CA files present, key 0600 and the user's, CA loads, not expiring within 30 days, constraints cover routes."""
    from cordon_ca import CAError, CertificateAuthority

    cert, key = ctx.ca_cert_path, ctx.ca_key_path
    missing = [p for p in (cert, key) if not p.exists()]
    generate = f"cordon ca generate{ctx.scope_flag}"
    if missing:
        what = " and ".join(str(p) for p in missing)
        fix = ctx.setup_fix if len(missing) == 2 else f"{generate} --force   (the other half of the CA is gone)"
        return [fail("ca.files", f"CA file missing: {what}", fix)]
    found = [ok("ca.files", f"CA certificate and key present in {cert.parent}")]
    uid, mode = _owner_and_mode(key)
    if key.is_symlink():
        found.append(fail("ca.key", f"{key} is a symlink", f"replace it with the real file: {generate} --force"))
        return found
    if uid != os.getuid():
        found.append(fail("ca.key", f"{key} is owned by uid {uid}, not by you (uid {os.getuid()})",
                          f"sudo chown {os.getuid()} {key}"))
        return found
    if mode & 0o077:
        found.append(fail("ca.key", f"{key} has mode {mode:04o}; other users could read the CA key",
                          f"chmod 600 {key}"))
        return found
    found.append(ok("ca.key", f"{key} is 0600 and yours"))
    try:
        ca = CertificateAuthority.load(cert, key)
    except CAError as exc:
        # cordon_ca's own "cordon ca generate" hints know no scope: give the scoped command instead.
        hint = getattr(exc, "hint", None)
        if not hint or "cordon ca generate" in hint:
            hint = f"{generate} --force && cordon setup{ctx.scope_flag}"
        found.append(fail("ca.valid", str(exc).split("\n", 1)[0], hint))
        return found
    now = dt.datetime.now(dt.UTC)
    if ca.not_after <= now:
        found.append(fail("ca.valid", f"the CA expired on {ca.not_after:%Y-%m-%d}",
                          f"{generate} --force && cordon setup{ctx.scope_flag}"))
    elif ca.not_after - now < EXPIRY_MARGIN:
        found.append(fail("ca.valid", f"the CA expires on {ca.not_after:%Y-%m-%d}, within 30 days "
                          "(leaf certificates last up to 30 days)", f"{generate} --force && cordon setup{ctx.scope_flag}"))
    elif ca.not_before > now:
        found.append(fail("ca.valid", f"the CA is not valid before {ca.not_before:%Y-%m-%d %H:%M} UTC (clock?)",
                          "check the system clock"))
    else:
        found.append(ok("ca.valid", f"{ca.common_name!r} valid until {ca.not_after:%Y-%m-%d}"))
    found.extend(_check_constraints(ctx, ca))
    return found


def _check_constraints(ctx: DoctorContext, ca: object) -> list[Finding]:
    """The CA permits exactly the approved routes' hosts (SECURITY.md §E rule 6), unless turned off."""
    config = ctx.config
    if config is None:
        return []
    permitted = getattr(ca, "permitted_hosts", None)
    setting = config.tls.name_constraints
    reissue = (f"cordon ca generate --force{ctx.scope_flag}   (re-issues it for the routed hosts and destroys the "
               f"old key; then restart cordon and the agents, and run cordon trust{ctx.scope_flag} again if you "
               "trusted the old CA)")
    found = _old_key_copies(ctx)
    if permitted is None:
        if setting is False:
            return [*found, ok("ca.constraints", "name constraints are off ([tls] name_constraints = false)")]
        if setting is True:
            return [*found, fail("ca.constraints", "name_constraints is on but the CA has no name constraints",
                                 reissue)]
        return [*found, warn("ca.constraints", "the CA is not name-constrained (made by cordon 0.1): a copy of its "
                             "key can mint a certificate for any site that clients trusting it accept", reissue)]
    try:
        facts = read_facts(ctx.paths)
    except FactsError:  # changed since it loaded: the next run checks it
        facts = None
    wanted = approved_hosts(facts, ctx.paths) if facts is not None else []
    uncovered = [host for host in wanted if host not in permitted]
    if uncovered:
        return [*found, fail("ca.constraints", f"the CA's name constraints do not cover: {', '.join(uncovered)} "
                             "(clients would reject cordon's certificate for them)",
                             f"cordon setup{ctx.scope_flag}   (re-issues the CA for the configured routes)")]
    if not getattr(ca, "exact_constraints", True):
        return [*found, warn("ca.constraints", "the CA's name constraints also permit every subdomain of the "
                             "routed hosts (made by cordon 0.1)", reissue)]
    return [*found, ok("ca.constraints", f"the CA is limited to exactly {len(permitted)} host(s), covering every "
                       "approved route")]


def _old_key_copies(ctx: DoctorContext) -> list[Finding]:
    """A ``.bak`` of the CA key (cordon 0.1 kept one on every re-issue) is a CA key all the same."""
    from cordon_ca.authority import legacy_key_backup

    old = legacy_key_backup(ctx.ca_key_path)
    if not os.path.lexists(old):
        return []
    return [warn("ca.old_key", f"an old CA key is kept at {old}: whoever copies it can mint certificates its CA "
                 "was trusted for", f"shred -u {shlex.quote(str(old))}")]


_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\s+([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----")


def _pem_ders(data: bytes) -> set[bytes]:
    """The DER bytes of every certificate block in ``data`` (decoded, not parsed: no X.509 warnings)."""
    out = set()
    for block in _PEM_BLOCK.findall(data):
        try:
            out.add(base64.b64decode(b"".join(block.split()), validate=True))
        except ValueError:
            continue
    return out


def check_bundle(ctx: DoctorContext) -> list[Finding]:
    """The combined bundle exists, contains the current CA, and is not older than the system store."""
    from cordon_ca import find_system_bundle

    bundle = ctx.paths.combined_bundle
    fix = f"cordon ca bundle{ctx.scope_flag}"
    if not bundle.exists():
        return [fail("bundle", f"no combined CA bundle at {bundle}", fix)]
    try:
        data = bundle.read_bytes()
        ca_data = ctx.ca_cert_path.read_bytes()
    except FileNotFoundError:
        return [skip("bundle", "cannot compare with the CA: the CA certificate is missing (see ca.files)")]
    except OSError as exc:
        return [fail("bundle", f"cannot read {bundle}: {exc.strerror}", f"check the permissions of {bundle}")]
    ca_der = _pem_ders(ca_data)
    if not ca_der or not ca_der <= _pem_ders(data):
        return [fail("bundle", f"{bundle} does not contain the current cordon CA (stale after a CA change)", fix)]
    system = find_system_bundle()
    if system is not None:
        try:
            if system.stat().st_mtime > bundle.stat().st_mtime:
                return [warn("bundle", f"{bundle} is older than the system store {system} (updated since)", fix)]
        except OSError:
            pass
    return [ok("bundle", f"{bundle} contains the current CA")]


def check_tokens(ctx: DoctorContext) -> list[Finding]:
    """tokens.toml present and 0600."""
    path = ctx.paths.tokens_path
    if not path.exists():
        return [warn("tokens", f"no {path}: the proxy accepts any local process without a proxy token",
                     ctx.setup_fix)]
    uid, mode = _owner_and_mode(path)
    if mode & 0o077:
        return [fail("tokens", f"{path} has mode {mode:04o}; other users could read the proxy tokens",
                     f"chmod 600 {path}")]
    if uid != os.getuid():
        return [fail("tokens", f"{path} is owned by uid {uid}, not by you", f"sudo chown {os.getuid()} {path}")]
    return [ok("tokens", f"{path} present, 0600")]
