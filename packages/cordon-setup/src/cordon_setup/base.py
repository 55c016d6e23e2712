"""Base setup: the CA if missing, a scaffold cordon.toml on a free port, the combined CA bundle and
tokens.toml with a ``default`` token. Idempotent: what exists is kept (an existing cordon.toml is never
rewritten); reused by ``cordon doctor`` and ``cordon demo``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cordon_config.facts import ConfigFacts, FactsError, approved_hosts, read_facts
from cordon_config.scope import ScopePaths, with_scope_flag
from cordon_config.tokens import TokenStore

from cordon_setup.plan import FileChange, read_bytes

DEFAULT_PORT = 6790
DEFAULT_TOKEN = "default"


class BaseSetupError(RuntimeError):
    """Base setup cannot proceed (one line; ``hint`` says what to do)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def read_config_facts(paths: ScopePaths) -> ConfigFacts | None:
    """The scope's cordon.toml facts (:mod:`cordon_config.facts`) with ``listen`` defaulted to
    :data:`DEFAULT_PORT`, None when the file does not exist."""
    try:
        facts = read_facts(paths, default_listen=DEFAULT_PORT)
        if facts is not None:
            facts.port()  # a wrong listen stops setup here, with the file's line
        return facts
    except FactsError as exc:
        raise BaseSetupError(str(exc), hint="fix it, or check it with: cordon doctor") from None


def _approved_ca(paths: ScopePaths, facts: ConfigFacts | None) -> tuple[list[str] | None, bool] | None:
    """(the hosts the scope's CA must permit, keep an unconstrained CA): the approved hosts
    (:func:`cordon_config.facts.approved_hosts`), none yet for a new scope, None (unconstrained) with
    ``name_constraints = false``. None: the file parses but its [tls] settings are not approved, so the CA is left
    as it is (cordon start refuses them)."""
    from cordon_ca import permitted_for
    from cordon_config import ConfigError, load_config
    from cordon_config.approvals import check_approved

    if facts is None:
        return [], False
    try:
        config = load_config(paths.config_path)
    except (ConfigError, OSError):  # nothing starts from it anyway
        config = None
    if config is not None and any(entry.item.kind not in ("route", "listener")
                                  for entry in check_approved(config, paths)):
        return None
    return permitted_for(facts.name_constraints, approved_hosts(facts, paths)), facts.name_constraints is None


def _bundle_is_current(bundle: Path, ca_cert: Path) -> bool:
    from cordon_ca import find_system_bundle

    data = read_bytes(bundle)
    ca = read_bytes(ca_cert)
    if data is None or ca is None or ca.strip() not in data:
        return False
    system = find_system_bundle()
    try:
        return system is None or system.stat().st_mtime <= bundle.stat().st_mtime
    except OSError:
        return False


def port_conflict(paths: ScopePaths, port: int) -> str | None:
    """Why ``port`` cannot be this scope's: the other known scope whose cordon.toml listens on it, or None."""
    from cordon_config.scopes import ports_in_use

    owner = ports_in_use(exclude=paths.config_path).get(port)
    if owner is None:
        return None
    return f"port {port} is already the port of another cordon scope ({owner})"


def choose_port(paths: ScopePaths, port: int | None) -> int:
    """``port`` when given and no other known scope uses it; else the first port from 6790 that no other
    scope uses and that is free now (ports only "free now" collide once the other scope's proxy starts)."""
    from cordon_config.scopes import scope_port

    if port is None:
        return scope_port(DEFAULT_PORT, exclude=paths.config_path)
    conflict = port_conflict(paths, port)
    if conflict:
        facts = read_config_facts(paths)
        free = scope_port(DEFAULT_PORT, exclude=paths.config_path, avoid=(facts.listen,) if facts else ())
        raise BaseSetupError(conflict, f"choose another, e.g. --port {free} (two proxies cannot share a port)")
    return port


