"""Everything a proxy runs with, loaded from a scope's files in one place: at start and at every reload.

:func:`load_runtime` loads in this order: the config (validated) → approvals → every secret (all failures
together) → the CA (created or re-issued for the routed hosts) → ``tokens.toml`` (refused when group or others
can read it) → upstream trust → the identity key. Any failure raises :class:`LoadFailure` with the lines to
print; nothing of a half-loaded runtime is ever used, so a refused reload leaves the running one in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cordon_config import Config
    from cordon_config.scope import ScopePaths
    from cordon_config.tokens import TokenStore

    from cordon_proxy.logs import Logger
    from cordon_proxy.tls import LeafContexts
    from cordon_proxy.upstream import UpstreamTrust

__all__ = ["LoadFailure", "Runtime", "approval_problems", "load_runtime"]


class LoadFailure(Exception):
    """The scope's files cannot be run: ``lines`` (each printed as ``cordon: …``; a config report is one
    multi-line item) and an optional ``hint``."""

    def __init__(self, lines: list[str], hint: str | None = None) -> None:
        super().__init__(lines[0] if lines else "cannot load")
        self.lines = lines
        self.hint = hint

    def summary(self) -> str:
        """One line for a log or ``/health``: every problem, joined (at most 500 characters)."""
        parts = [" ".join(line.split()) for item in self.lines for line in item.splitlines() if line.strip()]
        text = "; ".join(parts) or "cannot load"
        return text if len(text) <= 500 else text[:497] + "..."


@dataclass(frozen=True)
class Runtime:
    """A loaded, validated scope: what a proxy serves with."""

    config: Config
    digest: str
    leaves: LeafContexts | None
    tokens: TokenStore | None
    trust: UpstreamTrust
    identity_key: bytes
    ca: object = None  # the scope's CertificateAuthority when anything needs one (routes, listeners' TLS)


def approval_problems(config: Config, paths: ScopePaths) -> list[str]:
    """The one place start and reload ask whether a human approved this config's security-relevant content:
    one line per item that is not (``cordon_config.approvals``: new or changed routes and trust settings, with
    the command that approves each); empty when everything is approved."""
    from cordon_config.approvals import check_approved, refusal_lines

    unapproved = check_approved(config, paths)
    return refusal_lines(unapproved, paths) if unapproved else []


def _read_config(paths: ScopePaths) -> tuple[Config, str]:
    """The validated config and the digest of exactly the bytes validated (what ``/health`` reports)."""
    from cordon_config import ConfigError
    from cordon_config.identity import config_digest
    from cordon_config.parse import decode_config, parse_config
    from cordon_config.scope import missing_config

    path = paths.config_path
    try:
        data = path.read_bytes()
        config = parse_config(decode_config(data, path), path)
    except FileNotFoundError:
        message, hint = missing_config(paths)  # the one "no cordon.toml" of every tool
        raise LoadFailure([message], hint) from None
    except OSError as exc:
        raise LoadFailure([f"cannot read {path}: {exc.strerror}"]) from None
    except ConfigError as exc:
        raise LoadFailure([str(exc).rstrip("\n")]) from None
    return config, config_digest(data)


def _load_ca(config: Config, paths: ScopePaths, logger: Logger) -> tuple[LeafContexts | None, object]:
    """The leaf contexts for the routed hosts and the CA (the listeners' TLS needs it too); (None, None) when
    nothing needs a CA."""
    if not (config.tls.enabled and config.tls_hosts()):
        return None, None
    from cordon_ca import CAError, ensure_scope_ca, permitted_for

    from cordon_proxy.tls import LeafContexts

    cert = config.tls.ca_cert_path or paths.ca_cert
    key = config.tls.ca_key_path or paths.ca_key
    permitted = permitted_for(config.tls.name_constraints, config.tls_hosts())
    existed = cert.exists() and key.exists()
    if not existed and paths.combined_bundle.exists():
        from cordon_config.scope import with_scope_flag

        raise LoadFailure(  # clients trust the CA in the bundle: a new one would break them without a clue
            [f"the CA of this scope is gone ({cert if not cert.exists() else key} is missing), but its "
             "combined bundle still holds the old one that clients trust"],
            with_scope_flag("create a new CA deliberately: cordon ca generate --force, then cordon setup "
                            "(rewrites the bundle and the agents' files) and restart the agents", paths),
        )
    try:
        ca, written = ensure_scope_ca(cert, key, namespace=paths.namespace, permitted_hosts=permitted,
                                      bundle=paths.combined_bundle,
                                      keep_unconstrained=config.tls.name_constraints is None)
    except CAError as exc:
        from cordon_config.scope import with_scope_flag

        hint = getattr(exc, "hint", None)
        raise LoadFailure([str(getattr(exc, "message", exc))],
                          with_scope_flag(hint, paths) if hint else None) from None
    except OSError as exc:
        raise LoadFailure([f"cannot prepare the CA: {exc.filename or cert}: {exc.strerror or exc}"]) from None
    if written and existed:
        what = "name-constrained CA for the routed hosts" if permitted is not None else "CA without name constraints"
        logger.log("warn", f"re-issued the {what} (the old key is destroyed): {cert}")
    elif written:
        logger.log("warn", f"created the cordon CA {cert}: clients must trust it (cordon setup writes the bundle)")
    return (LeafContexts(ca, [r.host for r in config.routes]) if config.routes else None), ca


def load_tokens(paths: ScopePaths) -> TokenStore | None:
    """``tokens.toml`` (None when absent); LoadFailure when it is invalid or readable by group or others."""
    from cordon_config.tokens import TokenStore

    try:
        return TokenStore.load(paths.tokens_path)
    except Exception as exc:  # unreadable or insecure tokens file: refuse to run without the user knowing
        raise LoadFailure([f"cannot load proxy tokens: {exc}"], f"chmod 600 {paths.tokens_path}"
                          if "group or others" in str(exc) else None) from None


def load_runtime(paths: ScopePaths, logger: Logger) -> Runtime:
    """Load and validate everything for ``paths`` (see the module docstring); raises LoadFailure."""
    from cordon_config.identity import IdentityError, ensure_key
    from cordon_config.secrets import check_secrets

    from cordon_proxy.upstream import UpstreamTrustError, upstream_trust

    config, digest = _read_config(paths)
    for note in config.notes:  # legacy forms, read as what they mean
        logger.log("info", f"note: {note}")
    unapproved = approval_problems(config, paths)
    if unapproved:  # nothing a human did not approve is fetched, run or routed (docs/security.md)
        raise LoadFailure(unapproved)
    failures = check_secrets(config)
    if failures:
        from cordon_proxy.core.errors import secret_unavailable

        listeners = {listener.name for listener in config.listeners}
        raise LoadFailure(
            [secret_unavailable(name, reason, "listener" if name in listeners else "route")
             for name, reason in failures],
            f"fix each as its line says, then check with: cordon secret check{paths.flag}",
        )
    leaves, ca = _load_ca(config, paths, logger)
    tokens = load_tokens(paths)
    own_ca = config.tls.ca_cert_path or paths.ca_cert
    try:
        trust = upstream_trust(config.tls.upstream_ca_file, cordon_cas=[own_ca])
    except UpstreamTrustError as exc:
        raise LoadFailure([exc.message], exc.hint) from None
    try:
        key = ensure_key(paths)
    except IdentityError as exc:
        raise LoadFailure([exc.message], exc.hint) from None
    return Runtime(config, digest, leaves, tokens, trust, key, ca)
