"""Doctor checks on what runs: route and listener secrets, the port, the PostgreSQL listeners, the background
service, CODEX_HOME. Read-only."""

from __future__ import annotations

import html
from pathlib import Path

from cordon_doctor.context import DoctorContext
from cordon_doctor.finding import Finding, fail, ok, skip, warn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cordon_config.model import Listener, Route
    from cordon_config.secrets import SecretUnavailable


def check_port(ctx: DoctorContext) -> list[Finding]:
    """The configured port is free, or this scope's cordon (proven by its identity key) answers on it, running
    the config as it is on disk; another scope's cordon or anything else there is named."""
    from cordon_config.identity import IdentityError, config_digest, probe

    if ctx.config is None:
        return []
    port = ctx.config.listen
    flag = ctx.scope_flag
    try:
        state = probe(ctx.paths, port, env=ctx.environ)
    except IdentityError as exc:
        return [fail("port", exc.message, exc.hint)]
    if state.kind == "none":
        return [ok("port", f"127.0.0.1:{port} is free (cordon is not running; start it with cordon start{flag})")]
    if not state.ours:
        return [fail("port", state.message(), state.hint(ctx.paths.config_path, flag))]
    health = state.health
    routes = health.get("routes")
    found = [ok("port", f"cordon {health.get('version', '?')} (pid {state.pid}) is running on 127.0.0.1:{port} "
                f"({routes} {'route' if routes == 1 else 'routes'})")]
    try:
        on_disk = config_digest(ctx.paths.config_path.read_bytes())
    except OSError:
        return found
    if health.get("config_digest") != on_disk:
        found.append(warn("proxy.config", f"the running proxy (pid {state.pid}) uses an older version of "
                          f"{ctx.paths.config_path} (changed since it started or last reloaded)", f"cordon reload{flag}"))
    return found


def check_service(ctx: DoctorContext) -> list[Finding]:
    """The scope's background service (systemd user unit / launchd agent) is installed and running."""
    from cordon_setup.context import cordon_argv
    from cordon_setup.service import ServiceError, ServiceManager

    manager = ServiceManager(ctx.paths, cordon=cordon_argv(ctx.environ), environ=ctx.environ)
    install = f"cordon service install{ctx.scope_flag}"
    foreground = f"cordon start{ctx.scope_flag}"
    try:
        status = manager.status()
    except ServiceError as exc:
        return [warn("service", f"installed at {manager.unit_path()} but {exc}", exc.hint or foreground)]
    if not status.installed:
        try:
            manager.check_available()
        except ServiceError as exc:
            return [warn("service", f"no background service can run here ({exc})", exc.hint or foreground)]
        return [warn("service", f"no background service for this scope ({manager.unit_name()}); "
                     "cordon runs only while you start it", install)]
    try:
        unit_text = status.path.read_text(errors="replace")
    except OSError:
        unit_text = ""
    raw = str(ctx.paths.config_path)
    spellings = {raw, raw.replace("\\", "\\\\").replace("%", "%%").replace("$", "$$"), html.escape(raw, quote=False)}
    if not any(spelling in unit_text for spelling in spellings):
        return [fail("service", f"{status.path} does not run this scope's config {ctx.paths.config_path} "
                     "(installed for another path?)", f"{install}   (rewrites the unit for this config)")]
    if status.running:
        return [ok("service", f"{manager.unit_name()} ({status.kind}) is installed and running")]
    if status.kind == "launchd":
        fix = f"launchctl kickstart gui/{manager.uid}/{manager.unit_name()}   (log: {manager.log_path()})"
    else:
        unit = manager.unit_name()
        fix = f"systemctl --user restart {unit}   (why it stopped: journalctl --user -u {unit} -n 50)"
    return [fail("service", f"{manager.unit_name()} is installed but not running", fix)]


def check_codex_home(ctx: DoctorContext) -> list[Finding]:
    """Project-scoped Codex only reads ``.codex/.env`` when CODEX_HOME points at that directory."""
    if ctx.paths.scope != "project":
        return []
    codex_dir = ctx.paths.config_path.parent / ".codex"
    if not (codex_dir / ".env").exists():
        return []
    current = ctx.environ.get("CODEX_HOME", "")
    if current and Path(current).expanduser().resolve() == codex_dir.resolve():
        return [ok("codex.home", f"CODEX_HOME points at {codex_dir}")]
    shown = f"(currently {current})" if current else "(unset: Codex reads ~/.codex instead)"
    return [warn("codex.home", f"CODEX_HOME does not point at {codex_dir} {shown}",
                 f'export CODEX_HOME="{codex_dir}"   (add it to your shell profile or the project\'s .envrc)')]


