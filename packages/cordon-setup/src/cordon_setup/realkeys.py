"""Real provider keys in the agent files setup edits: found, never printed, moved into cordon on request.

A file the agent reads that holds ``OPENAI_API_KEY=sk-…`` hands it the key cordon exists to keep from it. Setup
looks at every file it plans (dotenv lines, the TOML table it edits, the JSON ``env`` block) for the variables
of :mod:`cordon_config.providers` holding anything but the dummy. On a terminal it offers to move each into the
keyring entry of the provider's route (adding the usual route when there is none) and writes the dummy in its
place; otherwise it prints the exact commands. A backup of such a file goes to the state dir, never beside it.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cordon_config.providers import DUMMY_KEY, Provider, provider_for_variable
from cordon_config.scope import ScopePaths

from cordon_setup.edits import dotenv_file, json_file, toml_file
from cordon_setup.records import Planned


@dataclass(frozen=True, slots=True)
class RealKey:
    """A provider key found in an agent file. ``value`` is never printed (not even in a repr)."""

    path: Path
    variable: str
    provider: Provider
    value: str = field(repr=False)


class MoveError(RuntimeError):
    """A key could not be moved into cordon (one line; ``hint`` says what to do instead)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def _variables(fmt: str, text: str, table: Sequence[str] | None) -> dict[str, object]:
    if fmt == "dotenv":
        return dict(dotenv_file.values(text))
    if fmt == "toml" and table is not None:
        try:
            return toml_file.values(text, tuple(table))
        except toml_file.TomlEditError:
            return {}
    if fmt == "json":
        try:
            data, _ = json_file.load(text, where="")
        except json_file.JsonEditError:
            return {}
        env = json_file.get_object(data, ["env"])
        return dict(env) if env is not None else {}
    return {}


def keys_in(path: Path, fmt: str, data: bytes | None, table: Sequence[str] | None = None) -> list[RealKey]:
    """The provider keys in ``data`` (an agent file's bytes, in ``fmt``), in file order."""
    if data is None:
        return []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return []
    found = []
    for name, value in _variables(fmt, text, table).items():
        provider = provider_for_variable(name)
        if provider is not None and isinstance(value, str) and value.strip() and value != DUMMY_KEY:
            found.append(RealKey(path, name, provider, value))
    return found


def planned_keys(planned: Iterable[Planned]) -> list[RealKey]:
    """The provider keys in the files as they are now (before setup changes them)."""
    found: list[RealKey] = []
    for item in planned:
        record = item.record
        found += keys_in(Path(record["path"]), record["format"], item.change.before, record.get("table"))
    return found


def private_backup(paths: ScopePaths, integration: str, path: Path) -> Path:
    """Where the backup of an agent file that held a key lives: the state dir, outside the agent's reach."""
    digest = hashlib.sha256(str(path).encode("utf-8")).hexdigest()[:8]
    return paths.state_dir / "backups" / integration / f"{path.name}.{digest}.cordon.bak"


def masks(keys: Iterable[RealKey]) -> dict[str, str]:
    """Values never to be shown in a diff, with the label printed instead."""
    return {key.value: f"<real {key.variable}>" for key in keys}


# -- moving a key into cordon ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Destination:
    """The route a key moves into: its name, whether setup must add it first, and its keyring entry."""

    route: str
    new: bool
    service: str
    account: str
    other_source: str | None = None  # the route reads its secret from elsewhere: cordon cannot store it there


def destination(paths: ScopePaths, key: RealKey) -> Destination:
    """The route of ``key``'s provider in the scope's cordon.toml (or the one setup would add)."""
    from cordon_config import ConfigError, load_config
    from cordon_config.commands.common import describe_secret

    try:
        config = load_config(paths.config_path)
    except (ConfigError, OSError):
        return Destination(key.provider.name, True, "cordon", key.provider.name)
    for route in config.routes:
        if route.host == key.provider.host:
            if route.secret.source != "keyring":
                return Destination(route.name, False, "", "", describe_secret(route.secret))
            fields = route.secret.fields
            return Destination(route.name, False, str(fields.get("service", "cordon")), str(fields["account"]))
    return Destination(key.provider.name, True, "cordon", key.provider.name)


