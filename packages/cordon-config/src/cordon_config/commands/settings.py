"""`cordon config path|get|set|unset`: the top-level settings of cordon.toml, without editing TOML by hand."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cordon_config.commands.common import (
    OK,
    RESTART,
    Failure,
    UsageError,
    after_routes_changed,
    load,
    no_config,
    print_json,
    scope_of,
)
from cordon_config.errors import ConfigError
from cordon_config.scope import ScopePaths


def _port(text: str) -> int:
    value = _integer(text)
    if not 1 <= value <= 65535:
        raise UsageError(f"port {value} is not between 1 and 65535")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"not a whole number: {text!r}") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"not a number: {text!r}") from None
    return int(value) if value.is_integer() else value


def _boolean(text: str) -> bool:
    if text.lower() in ("true", "yes", "on", "1"):
        return True
    if text.lower() in ("false", "no", "off", "0"):
        return False
    raise UsageError(f"not true or false: {text!r}")


def _certificate_file(text: str) -> str:
    from cordon_config.pem import no_certificate_message

    path = Path(text).expanduser().absolute()
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    problem = no_certificate_message(path, data)
    if problem is not None:
        raise UsageError(problem)
    return str(path)


def _text(text: str) -> str:
    if not text:
        raise UsageError("the value is empty")
    return text


@dataclass(frozen=True)
class Setting:
    """A settable key: where it lives in cordon.toml, how a value is read, what it does."""

    path: tuple[str, ...]
    parse: Callable[[str], Any]
    help: str
    required: bool = False  # cannot be unset

    @property
    def name(self) -> str:
        return ".".join(self.path)


SETTINGS = {setting.name: setting for setting in (
    Setting(("listen",), _port, "the proxy's port on 127.0.0.1 (no other cordon scope may use it)", True),
    Setting(("secret_ttl",), _number, "seconds a fetched secret stays in memory (0: fetch on every request)"),
    Setting(("tls", "upstream_ca_file"), _certificate_file, "extra root CAs (PEM) for upstream TLS, added to the system store"),
    Setting(("tls", "name_constraints"), _boolean, "limit the CA to the routed hosts (re-issued when they change)"),
    Setting(("secrets", "op_path"), _text, "the 1Password CLI to run (a name on PATH or an absolute path)"),
    Setting(("limits", "header_bytes"), _integer, "largest request or response head accepted"),
    Setting(("limits", "connect_timeout"), _number, "seconds to connect to an upstream"),
    Setting(("limits", "idle_timeout"), _number, "seconds an idle client connection is kept"),
    Setting(("limits", "response_header_timeout"), _number, "seconds to wait for an upstream's response head"),
    Setting(("limits", "max_connections"), _integer, "client connections served at once"),
)}


def settings_help() -> str:
    """The keys, for ``--help``."""
    width = max(len(name) for name in SETTINGS)
    return "keys:\n" + "".join(f"  {name:<{width}}  {setting.help}\n" for name, setting in SETTINGS.items())


def _setting(key: str) -> Setting:
    setting = SETTINGS.get(key)
    if setting is None:
        import difflib

        close = difflib.get_close_matches(key, list(SETTINGS), n=1)
        raise UsageError(f"unknown setting {key!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
                         "keys: " + ", ".join(SETTINGS))
    return setting


def _current(config: Any, setting: Setting) -> Any:
    """The effective value (defaults included) from the loaded Config."""
    value: Any = config
    for part in setting.path:
        value = getattr(value, part)
    return str(value) if isinstance(value, Path) else value


def run_config(args: argparse.Namespace) -> int:
    if args.action == "path":
        return _path(args)
    if args.action == "get":
        _, config = load(args)
        setting = _setting(args.key)
        value = _current(config, setting)
        if args.json:
            print_json({setting.name: value})
        else:
            print("" if value is None else str(value).lower() if isinstance(value, bool) else value)
        return OK
    setting = _setting(args.key)
    paths = scope_of(args, changes=True)
    if not paths.config_path.exists():
        raise no_config(paths)
    from cordon_config.edit import UNSET, set_values

    if args.action == "unset":
        if setting.required:
            raise UsageError(f"{setting.name} cannot be unset", f"change it with: cordon config set {setting.name} VALUE")
        value = UNSET
    else:
        value = setting.parse(args.value)
        if setting.name == "listen":
            _check_port(value, paths.config_path)
    try:
        before, after = set_values(paths.config_path, {setting.path: value})
    except ConfigError as exc:
        problem = exc.problems[0]
        raise UsageError(f"{setting.name}: {problem.message}", problem.hint) from None
    if before == after:
        print(f"{setting.name} is already {'unset' if value is UNSET else args.value} in {paths.config_path}")
        return OK
    if setting.path[0] in ("tls", "secrets"):
        _approve_change(paths, before, after)  # a person set it with a cordon command: that is its approval
    shown = "removed" if value is UNSET else f"= {str(value).lower() if isinstance(value, bool) else value}"
    print(f"{setting.name} {shown} in {paths.config_path}")
    status = after_routes_changed(paths)
    print(RESTART)
    return status


def _approve_change(paths: ScopePaths, before: str, after: str) -> None:
    """Record the changed [tls]/[secrets] fields as approved (approvals.record_change: only what changed)."""
    from cordon_config.approvals import ApprovalError, record_change, settings_item
    from cordon_config.parse import parse_config

    old, new = parse_config(before, paths.config_path), parse_config(after, paths.config_path)
    try:
        record_change(paths, paths.config_path, settings_item(old, paths), settings_item(new, paths))
    except ApprovalError as exc:
        raise Failure(f"{paths.config_path} was changed, but its approval could not be recorded: {exc}",
                      exc.hint) from None


def _check_port(port: int, config_path: Path) -> None:
    """Refuse a port another known scope uses; warn when something holds it right now."""
    from cordon_config.scopes import ports_in_use

    owner = ports_in_use(exclude=config_path).get(port)
    if owner is not None:
        from cordon_config.scopes import listen_port, scope_port

        current = listen_port(config_path)
        free = scope_port(6790, exclude=config_path, avoid=(current,) if current else ())
        raise UsageError(f"port {port} is already the port of another cordon scope ({owner})",
                         f"choose another, e.g. {free} (two proxies cannot share a port)")
    from cordon_config.ports import free_port

    try:
        if free_port(port, port) == port:
            return
    except OSError:
        pass
    sys.stderr.write(f"cordon: warning: something is listening on 127.0.0.1:{port} right now "
                     "(the proxy will not start while it does)\n")


def _path(args: argparse.Namespace) -> int:
    paths = scope_of(args)
    exists = paths.config_path.exists()
    if args.json:
        print_json({"config": str(paths.config_path), "exists": exists, "scope": paths.scope,
                    "namespace": paths.namespace, "state_dir": str(paths.state_dir),
                    "found_above": paths.found_above})
        return OK
    if not exists:
        raise no_config(paths)
    print(paths.config_path)
    return OK
