"""Route and listener secrets: a masked value type, fetching from every source, a short-lived cache and a
start-up check.

Sources: keyring, 1password (``op read``), env, file, command. ``keyring`` is imported lazily,
only when a keyring secret is used. No error message, repr or log line ever contains a secret value.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from cordon_config.model import Config, Listener, Route

DEFAULT_TIMEOUT = 10.0
_STDERR_LIMIT = 300
MAX_PASSWORD_BYTES = 1024  # PostgreSQL's own limit on a password packet is about this size

SecretOwner = Route | Listener
"""Anything with a ``name`` and a ``secret`` reference: a route (HTTP header) or a listener (database password)."""


class Secret:
    """A secret value whose ``repr``/``str``/``format`` are masked; ``.reveal()`` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        if not isinstance(value, str):
            raise TypeError("Secret holds a str")
        self._value = value

    def reveal(self) -> str:
        """The real value: use it only to build the outgoing header."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        import hmac

        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, len(self._value)))

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret values cannot be pickled")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("Secret values cannot be pickled")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: Any) -> Secret:
        return self


class SecretUnavailable(Exception):
    """A route's or listener's secret could not be fetched; ``reason`` says why and never contains the value.

    ``route_name`` is the item's name (routes and listeners share one name space); ``kind`` says which.
    """

    def __init__(self, route_name: str, reason: str, hint: str | None = None, kind: str = "route"):
        self.route_name = route_name
        self.reason = reason
        self.hint = hint
        self.kind = kind
        super().__init__(route_name, reason)

    def __str__(self) -> str:
        return f"secret for {self.kind} {self.route_name!r} is unavailable: {self.reason}"


_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]+")


def is_header_value(value: str) -> bool:
    """Whether ``value`` can be sent as an HTTP header value (RFC 9110 field-value, ASCII only): non-empty, HTAB,
    space and visible ASCII only, no leading or trailing whitespace. The one rule: the proxy checks every
    injected secret with it, :func:`header_value_problem` says why a value breaks it."""
    return _FIELD_VALUE.fullmatch(value) is not None and value[0] not in " \t" and value[-1] not in " \t"


def header_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be an HTTP header value (:func:`is_header_value`), or None. Never echoes it."""
    if is_header_value(value):
        return None
    if not value:
        return "the value is empty"
    for ch in value:
        code = ord(ch)
        if ch in "\r\n":
            return "the value contains a line break (CR/LF)"
        if code == 0:
            return "the value contains a NUL character"
        if (code < 0x20 and ch != "\t") or code == 0x7F:
            return "the value contains a control character"
        if code > 0x7E:
            return "the value contains non-ASCII characters"
    return "the value has leading or trailing whitespace"