def ensure_base_setup(
    paths: ScopePaths,
    *,
    progress: Callable[[str], object] = print,
    dry_run: bool = False,
    port: int | None = None,
    upstream_ca_file: Path | None = None,
    secret_ttl: float | None = None,
) -> list[FileChange | str]:
    """Create whatever of the CA, cordon.toml, bundle and tokens.toml is missing; report each step.

    ``port``, ``upstream_ca_file`` and ``secret_ttl`` set those keys of cordon.toml (a new one is written
    with them; an existing one is changed only where they differ). Returns the cordon.toml change (a
    :class:`FileChange`) and one line per other action; an empty list means everything was already in place.
    With ``dry_run`` nothing is written and the lines say "would". Records the scope (``scope.json``).
    """
    # imported here, not at module level: `cordon env` reads config facts from this module and must not pay
    # for cryptography and tomlkit at start-up
    from cordon_ca import CAError, CertificateAuthority, ca_matches, ensure_scope_ca, write_combined_bundle
    from cordon_config.edit import apply_values, scaffold_config, scaffold_text, set_values
    from cordon_config.errors import ConfigError
    from cordon_config.files import check_writable
    from cordon_config.parse import load_config
    from cordon_config.scopes import record_scope

    done: list[FileChange | str] = []
    verb = "would create" if dry_run else "created"

    def note(line: str) -> None:
        done.append(line)
        progress(line)

    facts = read_config_facts(paths)
    settings: dict[tuple[str, ...], object] = {}
    if upstream_ca_file is not None:
        settings[("tls", "upstream_ca_file")] = str(upstream_ca_file)
    if secret_ttl is not None:
        settings[("secret_ttl",)] = secret_ttl
    if facts is None:
        check_writable(paths.config_path)  # before the CA: a read-only project must not end half set up
        listen = choose_port(paths, port)
    elif port is not None and port != facts.listen:
        listen = choose_port(paths, port)
        settings[("listen",)] = listen
    ca_cert, ca_key = (facts.ca_cert, facts.ca_key) if facts else (paths.ca_cert, paths.ca_key)
    wanted = _approved_ca(paths, facts)
    permitted, keep = wanted if wanted is not None else ([], False)  # a CA made now permits no host yet
    existed = ca_cert.exists() and ca_key.exists()
    reissue = False
    try:
        if existed and wanted is None:
            pass  # unapproved [tls] settings decide nothing
        elif not existed:
            if not dry_run:
                ensure_scope_ca(ca_cert, ca_key, namespace=paths.namespace, permitted_hosts=permitted)
            what = "permitting no host until the first route" if permitted == [] else (
                f"name-constrained to {', '.join(permitted)}" if permitted else "without name constraints")
            note(f"{verb} the cordon CA ({what}): {ca_cert}")
        else:
            reissue = not ca_matches(CertificateAuthority.load(ca_cert, ca_key), permitted, keep_unconstrained=keep)
            if reissue and not dry_run:
                _, reissue = ensure_scope_ca(ca_cert, ca_key, namespace=paths.namespace, permitted_hosts=permitted,
                                             keep_unconstrained=keep)
            if reissue:
                what = "name-constrained CA for the routed hosts" if permitted is not None else (
                    "CA without name constraints")
                note(f"{'would re-issue' if dry_run else 're-issued'} the {what} (the old key is destroyed): "
                     f"{ca_cert}")
    except CAError as exc:
        raise BaseSetupError(str(exc), with_scope_flag(exc.hint, paths) if exc.hint else None) from None
    if facts is None:
        if dry_run:
            text = apply_values(scaffold_text(listen=listen, ca_cert_path=ca_cert, ca_key_path=ca_key), settings)
            done.append(FileChange(paths.config_path, None, text.encode("utf-8")))
            progress(f"would create {paths.config_path} (listen = {listen})")
        else:
            from cordon_config.approvals import ApprovalError, approve

            config = scaffold_config(paths.config_path, listen=listen, ca_cert_path=ca_cert, ca_key_path=ca_key)
            if settings:
                set_values(paths.config_path, settings)
                config = load_config(paths.config_path)
            done.append(FileChange(paths.config_path, None, read_bytes(paths.config_path)))
            progress(f"created {paths.config_path} (listen = {listen})")
            try:
                approve(paths, config)  # the file cordon just wrote (with what the user passed): no route yet
            except ApprovalError as exc:
                raise BaseSetupError(str(exc), exc.hint) from None
    elif settings:
        try:
            before, after = set_values(paths.config_path, settings, write=not dry_run)
        except ConfigError as exc:
            raise BaseSetupError(exc.first_line, exc.problems[0].hint if exc.problems else None) from None
        if before != after:
            done.append(FileChange(paths.config_path, before.encode("utf-8"), after.encode("utf-8")))
            keys = ", ".join(".".join(key) for key in settings)
            progress(f"{'would change' if dry_run else 'changed'} {keys} in {paths.config_path}")
            if not dry_run:
                approve_settings_change(paths, before, after)
    if (dry_run and reissue) or not _bundle_is_current(paths.combined_bundle, ca_cert):
        if not dry_run:
            try:
                write_combined_bundle(ca_cert, paths.combined_bundle)
            except CAError as exc:
                raise BaseSetupError(str(exc), with_scope_flag(exc.hint, paths) if exc.hint else None) from None
        note(f"{'would write' if dry_run else 'wrote'} the combined CA bundle: {paths.combined_bundle}")
    from cordon_setup.nodehook import ensure_hook, hook_is_current, hook_path

    if not hook_is_current(paths):
        if not dry_run:
            ensure_hook(paths)
        note(f"{'would write' if dry_run else 'wrote'} the Node register hook: {hook_path(paths)}")
    store = TokenStore.load(paths.tokens_path)
    if store is None or DEFAULT_TOKEN not in store.names():
        if not dry_run:
            ensure_token(paths, DEFAULT_TOKEN)
        note(f"{verb} the proxy token '{DEFAULT_TOKEN}' in {paths.tokens_path}")
    if not dry_run:
        record_scope(paths)
    _ensure_identity_key(paths, dry_run=dry_run, note=note)
    return done


