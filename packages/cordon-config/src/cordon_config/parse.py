"""cordon.toml text → validated :class:`~cordon_config.model.Config`.

The stdlib ``tomllib`` parses valid files into plain Python, and the validator below checks every rule,
collecting all problems into one :class:`ConfigError` with file, line, route, key, message and hint for each.
Only when ``tomllib`` rejects the text does tomlkit parse it again (its ``unwrap()`` gives the same plain
types), for the located "not valid TOML: ... (column N)" message, or for the data when tomlkit accepts it.
So the running proxy and the other readers (``cordon status``, ``cordon wait``) import tomlkit (and
``difflib``, used only for "did you mean" hints) only when a file is invalid. That keeps the proxy's idle
memory down.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeVar, overload

from cordon_config.errors import ConfigError, ConfigNotFound, ConfigProblem
from cordon_config.facts import DEFAULT_LISTEN
from cordon_config.hosts import canonical_host
from cordon_config.legacy import (
    LEGACY_AUTH,
    auth_note,
    header_auth_of,
    is_legacy_auth,
    providers_note,
    read_providers,
)
from cordon_config.locate import key_lines, line_of
from cordon_config.model import (
    DEFAULT_PG_PORT,
    AuditConfig,
    BasicAuth,
    ClientTLS,
    Config,
    Egress,
    HeaderAuth,
    Limits,
    Listener,
    PasswordAuth,
    RateLimit,
    Route,
    SecretRef,
    TLSConfig,
    UpstreamTLS,
)

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "TE", "Trailer", "Upgrade",
        "Proxy-Authorization", "Proxy-Authenticate",
    )
)
SOURCES = ("keyring", "1password", "env", "file", "command")
DEFAULT_KEYRING_SERVICE = "cordon"

TOP_KEYS = ("listen", "tls", "routes", "listeners", "secrets", "limits", "secret_ttl", "egress", "audit")
TLS_KEYS = ("enabled", "ca_cert_path", "ca_key_path", "upstream_ca_file", "name_constraints")
SECRETS_KEYS = ("op_path",)
LIMIT_KEYS = ("header_bytes", "connect_timeout", "idle_timeout", "response_header_timeout", "max_connections",
              "max_unauthenticated", "first_head_timeout")
ROUTE_KEYS = ("name", "match", "auth", "allow_plain_http", "limits", "scrub_responses")
MATCH_KEYS = ("host", "port", "methods", "paths")
HEADER_AUTH_KEYS = ("type", "header_name", "scheme", "secret")
BASIC_AUTH_KEYS = ("type", "username", "secret")
ROUTE_LIMIT_KEYS = ("requests_per_minute", "burst")
EGRESS_KEYS = ("unrouted", "allow")
EGRESS_MODES = ("tunnel", "deny")
AUDIT_KEYS = ("enabled", "max_file_bytes", "keep_files")
LISTENER_KEYS = ("name", "port", "upstream", "client_tls", "upstream_tls", "auth")
PASSWORD_AUTH_KEYS = ("type", "username", "secret")
CLIENT_TLS_MODES: tuple[ClientTLS, ...] = ("accept", "require", "disable")
UPSTREAM_TLS_MODES: tuple[UpstreamTLS, ...] = ("verify-full", "disable")
_Mode = TypeVar("_Mode", bound=str)  # one of a setting's allowed values (a Literal type)
SOURCE_FIELDS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # source: (required, optional)
    "keyring": (("account",), ("service", "decode")),
    "1password": (("vault", "item", "field"), ("account",)),
    "env": (("var",), ()),
    "file": (("path",), ()),
    "command": (("argv",), ()),
}
SOURCE_EXAMPLES = {
    "keyring": 'account = "<route name>"',
    "1password": 'vault = "Private", item = "OpenAI", field = "credential"',
    "env": 'var = "OPENAI_API_KEY"',
    "file": 'path = "/abs/path/to/secret"',
    "command": 'argv = ["gh", "auth", "token"]',
}
LIMIT_RULES: Mapping[str, tuple[type, float, float]] = {
    # key: (type, minimum, maximum)
    "header_bytes": (int, 1024, 16 * 1024 * 1024),
    "connect_timeout": (float, 0.001, 3600),
    "idle_timeout": (float, 0.001, 86400),
    "response_header_timeout": (float, 0.001, 86400),
    "max_connections": (int, 1, 1_000_000),
    "max_unauthenticated": (int, 1, 1_000_000),
    "first_head_timeout": (float, 0.001, 3600),
}

Key = tuple[str | int, ...]
_SECRET_KEYS = ("source", "account", "service", "decode", "vault", "item", "field", "var", "path", "argv")
MISPLACED = {
    "routes": {
        **dict.fromkeys(MATCH_KEYS, "[routes.match]"),
        **dict.fromkeys(("type", "header_name", "scheme", "username"), "[routes.auth]"),
        **dict.fromkeys(_SECRET_KEYS, "[routes.auth.secret]"),
    },
    "listeners": {
        **dict.fromkeys(("type", "username"), "[listeners.auth]"),
        **dict.fromkeys(_SECRET_KEYS, "[listeners.auth.secret]"),
    },
}


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the cordon.toml at ``path``; raise :class:`ConfigError` listing every problem."""
    file = Path(os.path.abspath(path))
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigNotFound(
            file, [ConfigProblem(file, None, None, None, "file not found", "run `cordon setup` to create it")]
        ) from None
    except OSError as exc:
        raise ConfigError(file, [ConfigProblem(file, None, None, None, f"cannot read: {exc.strerror}")]) from None
    return parse_config(decode_config(raw, file), file)