def password_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be a database password sent in the PostgreSQL protocol, or None. Never echoes it."""
    if not value:
        return "the value is empty"
    if "\0" in value:
        return "the value contains a NUL character"
    if len(value.encode("utf-8")) > MAX_PASSWORD_BYTES:
        return f"the value is longer than {MAX_PASSWORD_BYTES} bytes"
    return None


def _strip_newline(value: str) -> str:
    if value.endswith("\r\n"):
        return value[:-2]
    if value.endswith("\n"):
        return value[:-1]
    return value


def _one_line(text: str, limit: int = _STDERR_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _decode_go_keyring(value: str) -> str:
    for prefix, decode in (("go-keyring-base64:", _b64), ("go-keyring-encoded:", bytes.fromhex)):
        if value.startswith(prefix):
            try:
                raw = decode(value[len(prefix) :])
                return raw.decode("utf-8")
            except (ValueError, binascii.Error, UnicodeDecodeError):
                raise ValueError(f"the keyring entry has the {prefix!r} prefix but does not decode") from None
    return value


# -- sources ------------------------------------------------------------------------------------------------


def _keyring(route: SecretOwner, config: Config, timeout: float, env: Mapping[str, str]) -> str:
    import keyring
    from keyring.errors import KeyringError, KeyringLocked, NoKeyringError

    service = route.secret.fields.get("service", "cordon")
    account = route.secret.fields["account"]
    try:
        value = keyring.get_password(service, account)
    except NoKeyringError:
        raise SecretUnavailable(
            route.name, "no keyring backend is available (no Secret Service / Keychain here)",
            "run `cordon doctor`; on a headless machine use source = \"env\", \"file\" or \"command\"",
        ) from None
    except KeyringLocked:
        raise SecretUnavailable(route.name, f"the keyring is locked ({_backend_name()})",
                                "unlock your keyring and try again") from None
    except KeyringError as exc:
        raise SecretUnavailable(route.name, f"keyring error ({_backend_name()}): {_one_line(str(exc))}") from None
    except Exception as exc:  # backends raise their own types too (D-Bus errors, ...)
        raise SecretUnavailable(route.name, f"keyring backend {_backend_name()} failed: {type(exc).__name__}: "
                                f"{_one_line(str(exc))}") from None
    if value is None:
        hint = f"run `cordon secret set {route.name}`"
        if route.secret.fields.get("decode") == "go-keyring":
            hint = f"log in with the Go tool that owns this entry (e.g. `gh auth login`), or {hint}"
        raise SecretUnavailable(
            route.name, f"no keyring entry for service {service!r} account {account!r} (in {_backend_name()})", hint
        )
    if route.secret.fields.get("decode") == "go-keyring":
        try:
            value = _decode_go_keyring(value)
        except ValueError as exc:
            raise SecretUnavailable(route.name, str(exc)) from None
    return value


def _backend_name() -> str:
    try:
        import keyring

        backend = keyring.get_keyring()
        module = type(backend).__module__.removeprefix("keyring.backends.")
        return f"{module}.{type(backend).__name__}"
    except Exception:  # pragma: no cover - diagnostics only
        return "unknown backend"


def _env(route: SecretOwner, config: Config, timeout: float, env: Mapping[str, str]) -> str:
    var = route.secret.fields["var"]
    value = env.get(var)
    if value is None:
        raise SecretUnavailable(route.name, f"environment variable {var} is not set",
                                f"set {var} in the environment of `cordon start`")
    return _strip_newline(value)  # like the other sources: `VAR=$(cat key.txt)` or $'sk\n' alike


def _file(route: SecretOwner, config: Config, timeout: float, env: Mapping[str, str]) -> str:
    path = Path(route.secret.fields["path"])
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise SecretUnavailable(route.name, f"file {path} does not exist") from None
    except OSError as exc:
        raise SecretUnavailable(route.name, f"cannot open {path}: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise SecretUnavailable(route.name, f"{path} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise SecretUnavailable(route.name, f"{path} is accessible by group or others (mode {mode:04o})",
                                    f"run chmod 600 {path}")
        raw = handle.read(1024 * 1024 + 1)
    if len(raw) > 1024 * 1024:
        raise SecretUnavailable(route.name, f"{path} is larger than 1 MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretUnavailable(route.name, f"{path} is not UTF-8 text") from None
    return _strip_newline(text)


def _run(route: SecretOwner, argv: list[str], timeout: float, what: str, cwd: Path | None,
         env: Mapping[str, str]) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, shell=False, cwd=cwd,
            env=dict(env), check=False,
        )
    except subprocess.TimeoutExpired:
        raise SecretUnavailable(route.name, f"{what} timed out after {timeout:g} s") from None
    except FileNotFoundError:
        raise SecretUnavailable(route.name, f"{what}: {argv[0]!r} not found") from None
    except PermissionError:
        raise SecretUnavailable(route.name, f"{what}: {argv[0]!r} is not executable") from None
    except OSError as exc:
        raise SecretUnavailable(route.name, f"{what}: cannot run {argv[0]!r}: {exc.strerror}") from None


def _stderr_of(result: subprocess.CompletedProcess[bytes]) -> str:
    stderr = result.stderr.decode("utf-8", "replace")
    stdout = result.stdout.decode("utf-8", "replace").strip()
    if stdout:  # a failing tool that echoes its output on stderr must not leak it
        for line in stdout.splitlines():
            if line.strip():
                stderr = stderr.replace(line.strip(), "***")
    return _one_line(stderr)


def _decode_stdout(route: SecretOwner, result: subprocess.CompletedProcess[bytes], what: str) -> str:
    try:
        return _strip_newline(result.stdout.decode("utf-8"))
    except UnicodeDecodeError:
        raise SecretUnavailable(route.name, f"{what} printed something that is not UTF-8") from None


def _command(route: SecretOwner, config: Config, timeout: float, env: Mapping[str, str]) -> str:
    argv = list(route.secret.fields["argv"])
    result = _run(route, argv, timeout, f"command {argv[0]!r}", config.path.parent, env)
    if result.returncode != 0:
        code = (f"was killed by signal {-result.returncode}" if result.returncode < 0
                else f"exited with code {result.returncode}")
        stderr = _stderr_of(result)
        raise SecretUnavailable(route.name, f"command {argv[0]!r} {code}" + (f": {stderr}" if stderr else ""))
    return _decode_stdout(route, result, f"command {argv[0]!r}")


_OP_NOT_SIGNED_IN = ("not currently signed in", "not signed in", "session expired", "signin", "sign in",
                     "locked", "authorization prompt dismissed", "couldn't connect to the 1password",
                     "could not connect", "unauthorized", "no accounts configured")
_OP_NOT_FOUND = ("isn't an item", "isn't a vault", "isn't a field", "not found", "no item", "could not find",
                 "doesn't exist", "does not exist", "no such")


def op_reference(fields: Mapping[str, Any]) -> str:
    """``op://vault/item/field`` for a 1password secret's fields."""
    return f"op://{fields['vault']}/{fields['item']}/{fields['field']}"