def add_route_command(key: RealKey, flag: str) -> str:
    """``cordon route add ...`` for the provider's usual route, its secret in the keyring."""
    return (f"cordon route add{flag} {key.provider.route_flags()} --source keyring "
            f"--account {shlex.quote(key.provider.name)}")


def move(paths: ScopePaths, key: RealKey, where: Destination) -> list[str]:
    """Store ``key`` in the keyring entry of its route, adding (and approving) the route first when needed.

    Returns the lines to print. Raises :class:`MoveError` when the key cannot be moved (nothing stored)."""
    from cordon_config import ConfigError, load_config
    from cordon_config.approvals import check_approved, record_change, route_item
    from cordon_config.commands.common import UsageError, after_routes_changed, find_route
    from cordon_config.commands.secret import store_value
    from cordon_config.edit import RouteExists, add_route
    from cordon_config.model import HeaderAuth, Route, SecretRef

    if where.other_source is not None:
        raise MoveError(f"route {where.route} reads its secret from {where.other_source}, where cordon cannot store "
                        f"the {key.variable} of {key.path}", f"put the key there yourself, then replace it in "
                        f"{key.path} with {key.variable}={DUMMY_KEY}")
    lines: list[str] = []
    try:
        if where.new:
            provider = key.provider
            route = Route(provider.name, provider.host, HeaderAuth(provider.header_name, provider.scheme),
                          SecretRef("keyring", {"account": where.account, "service": where.service}))
            config = add_route(paths.config_path, route)
            record_change(paths, config.path, None, route_item(find_route(config, route.name)))
            lines.append(f"added route {route.name} for {route.host} to {paths.config_path} (approved)")
            after_routes_changed(paths)
        config = load_config(paths.config_path)
        route = find_route(config, where.route)
        if any(e.item.kind == "route" and e.item.name == route.name for e in check_approved(config, paths)):
            raise MoveError(f"route {route.name} is not approved as {config.path} says, so no key is stored for it",
                            f"review it, then: cordon route approve {route.name}")
        store_value(route, key.value)
    except (RouteExists, ConfigError) as exc:
        raise MoveError(f"cannot add route {where.route}: {str(exc).splitlines()[0]}",
                        "add a route for the provider yourself (cordon route add), then run setup again") from None
    except UsageError as exc:
        raise MoveError(str(exc), exc.hint) from None
    lines.append(f"moved {key.variable} from {key.path} into the keyring; the file gets {DUMMY_KEY} in its place")
    return lines


def warning(key: RealKey, where: Destination, integration: str, flag: str, *, still_there: bool,
            backup: Path | None) -> list[str]:
    """What to do about a key left in an agent file (never its value): the exact commands."""
    lines = [f"warning: {key.path} holds a real {key.variable} (not cordon's dummy), which the agent can read"]
    steps = []
    if where.other_source is not None:
        steps.append(f"put the key where route {where.route} reads it ({where.other_source})")
    else:
        if where.new:
            steps.append(add_route_command(key, flag))
        source = f"from {key.path}" if still_there else f"from the original kept in {backup}"
        steps.append(f"cordon secret set{flag} {shlex.quote(where.route)}    (paste the key {source})")
    if still_there:
        steps.append(f"in {key.path}, set {key.variable}={DUMMY_KEY}")
    lines += [f"  {n}. {step}" for n, step in enumerate(steps, start=1)]
    if still_there:
        lines.append(f"  or run `cordon setup {integration}{flag}` on a terminal (or with --move-keys): "
                     "it offers to do this")
    return lines


def dummies_of(manifest: dict[str, object] | None) -> list[str]:
    """The variables an earlier setup replaced with the dummy (kept in the manifest so re-plans keep them)."""
    value = (manifest or {}).get("dummies")
    return [str(v) for v in value] if isinstance(value, list) else []