def _secret_fix(ctx: DoctorContext, route: Route | Listener, exc: SecretUnavailable) -> str:
    from cordon_config.secrets import kind_of

    name = route.name
    source = route.secret.source
    kind = kind_of(route)
    reason = str(getattr(exc, "reason", ""))
    hint = getattr(exc, "hint", None)
    flag = ctx.scope_flag
    if source == "keyring" and "no keyring backend" in reason:
        var = name.upper().replace("-", "_").replace(".", "_") + "_API_KEY"
        return (
            "this machine has no keyring (on headless Linux: no Secret Service on D-Bus, e.g. gnome-keyring); "
            f"switch the {kind} to another source: cordon {kind} edit{flag} {name} --source env --var {var}  "
            f'(or in {ctx.paths.config_path}: source = "file" with path = "/abs/0600-file", or '
            'source = "command" with argv = ["gh", "auth", "token"])'
        )
    if source == "keyring" and "no keyring entry" in reason:
        return f"cordon secret set{flag} {name}"
    if source == "1password" and "not installed" in reason:
        return "install the 1Password CLI (https://developer.1password.com/docs/cli/get-started/) " \
               f"or set op_path under [secrets] in {ctx.paths.config_path}"
    if source == "1password" and "not signed in" in reason:
        return "eval $(op signin)   (or unlock the 1Password app with CLI integration enabled)"
    if source == "env":
        var = route.secret.fields.get("var", "VAR")
        return f"export {var}=...   in the environment that runs cordon start (for the service: " \
               f"systemctl --user set-environment {var}=...)"
    if source == "file":
        path = route.secret.fields.get("path", "FILE")
        return f"put the secret in {path} and chmod 600 {path}"
    if source == "command":
        argv = route.secret.fields.get("argv", [])
        return f"run the command yourself to see why it fails: {' '.join(map(str, argv))}"
    return hint or f"cordon secret check{flag} {name}"


def check_secrets(ctx: DoctorContext) -> list[Finding]:
    """Every route's and listener's secret can be fetched now (the value is discarded, never shown)."""
    from cordon_config.secrets import SecretUnavailable, fetch_secret, kind_of

    if ctx.config is None:
        return []
    found: list[Finding] = []
    settings = any(entry.item.kind not in ("route", "listener") for entry in ctx.unapproved)
    unapproved = {(entry.item.kind, entry.item.name) for entry in ctx.unapproved}
    owners: tuple[Route | Listener, ...] = (*ctx.config.routes, *ctx.config.listeners)
    for route in owners:
        kind = kind_of(route)
        check = f"{kind}.{route.name}.secret"
        if settings or (kind, route.name) in unapproved:  # an unapproved `command` would run here: never fetch it
            found.append(skip(check, "not fetched: " + ("the [tls]/[secrets] settings are" if settings else
                                                        f"the {kind} is") + " not approved (see approvals)"))
            continue
        try:
            fetch_secret(route, config=ctx.config, env=ctx.environ)
        except SecretUnavailable as exc:
            found.append(fail(check, f"{route.secret.source}: {exc.reason}", _secret_fix(ctx, route, exc)))
            continue
        where = ""
        if route.secret.source == "env":
            where = " (from this shell's environment: the service needs it too)"
        found.append(ok(check, f"resolvable from {route.secret.source}{where}"))
    return found


def check_listeners(ctx: DoctorContext) -> list[Finding]:
    """Each PostgreSQL listener: its port free or held by the running cordon, its upstream reachable with a valid
    certificate. The checks come from the listener's package through the ``cordon.doctor_checks`` entry points."""
    from importlib.metadata import entry_points

    if ctx.config is None or not ctx.config.listeners:
        return []
    hooks = list(entry_points(group="cordon.doctor_checks"))
    if not hooks:
        return [fail("listeners", "cordon.toml has [[listeners]] but cordon-pg is not installed: cordon start "
                     "cannot serve them", "pip install cordon-pg")]
    from cordon_config.identity import IdentityError, probe

    try:  # this scope's own proxy, proven by its identity key (never something else on the port)
        running = probe(ctx.paths, ctx.config.listen, timeout=1.0, env=ctx.environ).ours
    except IdentityError:
        running = False
    found: list[Finding] = []
    for hook in hooks:
        for item in hook.load()(ctx.config, proxy_running=running, scope_flag=ctx.scope_flag, environ=ctx.environ):
            found.append(Finding(str(item["check"]), item["status"], str(item["message"]), item.get("fix")))
    return found