def approve_settings_change(paths: ScopePaths, before: str, after: str) -> None:
    """Record as approved the top-level settings a person just changed with a cordon command (``--port``,
    ``--upstream-ca-file``, ``cordon config set``): only the fields that changed, as approvals.record_change
    does for route edits."""
    from cordon_config.approvals import ApprovalError, record_change, settings_item
    from cordon_config.parse import parse_config

    old, new = parse_config(before, paths.config_path), parse_config(after, paths.config_path)
    try:
        record_change(paths, paths.config_path, settings_item(old, paths), settings_item(new, paths))
    except ApprovalError as exc:
        raise BaseSetupError(str(exc), exc.hint) from None


def _ensure_identity_key(paths: ScopePaths, *, dry_run: bool, note: Callable[[str], None]) -> None:
    """The scope's identity key (its proxy proves with it that it is this scope's cordon)."""
    from cordon_config.identity import IdentityError, ensure_key, key_path, load_key

    try:
        if load_key(paths) is not None:
            return
        if not dry_run:
            ensure_key(paths)
    except IdentityError as exc:
        raise BaseSetupError(exc.message, exc.hint) from None
    note(f"{'would create' if dry_run else 'created'} the proxy identity key: {key_path(paths)}")


def ensure_token(paths: ScopePaths, name: str) -> str:
    """The value of token ``name``, creating tokens.toml and the token when missing."""
    return TokenStore.open(paths.tokens_path).ensure(name)


def token_value(paths: ScopePaths, name: str) -> str | None:
    """The value of token ``name``, or None when tokens.toml or the token does not exist."""
    store = TokenStore.load(paths.tokens_path)
    if store is None or name not in store.names():
        return None
    return store.value(name)


def require_token(paths: ScopePaths, name: str) -> str:
    """The value of token ``name`` for a proxy URL; :class:`BaseSetupError` naming the fix when tokens.toml or
    the token is missing (a URL without a token would only get 407s from the proxy)."""
    store = TokenStore.load(paths.tokens_path)
    if store is None:
        raise BaseSetupError(f"no proxy tokens for this scope ({paths.tokens_path} is missing)",
                             f"create them with: cordon setup{paths.flag}")
    if name not in store.names():
        known = ", ".join(store.names()) or "none"
        if name == DEFAULT_TOKEN:
            fix = f"create it again with: cordon setup{paths.flag}"
        elif name in _integration_names():
            fix = f"create it again with: cordon setup {name}{paths.flag}"
        else:
            fix = f"use one of: {known} (cordon token list{paths.flag})"
        raise BaseSetupError(f"no proxy token named {name!r} in {paths.tokens_path} (tokens: {known})", fix)
    return store.value(name)


def _integration_names() -> list[str]:
    from cordon_setup.integrations import INTEGRATIONS

    return list(INTEGRATIONS)


def revoke_token(paths: ScopePaths, name: str) -> bool:
    """Revoke token ``name``; False when it did not exist."""
    store = TokenStore.load(paths.tokens_path)
    if store is None or name not in store.names():
        return False
    store.revoke(name)
    return True