def decode_config(raw: bytes, file: Path) -> str:
    """``raw`` as UTF-8 text, or a :class:`ConfigError` naming the first line that is not."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(file, [ConfigProblem(file, line, None, None, "not valid UTF-8")]) from None


def parse_config(text: str, path: str | os.PathLike[str]) -> Config:
    """Validate cordon.toml ``text`` as if read from ``path`` (used for relative paths and messages)."""
    file = Path(os.path.abspath(path))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        data = _parse_with_tomlkit(text, file)
    return _Validator(file, text).run(data)


def _parse_with_tomlkit(text: str, file: Path) -> dict[str, Any]:
    """tomlkit's plain data for ``text``, or its located error as a :class:`ConfigError` (imported lazily)."""
    import tomlkit
    from tomlkit.exceptions import ParseError, TOMLKitError

    try:
        return tomlkit.parse(text).unwrap()
    except ParseError as exc:
        message = str(exc).split(" at line ")[0]
        problem = ConfigProblem(file, exc.line, None, None, f"not valid TOML: {message} (column {exc.col})")
        raise ConfigError(file, [problem]) from None
    except TOMLKitError as exc:  # e.g. a table defined twice
        raise ConfigError(file, [ConfigProblem(file, None, None, None, f"not valid TOML: {exc}")]) from None


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _suggest(key: str, allowed: tuple[str, ...]) -> str:
    import difflib  # only an invalid file needs it

    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return f'did you mean "{close[0]}"?'
    return "allowed here: " + ", ".join(allowed)


