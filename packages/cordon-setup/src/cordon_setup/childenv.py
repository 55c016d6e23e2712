"""The environment ``cordon run`` gives its command: the caller's, minus every secret cordon knows of, plus the
env contract.

* A variable that a route's ``env`` secret source names is removed (the proxy reads it; the command never does).
* A variable whose value holds a secret cordon resolved (an ``env`` source's value, a ``file`` source's content)
  is removed, whatever its name. Keyring, 1Password and command sources are not resolved here (that would
  unlock a keyring, prompt, or run code just to compare), so a copy of one of those is not recognised.
* Each routed provider's well-known key variable (``cordon_config.providers``) gets cordon's dummy value; a
  real value from the shell is replaced.

Each change is one notice line naming the variable, never the value. The proxy that ``cordon run`` starts
gets the caller's environment unchanged: it is the one process that needs the secrets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cordon_config.facts import FactsError, read_document
from cordon_config.providers import DUMMY_KEY, provider_for_variable

__all__ = ["ChildEnvironment", "SecretReferences", "child_environment", "secret_references"]

MIN_SECRET_LENGTH = 8  # shorter values are compared whole only: a substring match would hit unrelated variables


@dataclass(frozen=True)
class SecretReferences:
    """What the routes of a cordon.toml read their secrets from: env variable → route, and file paths."""

    env_vars: Mapping[str, str] = field(default_factory=dict)
    files: tuple[Path, ...] = ()


def secret_references(config_path: Path) -> SecretReferences:
    """The env variables and files the routes of ``config_path`` name (tomllib only, tolerant of a half-edited
    file: whatever can be read is used; an unreadable file names nothing)."""
    try:
        doc = read_document(config_path) or {}
    except FactsError:
        return SecretReferences()
    env_vars: dict[str, str] = {}
    files: list[Path] = []
    routes = doc.get("routes")
    for route in routes if isinstance(routes, list) else []:
        auth = route.get("auth") if isinstance(route, dict) else None
        secret = auth.get("secret") if isinstance(auth, dict) else None
        if not isinstance(secret, dict):
            continue
        name = str(route.get("name", "?"))
        if secret.get("source") == "env" and isinstance(secret.get("var"), str) and secret["var"]:
            env_vars.setdefault(secret["var"], name)
        elif secret.get("source") == "file" and isinstance(secret.get("path"), str) and secret["path"]:
            path = Path(secret["path"]).expanduser()
            files.append(path if path.is_absolute() else config_path.parent / path)
    return SecretReferences(env_vars, tuple(files))


def _resolved_secrets(refs: SecretReferences, environ: Mapping[str, str]) -> list[str]:
    values = [environ[var] for var in refs.env_vars if environ.get(var)]
    for path in refs.files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if text.strip():
            values += [text, text.strip()]
    values += [v.strip() for v in values if v.strip() != v]
    return [v for v in dict.fromkeys(values) if v]


def _holds_secret(value: str, secrets: list[str]) -> bool:
    return any(value == s or (len(s) >= MIN_SECRET_LENGTH and s in value) for s in secrets)


@dataclass(frozen=True)
class ChildEnvironment:
    """The command's environment and one notice per variable cordon removed or replaced."""

    env: dict[str, str]
    notices: list[str]


def child_environment(
    environ: Mapping[str, str], contract: Mapping[str, str], refs: SecretReferences
) -> ChildEnvironment:
    """``environ`` without the secrets ``refs`` leads to, with ``contract`` (the env contract) on top."""
    secrets = _resolved_secrets(refs, environ)
    env: dict[str, str] = {}
    notices: dict[str, str] = {}
    for name, value in environ.items():
        route = refs.env_vars.get(name)
        if route is not None:
            notices[name] = f'route "{route}" reads its secret from it'
        elif value and _holds_secret(value, secrets):
            notices[name] = "its value is a route's secret"
        else:
            env[name] = value
    for name, value in contract.items():
        if value == DUMMY_KEY and environ.get(name) not in (None, "", DUMMY_KEY):
            provider = provider_for_variable(name)
            why = f"the proxy injects the real {provider.name} key" if provider else "the proxy injects the real key"
            notices[name] = f"replaced with cordon's dummy key ({why})"
        env[name] = value
    lines = []
    for name, why in notices.items():
        if why.startswith("replaced"):
            lines.append(f"cordon: {name} from your environment {why}")
        else:
            lines.append(f"cordon: {name} removed from the command's environment ({why})")
    return ChildEnvironment(env, lines)