def find_op(config: Config, env: Mapping[str, str]) -> str | None:
    """The ``op`` executable: ``[secrets] op_path`` when set, else ``op`` on PATH."""
    if config.op_path:
        if "/" in config.op_path:
            return config.op_path if os.access(config.op_path, os.X_OK) else None
        return shutil.which(config.op_path, path=env.get("PATH", os.defpath))
    return shutil.which("op", path=env.get("PATH", os.defpath))


def _onepassword(route: SecretOwner, config: Config, timeout: float, env: Mapping[str, str]) -> str:
    fields = route.secret.fields
    op = find_op(config, env)
    if op is None:
        where = f"[secrets] op_path = {config.op_path!r}" if config.op_path else "PATH"
        raise SecretUnavailable(route.name, f"the 1Password CLI `op` is not installed (not found via {where})",
                                "install 1Password CLI or set op_path under [secrets]")
    reference = op_reference(fields)
    argv = [op, "read", reference, "--no-newline"]
    if fields.get("account"):
        argv += ["--account", str(fields["account"])]
    result = _run(route, argv, timeout, "1Password `op read`", None, env)
    if result.returncode != 0:
        stderr = _stderr_of(result)
        lowered = stderr.lower()
        account = f" (account {fields['account']})" if fields.get("account") else ""
        if any(marker in lowered for marker in _OP_NOT_FOUND):
            raise SecretUnavailable(route.name, f"1Password item not found: {reference}{account}: {stderr}",
                                    "check vault, item and field with `op item get`")
        if any(marker in lowered for marker in _OP_NOT_SIGNED_IN):
            raise SecretUnavailable(route.name, f"1Password is locked or not signed in{account}: {stderr}",
                                    "unlock 1Password or run `op signin`")
        raise SecretUnavailable(route.name, f"`op read` exited with code {result.returncode}: {stderr}")
    return _decode_stdout(route, result, "1Password `op read`")


_SOURCES: dict[str, Callable[[SecretOwner, Config, float, Mapping[str, str]], str]] = {
    "keyring": _keyring,
    "1password": _onepassword,
    "env": _env,
    "file": _file,
    "command": _command,
}


def kind_of(item: SecretOwner) -> str:
    """``"listener"`` or ``"route"``: how messages name ``item``."""
    return "listener" if isinstance(item, Listener) else "route"