def suggest_name(text: str) -> str:
    """A valid route name derived from ``text`` (for hints and the wizard)."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return slug or "route"


class _Validator:
    def __init__(self, file: Path, text: str):
        self.file = file
        self.lines = key_lines(text)
        self.problems: list[ConfigProblem] = []
        self.notes: list[str] = []  # legacy forms read, each with what it means (cordon_config.legacy)
        self.route_label: str | None = None
        self.route_index: int | None = None
        self.section = "routes"  # the array of tables being validated: "routes" or "listeners"
        self.names: dict[str, str] = {}  # item name -> its label ("route #1"), unique across routes and listeners

    # -- reporting -------------------------------------------------------------------------------------------
    def add(self, key: Key, message: str, hint: str | None = None, *, line_key: Key | None = None) -> None:
        where = key if line_key is None else line_key
        full: Key = where if self.route_index is None else (self.section, self.route_index, *where)
        shown = ".".join(str(part) for part in key) or None
        line = line_of(self.lines, full)
        kind = "listener" if self.section == "listeners" else "route"
        self.problems.append(ConfigProblem(self.file, line, self.route_label, shown, message, hint, kind))

    def unknown_keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], prefix: Key) -> None:
        for key in table:
            if key not in allowed:
                hint = _suggest(key, allowed)
                misplaced = MISPLACED[self.section]
                if prefix == () and self.route_index is not None and key in misplaced:
                    hint = f"{key} belongs under {misplaced[key]}"
                self.add((*prefix, key), f'unknown key "{key}"', hint)

    def table(self, data: Mapping[str, Any], key: str, prefix: Key = ()) -> dict[str, Any] | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.add((*prefix, key), f"must be a table, not {_kind(value)}")
            return None
        return value

    def string(self, data: Mapping[str, Any], key: str, prefix: Key, *, required: bool, hint: str | None = None,
               ) -> str | None:
        value = data.get(key)
        if value is None:
            if required:
                self.add((*prefix, key), f"{key} is required", hint)
            return None
        if not isinstance(value, str):
            self.add((*prefix, key), f"must be a string, not {_kind(value)}")
            return None
        if not value:
            self.add((*prefix, key), f"{key} must not be empty", hint)
            return None
        return value

    def boolean(self, data: Mapping[str, Any], key: str, prefix: Key, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.add((*prefix, key), f"must be true or false, not {_kind(value)}")
            return default
        return value

    @overload
    def number(self, data: Mapping[str, Any], key: str, prefix: Key, default: int, *, integer: Literal[True],
               minimum: float, maximum: float) -> int: ...
    @overload
    def number(self, data: Mapping[str, Any], key: str, prefix: Key, default: float, *, integer: bool,
               minimum: float, maximum: float) -> float: ...
    def number(self, data: Mapping[str, Any], key: str, prefix: Key, default: float, *, integer: bool,
               minimum: float, maximum: float) -> float:
        value = data.get(key, default)
        ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok_type:
            want = "an integer" if integer else "a number"
            self.add((*prefix, key), f"must be {want}, not {_kind(value)}")
            return default
        if not minimum <= value <= maximum:
            self.add((*prefix, key), f"must be from {minimum:g} to {maximum:g}, got {value!r}")
            return default
        return value if integer else float(value)

    def path(self, data: Mapping[str, Any], key: str, prefix: Key, *, required: bool,
             hint: str | None = None) -> Path | None:
        value = self.string(data, key, prefix, required=required, hint=hint)
        if value is None:
            return None
        if value.startswith("~"):
            self.add((*prefix, key), f'"{value}": paths are literal and "~" is not expanded',
                     "write the absolute path")
            return None
        if "\0" in value:
            self.add((*prefix, key), "path contains a NUL character")
            return None
        return Path(os.path.normpath(self.file.parent / value))

    # -- the document ----------------------------------------------------------------------------------------
    def run(self, data: dict[str, Any]) -> Config:
        self.unknown_keys(data, TOP_KEYS, ())
        listen = self.listen(data)
        tls = self.tls(data)
        secret_ttl = self.number(data, "secret_ttl", (), 10.0, integer=False, minimum=0, maximum=86400)
        secrets_table = self.table(data, "secrets") or {}
        own_keys = {k: v for k, v in secrets_table.items() if k != "providers"}  # read below, never suggested
        self.unknown_keys(own_keys, SECRETS_KEYS, ("secrets",))
        op_path = self.string(secrets_table, "op_path", ("secrets",), required=False)
        if op_path is not None and "/" in op_path:
            resolved = self.path(secrets_table, "op_path", ("secrets",), required=False)
            op_path = str(resolved) if resolved is not None else None
        if "providers" in secrets_table:
            providers = read_providers(secrets_table["providers"])
            for index, key, message in providers.problems:
                self.add(("secrets", "providers", index, key) if key else ("secrets", "providers", index), message,
                         "remove that provider, or write [secrets] op_path yourself")
            if op_path is not None and providers.op_path not in (None, op_path):
                self.add(("secrets", "providers"), f"[secrets] op_path and [[secrets.providers]] name different op "
                         f"programs ({op_path}, {providers.op_path})", "keep one of them")
            line = line_of(self.lines, ("secrets", "providers", 0))
            note = providers_note(providers.op_path)
            self.notes.append(f"{self.file}:{line}: {note}" if line else note)
            if op_path is None and providers.op_path is not None:
                op_path = providers.op_path
                if "/" in op_path:
                    op_path = str(Path(os.path.normpath(self.file.parent / op_path)))
        limits = self.limits(data)
        routes = self.routes(data)
        egress = self.egress(data)
        audit = self.audit(data)
        listeners = self.listeners(data, listen)
        if routes:
            if "tls" not in data:
                self.add(("tls",), "routes are configured but the [tls] table is missing",
                         "run `cordon setup` to create the CA and write [tls] with ca_cert_path and ca_key_path",
                         line_key=("routes", 0))
            elif not tls.enabled:
                self.add(("tls", "enabled"), "routes are configured but TLS interception is disabled",
                         "set enabled = true under [tls] (routes cannot inject without it)")
        tls_listeners = [item for item in listeners if item.client_tls != "disable"]
        if tls_listeners and not tls.enabled and not routes:  # with routes, the problem is reported above
            names = ", ".join(f'"{item.name}"' for item in tls_listeners)
            self.add(("tls",), f"listener {names} offers TLS to clients (client_tls = "
                     f'"{tls_listeners[0].client_tls}") but there is no enabled [tls] CA to issue its certificate',
                     'run `cordon setup` (it writes [tls]), or set client_tls = "disable" on the listener',
                     line_key=("listeners", 0))
        if self.problems:
            self.problems.sort(key=lambda p: (p.line is None, p.line or 0))
            raise ConfigError(self.file, self.problems)
        return Config(
            path=self.file, listen=listen, tls=tls, routes=tuple(routes), limits=limits,
            secret_ttl=secret_ttl, op_path=op_path, listeners=tuple(listeners), egress=egress, audit=audit,
            notes=tuple(self.notes),
        )

    def listen(self, data: Mapping[str, Any]) -> int:
        value = data.get("listen")
        if value is None:
            self.add(("listen",), "listen is required", f"add listen = {DEFAULT_LISTEN} (the port on 127.0.0.1)")
            return DEFAULT_LISTEN
        if isinstance(value, bool) or not isinstance(value, int):
            hint = "write the port alone, e.g. listen = 6790 (the address is always 127.0.0.1)"
            self.add(("listen",), f"must be an integer port from 1 to 65535, not {_kind(value)}", hint)
            return DEFAULT_LISTEN
        if not 1 <= value <= 65535:
            self.add(("listen",), f"must be a port from 1 to 65535, got {value}")
            return DEFAULT_LISTEN
        return value

    def tls(self, data: Mapping[str, Any]) -> TLSConfig:
        table = self.table(data, "tls")
        if table is None:
            return TLSConfig(enabled=False)
        prefix: Key = ("tls",)
        self.unknown_keys(table, TLS_KEYS, prefix)
        enabled = self.boolean(table, "enabled", prefix, True)
        hint = "run `cordon setup`, which writes the CA paths"
        cert = self.path(table, "ca_cert_path", prefix, required=enabled, hint=hint)
        key = self.path(table, "ca_key_path", prefix, required=enabled, hint=hint)
        upstream = self.path(table, "upstream_ca_file", prefix, required=False)
        constraints = self.boolean(table, "name_constraints", prefix, False) if "name_constraints" in table else None
        return TLSConfig(enabled, cert, key, upstream, constraints)

    def limits(self, data: Mapping[str, Any]) -> Limits:
        table = self.table(data, "limits")
        if table is None:
            return Limits()
        prefix: Key = ("limits",)
        self.unknown_keys(table, LIMIT_KEYS, prefix)
        defaults = Limits()
        values: dict[str, Any] = {}  # int or float per LIMIT_RULES, as each field of Limits wants
        for key, (kind, low, high) in LIMIT_RULES.items():
            values[key] = self.number(table, key, prefix, getattr(defaults, key), integer=kind is int,
                                      minimum=low, maximum=high)
        return Limits(**values)

    # -- routes ----------------------------------------------------------------------------------------------
    def routes(self, data: Mapping[str, Any]) -> list[Route]:
        value = data.get("routes")
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.add(("routes",), "routes must be an array of tables", "write each route as a [[routes]] table")
            return []
        routes: list[Route] = []
        hosts: dict[str, list[tuple[int | None, str, int]]] = {}
        for index, table in enumerate(value):
            name = table.get("name")
            self.route_index = index
            self.route_label = f'"{name}"' if isinstance(name, str) and name else f"#{index + 1}"
            route = self.route(table, hosts, index)
            if route is not None:
                routes.append(route)
        self.route_index = None
        self.route_label = None
        return routes

    def item_name(self, table: Mapping[str, Any], index: int) -> str | None:
        """The ``name`` of the current route or listener, checked and recorded (unique across both kinds)."""
        kind = "listener" if self.section == "listeners" else "route"
        name = self.string(table, "name", (), required=True,
                           hint=f'add name = "<a short name>" to this [[{self.section}]]')
        if name is not None:
            if not NAME_RE.fullmatch(name):
                self.add(("name",), f'name "{name}" is not valid: use lower-case letters, digits, ".", "_" and '
                         '"-", starting with a letter or digit', f'e.g. name = "{suggest_name(name)}"')
            elif name in self.names:
                self.add(("name",), f'name "{name}" is already used by {self.names[name]}',
                         "names must be unique across routes and listeners")
            else:
                self.names[name] = f"{kind} #{index + 1}"
        return name

    def route(self, table: Mapping[str, Any], hosts: dict[str, list[tuple[int | None, str, int]]], index: int,
              ) -> Route | None:
        before = len(self.problems)
        self.unknown_keys(table, ROUTE_KEYS, ())
        name = self.item_name(table, index)
        host, port = self.match(table, hosts, index, name)
        auth = self.auth(table)
        secret = self.secret(table)
        allow_plain = self.boolean(table, "allow_plain_http", (), False)
        methods, paths = self.rules(table)
        rate_limit = self.route_limits(table)
        scrub = self.boolean(table, "scrub_responses", (), True)
        if len(self.problems) != before or name is None or host is None or auth is None or secret is None:
            return None
        return Route(name=name, host=host, auth=auth, secret=secret, port=port, allow_plain_http=allow_plain,
                     methods=methods, paths=paths, rate_limit=rate_limit, scrub_responses=scrub)

    def match(self, table: Mapping[str, Any], hosts: dict[str, list[tuple[int | None, str, int]]], index: int,
              name: str | None) -> tuple[str | None, int | None]:
        hint = 'add [routes.match] with host = "api.example.com"'
        match = self.table(table, "match")
        if match is None:
            if "match" not in table:
                self.add(("match", "host"), "host is required", hint)
            return None, None
        self.unknown_keys(match, MATCH_KEYS, ("match",))
        raw_host = self.string(match, "host", ("match",), required=True, hint=hint)
        port: int | None = None
        if "port" in match:
            port = self.number(match, "port", ("match",), 0, integer=True, minimum=1, maximum=65535) or None
        if raw_host is None:
            return None, port
        try:
            host = canonical_host(raw_host)
        except ValueError as exc:
            self.add(("match", "host"), str(exc), 'use a DNS name such as "api.openai.com" (no scheme, port or path)')
            return None, port
        for other_port, other_label, _ in hosts.get(host, []):
            if other_port is None or port is None or other_port == port:
                self.add(("match", "host"), f'host "{host}" is already matched by route {other_label}',
                         "each host may have one route (or give each route a different match.port)")
                break
        hosts.setdefault(host, []).append((port, f'"{name}"' if name else f"#{index + 1}", index))
        return host, port

    def auth(self, table: Mapping[str, Any]) -> HeaderAuth | BasicAuth | None:
        auth = self.table(table, "auth")
        prefix: Key = ("auth",)
        if auth is None:
            if "auth" not in table:
                self.add(prefix, "auth is required",
                         'add [routes.auth] with type = "header", header_name = "Authorization", scheme = "Bearer"')
            return None
        kind = auth.get("type")
        if kind is None:
            self.add((*prefix, "type"), "type is required", 'add type = "header" or type = "basic"')
            self.unknown_keys(auth, tuple(dict.fromkeys(HEADER_AUTH_KEYS + BASIC_AUTH_KEYS)), prefix)
            return None
        if is_legacy_auth(kind):
            _, _, allowed = LEGACY_AUTH[kind]
            for key in auth:
                if key not in allowed:
                    self.add(("auth", key), f'unknown key "{key}" for auth type "{kind}"', _suggest(key, allowed))
            note = auth_note((self.route_label or "").strip('"'), auth)
            index = self.route_index
            line = None if index is None else line_of(self.lines, ("routes", index, "auth", "type"))
            self.notes.append(f"{self.file}:{line}: {note}" if line else note)
            auth = {**header_auth_of(auth), **({"secret": auth["secret"]} if "secret" in auth else {})}
            kind = "header"
        if kind == "header":
            self.unknown_keys_for_type(auth, HEADER_AUTH_KEYS, "header")
            header_name = self.string(auth, "header_name", prefix, required=True,
                                      hint='add header_name = "Authorization" (and scheme = "Bearer")')
            scheme = self.string(auth, "scheme", prefix, required=False)
            if scheme is not None and not TOKEN_RE.fullmatch(scheme):
                self.add((*prefix, "scheme"), f'scheme "{scheme}" is not a valid auth scheme (an RFC 9110 token, '
                         'no spaces)', 'e.g. scheme = "Bearer"')
                scheme = None
            if header_name is None:
                return None
            if not TOKEN_RE.fullmatch(header_name):
                self.add((*prefix, "header_name"), f'header_name "{header_name}" is not a valid header name '
                         "(an RFC 9110 token: letters, digits and !#$%&'*+-.^_`|~)",
                         'e.g. header_name = "x-api-key"')
                return None
            if header_name.lower() in RESERVED_HEADERS:
                self.add((*prefix, "header_name"), f'header_name "{header_name}" is reserved (framing, connection '
                         "or proxy header); cordon never injects it",
                         'use the header the API expects, e.g. "Authorization" or "x-api-key"')
                return None
            if header_name.lower() == "authorization" and scheme is None and "scheme" not in auth:
                self.add((*prefix, "scheme"), "scheme is required when header_name is Authorization",
                         'add scheme = "Bearer"', line_key=(*prefix, "header_name"))
                return None
            return HeaderAuth(header_name=header_name, scheme=scheme)
        if kind == "basic":
            self.unknown_keys_for_type(auth, BASIC_AUTH_KEYS, "basic")
            username = self.string(auth, "username", prefix, required=True,
                                   hint='add username = "..." (the secret is the password)')
            if username is None:
                return None
            if ":" in username or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in username):
                self.add((*prefix, "username"), "username must not contain \":\" or control characters "
                         "(RFC 7617)")
                return None
            return BasicAuth(username=username)
        hint = 'use type = "header" or type = "basic"'
        if isinstance(kind, str) and kind.lower() == "bearer":
            hint = 'use type = "header" with header_name = "Authorization" and scheme = "Bearer"'
        self.add((*prefix, "type"), f'must be "header" or "basic", got {kind!r}', hint)
        return None

    def unknown_keys_for_type(self, auth: Mapping[str, Any], allowed: tuple[str, ...], kind: str) -> None:
        other = {"header": BASIC_AUTH_KEYS, "basic": HEADER_AUTH_KEYS}[kind]
        for key in auth:
            if key in allowed:
                continue
            if key in other:
                self.add(("auth", key), f'{key} is not used with type = "{kind}"',
                         f'remove it, or use type = "{"basic" if kind == "header" else "header"}"')
            else:
                self.add(("auth", key), f'unknown key "{key}"', _suggest(key, allowed))

    def secret(self, table: Mapping[str, Any]) -> SecretRef | None:
        auth = table.get("auth")
        if not isinstance(auth, dict):
            return None
        prefix: Key = ("auth", "secret")
        secret = self.table(auth, "secret", ("auth",))
        if secret is None:
            if "secret" not in auth:
                self.add(prefix, "secret is required",
                         f'add [{self.section}.auth.secret] with source = "keyring" and account = '
                         f'"<{"listener" if self.section == "listeners" else "route"} name>"')
            return None
        source = secret.get("source")
        if source is None:
            self.add((*prefix, "source"), "source is required", "source is one of: " + ", ".join(SOURCES))
            return None
        if source not in SOURCES:
            self.add((*prefix, "source"), f"unknown secret source {source!r}",
                     _suggest(str(source), SOURCES) if isinstance(source, str) else "one of: " + ", ".join(SOURCES))
            return None
        required, optional = SOURCE_FIELDS[source]
        allowed = ("source", *required, *optional)
        for key in secret:
            if key not in allowed:
                self.add((*prefix, key), f'unknown key "{key}" for source = "{source}"', _suggest(key, allowed))
        fields: dict[str, Any] = {}
        example = SOURCE_EXAMPLES[source]
        if source == "command":
            argv = secret.get("argv")
            if argv is None:
                self.add((*prefix, "argv"), "argv is required", f"e.g. {example}")
            elif (not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv)
                  or not argv[0]):
                self.add((*prefix, "argv"), "argv must be a non-empty list of strings (run without a shell)",
                         f"e.g. {example}")
            else:
                fields["argv"] = tuple(argv)
        elif source == "file":
            resolved = self.path(secret, "path", prefix, required=True, hint=f"e.g. {example}")
            if resolved is not None:
                fields["path"] = str(resolved)
        else:
            for key in required:
                value = self.string(secret, key, prefix, required=True, hint=f"e.g. {example}")
                if value is not None:
                    fields[key] = value
            for key in optional:
                value = self.string(secret, key, prefix, required=False)
                if value is not None:
                    fields[key] = value
            if source == "keyring":
                fields.setdefault("service", DEFAULT_KEYRING_SERVICE)
                decode = fields.get("decode")
                if decode is not None and decode != "go-keyring":
                    self.add((*prefix, "decode"), f'decode must be "go-keyring", got "{decode}"',
                             'remove decode, or set decode = "go-keyring" for entries written by Go tools')
            if source == "env" and "var" in fields and not ENV_NAME_RE.fullmatch(fields["var"]):
                self.add((*prefix, "var"), f'var "{fields["var"]}" is not a valid environment variable name',
                         'e.g. var = "OPENAI_API_KEY"')
        if not all(key in fields for key in required):
            return None
        return SecretRef(source=source, fields=MappingProxyType(fields))

    # -- policy: rules, limits, egress, audit --------------------------------------------------------------
    def string_list(self, table: Mapping[str, Any], key: str, prefix: Key, example: str) -> list[str] | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.add((*prefix, key), f"{key} must be an array of strings", f"e.g. {key} = {example}")
            return None
        if not value:
            self.add((*prefix, key), f"{key} must not be empty", f"remove {key} to allow any, or e.g. {key} = {example}")
            return None
        return value

    def rules(self, table: Mapping[str, Any]) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
        """``[routes.match] methods`` and ``paths`` (None: any), checked with :mod:`cordon_config.pathrules`."""
        from cordon_config.pathrules import method_problem, path_rule_problem

        match = table.get("match")
        if not isinstance(match, dict):
            return None, None
        prefix: Key = ("match",)
        methods = self.string_list(match, "methods", prefix, '["POST", "GET"]')
        if methods is not None:
            for method in methods:
                problem = method_problem(method)
                if problem:
                    self.add((*prefix, "methods"), problem, 'e.g. methods = ["POST", "GET"]')
            methods = list(dict.fromkeys(methods))
        paths = self.string_list(match, "paths", prefix, '["/v1/responses", "/v1/models*"]')
        if paths is not None:
            for rule in paths:
                problem = path_rule_problem(rule)
                if problem:
                    self.add((*prefix, "paths"), problem,
                             'a path rule is an exact path, or a prefix ending in "*" (docs/configuration.md)')
            paths = list(dict.fromkeys(paths))
        return (tuple(methods) if methods else None), (tuple(paths) if paths else None)

    def route_limits(self, table: Mapping[str, Any]) -> RateLimit | None:
        """``[routes.limits] requests_per_minute`` (and ``burst``)."""
        limits = self.table(table, "limits")
        if limits is None:
            return None
        prefix: Key = ("limits",)
        self.unknown_keys(limits, ROUTE_LIMIT_KEYS, prefix)
        if "requests_per_minute" not in limits:
            if "burst" in limits:
                self.add((*prefix, "requests_per_minute"), "requests_per_minute is required with burst",
                         "add requests_per_minute = 60", line_key=(*prefix, "burst"))
            return None
        rate = self.number(limits, "requests_per_minute", prefix, 0, integer=True, minimum=1, maximum=1_000_000)
        burst = None
        if "burst" in limits:
            burst = self.number(limits, "burst", prefix, 0, integer=True, minimum=1, maximum=1_000_000) or None
        return RateLimit(rate, burst) if rate else None

    def egress(self, data: Mapping[str, Any]) -> Egress:
        """``[egress] unrouted`` and ``allow``."""
        from cordon_config.egress import canonical_pattern

        table = self.table(data, "egress")
        if table is None:
            return Egress()
        prefix: Key = ("egress",)
        self.unknown_keys(table, EGRESS_KEYS, prefix)
        unrouted = table.get("unrouted", "tunnel")
        if unrouted not in EGRESS_MODES:
            self.add((*prefix, "unrouted"), f'unrouted must be "tunnel" or "deny", got {unrouted!r}',
                     'unrouted = "deny" refuses hosts without a route unless allow lists them')
            unrouted = "tunnel"
        allow: list[str] = []
        raw = table.get("allow", [])
        if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
            self.add((*prefix, "allow"), "allow must be an array of host names",
                     'e.g. allow = ["github.com", "*.npmjs.org"]')
        else:
            for entry in raw:
                try:
                    allow.append(canonical_pattern(entry))
                except ValueError as exc:
                    self.add((*prefix, "allow"), str(exc),
                             'an entry is a host name, an IP address, or "*." and a domain (e.g. "*.npmjs.org")')
        return Egress(unrouted, tuple(dict.fromkeys(allow)))

    def audit(self, data: Mapping[str, Any]) -> AuditConfig:
        """``[audit] enabled``, ``max_file_bytes``, ``keep_files``."""
        table = self.table(data, "audit")
        if table is None:
            return AuditConfig()
        prefix: Key = ("audit",)
        self.unknown_keys(table, AUDIT_KEYS, prefix)
        defaults = AuditConfig()
        enabled = self.boolean(table, "enabled", prefix, True)
        size = self.number(table, "max_file_bytes", prefix, defaults.max_file_bytes, integer=True,
                           minimum=64 * 1024, maximum=1_000_000_000)
        keep = self.number(table, "keep_files", prefix, defaults.keep_files, integer=True, minimum=1, maximum=1000)
        return AuditConfig(enabled, size, keep)

    # -- listeners -------------------------------------------------------------------------------------------
    def listeners(self, data: Mapping[str, Any], listen: int) -> list[Listener]:
        value = data.get("listeners")
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.add(("listeners",), "listeners must be an array of tables",
                     "write each listener as a [[listeners]] table")
            return []
        self.section = "listeners"
        listeners: list[Listener] = []
        ports: dict[int, str] = {listen: "listen (the HTTP proxy)"}
        for index, table in enumerate(value):
            name = table.get("name")
            self.route_index = index
            self.route_label = f'"{name}"' if isinstance(name, str) and name else f"#{index + 1}"
            listener = self.listener(table, index, ports)
            if listener is not None:
                listeners.append(listener)
        self.route_index = None
        self.route_label = None
        self.section = "routes"
        return listeners

    def listener(self, table: Mapping[str, Any], index: int, ports: dict[int, str]) -> Listener | None:
        before = len(self.problems)
        self.unknown_keys(table, LISTENER_KEYS, ())
        name = self.item_name(table, index)
        port = self.listener_port(table, index, ports)
        upstream = self.upstream(table)
        client_tls = self.choice(table, "client_tls", CLIENT_TLS_MODES)
        upstream_tls = self.choice(table, "upstream_tls", UPSTREAM_TLS_MODES)
        username = self.password_auth(table)
        secret = self.secret(table)
        if (len(self.problems) != before or name is None or port is None or upstream is None or username is None
                or secret is None):
            return None
        return Listener(name=name, port=port, upstream_host=upstream[0], upstream_port=upstream[1],
                        auth=PasswordAuth(username), secret=secret, client_tls=client_tls,
                        upstream_tls=upstream_tls)

    def listener_port(self, table: Mapping[str, Any], index: int, ports: dict[int, str]) -> int | None:
        if "port" not in table:
            self.add(("port",), "port is required", "add port = 15432 (the port on 127.0.0.1 clients connect to)")
            return None
        port = self.number(table, "port", (), 0, integer=True, minimum=1, maximum=65535) or None
        if port is None:
            return None
        if port in ports:
            self.add(("port",), f"port {port} is already used by {ports[port]}",
                     "give each listener its own port, different from listen")
            return None
        label = table.get("name")
        ports[port] = f'listener "{label}"' if isinstance(label, str) and label else f"listener #{index + 1}"
        return port

    def choice(self, table: Mapping[str, Any], key: str, allowed: tuple[_Mode, ...]) -> _Mode:
        value = table.get(key, allowed[0])
        if value not in allowed:
            shown = f'"{value}"' if isinstance(value, str) else _kind(value)
            self.add((key,), f"{key} must be one of " + ", ".join(f'"{a}"' for a in allowed) + f", not {shown}",
                     f'{key} = "{allowed[0]}" is the default')
            return allowed[0]
        return allowed[allowed.index(value)]

    def upstream(self, table: Mapping[str, Any]) -> tuple[str, int] | None:
        hint = 'e.g. upstream = "db.example.com:5432" (host, and the port when it is not 5432)'
        text = self.string(table, "upstream", (), required=True, hint=hint)
        if text is None:
            return None
        try:
            return parse_upstream(text)
        except ValueError as exc:
            self.add(("upstream",), str(exc), hint)
            return None

    def password_auth(self, table: Mapping[str, Any]) -> str | None:
        prefix: Key = ("auth",)
        auth = self.table(table, "auth")
        if auth is None:
            if "auth" not in table:
                self.add(prefix, "auth is required",
                         'add [listeners.auth] with type = "password" and username = "<database user>"')
            return None
        self.unknown_keys(auth, PASSWORD_AUTH_KEYS, prefix)
        kind = auth.get("type")
        if kind is None:
            self.add((*prefix, "type"), "type is required", 'add type = "password"')
        elif kind != "password":
            self.add((*prefix, "type"), f'must be "password", got {kind!r}',
                     'listeners log in with a password: type = "password"')
        username = self.string(auth, "username", prefix, required=True,
                               hint='add username = "<the database user cordon logs in as>"')
        if username is not None and any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in username):
            self.add((*prefix, "username"), "username must not contain control characters")
            return None
        return username if kind == "password" else None


def parse_upstream(text: str) -> tuple[str, int]:
    """``"host[:port]"`` (IPv6 as ``"[addr]:port"``) → (canonical host or IP literal, port; default 5432).

    Raises ValueError with a message that names what is wrong.
    """
    import ipaddress

    raw = text.strip()
    if raw != text or not raw:
        raise ValueError(f'upstream "{text}" is empty or has surrounding whitespace')
    if "://" in raw or "/" in raw:
        raise ValueError(f'upstream "{text}" must be host:port, not a URL')
    port = DEFAULT_PG_PORT
    if raw.startswith("["):
        close = raw.find("]")
        if close < 0:
            raise ValueError(f'upstream "{text}" has an unclosed "["')
        host, rest = raw[1:close], raw[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f'upstream "{text}": expected ":port" after "]"')
            port = _port(rest[1:], text)
        try:
            return str(ipaddress.IPv6Address(host)), port
        except ValueError:
            raise ValueError(f'upstream "{text}": "{host}" is not an IPv6 address') from None
    if raw.count(":") > 1:
        raise ValueError(f'upstream "{text}": write an IPv6 address in brackets, e.g. "[::1]:5432"')
    host, sep, port_text = raw.partition(":")
    if sep:
        port = _port(port_text, text)
    try:
        return str(ipaddress.IPv4Address(host)), port
    except ValueError:
        pass
    try:
        return canonical_host(host), port
    except ValueError as exc:
        raise ValueError(f'upstream "{text}": {exc}') from None


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f'upstream "{whole}": port "{text}" must be a number from 1 to 65535')
    return int(text)