def value_problem(item: SecretOwner, value: str) -> str | None:
    """Why ``value`` cannot be ``item``'s secret (a header value for a route, a password for a listener)."""
    return password_value_problem(value) if isinstance(item, Listener) else header_value_problem(value)


def fetch_secret(route: SecretOwner, *, config: Config, timeout: float = DEFAULT_TIMEOUT,
                 env: Mapping[str, str] | None = None) -> Secret:
    """Fetch a route's or listener's secret from its source and validate it (:func:`value_problem`).

    Raises :class:`SecretUnavailable` (never containing the value). ``env`` defaults to ``os.environ``
    (used by the env source and as the environment of ``op``/command subprocesses).
    """
    kind = kind_of(route)
    source = _SOURCES.get(route.secret.source)
    if source is None:
        raise SecretUnavailable(route.name, f"unknown secret source {route.secret.source!r}", kind=kind)
    try:
        value = source(route, config, timeout, os.environ if env is None else env)
    except SecretUnavailable as exc:
        exc.kind = kind
        raise
    problem = value_problem(route, value)
    if problem is not None:
        usable = "as a database password" if kind == "listener" else "in a header"
        raise SecretUnavailable(route.name, f"{route.secret.source} secret is not usable {usable}: {problem}",
                                kind=kind)
    return Secret(value)


def check_secrets(config: Config, *, fetch: Callable[..., Secret] | None = None) -> list[tuple[str, str]]:
    """Fetch every route's and listener's secret once; return ``(name, reason)`` for each that failed."""
    fetcher = fetch or fetch_secret
    failures: list[tuple[str, str]] = []
    owners: tuple[Route | Listener, ...] = (*config.routes, *config.listeners)
    for item in owners:
        try:
            fetcher(item, config=config)
        except SecretUnavailable as exc:
            reason = exc.reason + (f" (hint: {exc.hint})" if exc.hint else "")
            failures.append((item.name, reason))
    return failures


#: Secret sources read without blocking (an environment variable, a small local file).
NONBLOCKING_SOURCES = frozenset({"env", "file"})


class SecretCache:
    """Keep fetched secrets for ``ttl`` seconds (0 = fetch on every call). Failures are never cached."""

    def __init__(self, ttl: float, fetch: Callable[..., Secret] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl = float(ttl)
        self._fetch = fetch or fetch_secret
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Any, Secret]] = {}

    def get(self, route: SecretOwner, config: Config) -> Secret:
        """The route's secret, from the cache when fresh; raises :class:`SecretUnavailable`."""
        if self.ttl <= 0:
            return self._fetch(route, config=config)
        now = self._clock()
        with self._lock:
            entry = self._entries.get(route.name)
        if entry is not None and entry[1] == route.secret and now < entry[0]:
            return entry[2]
        secret = self._fetch(route, config=config)
        with self._lock:
            self._entries[route.name] = (now + self.ttl, route.secret, secret)
        return secret

    def get_nowait(self, route: SecretOwner, config: Config) -> Secret | None:
        """The item's secret when it can be had without blocking: a fresh cache hit, or a source that never
        blocks (:data:`NONBLOCKING_SOURCES`, fetched now). None when fetching would block (keyring, 1Password,
        command): then call :meth:`get` off the event loop. Raises :class:`SecretUnavailable` like :meth:`get`.
        """
        if route.secret.source in NONBLOCKING_SOURCES:
            return self.get(route, config)
        return self.peek(route)

    def peek(self, route: SecretOwner) -> Secret | None:
        """The route's cached secret when fresh, else None; never fetches (so it never blocks)."""
        if self.ttl <= 0:
            return None
        with self._lock:
            entry = self._entries.get(route.name)
        if entry is not None and entry[1] == route.secret and self._clock() < entry[0]:
            return entry[2]
        return None

    def invalidate(self, route_name: str) -> None:
        """Drop an item's cached value (after an upstream 401 or a failed database login, so a rotated secret
        is used at once)."""
        with self._lock:
            self._entries.pop(route_name, None)

    def clear(self) -> None:
        """Drop every cached value."""
        with self._lock:
            self._entries.clear()
