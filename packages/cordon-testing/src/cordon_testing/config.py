"""Test helpers: keyring backends that never touch a real keyring, a real Secret Service on a private bus,
and small config builders.

The backends here are never auto-selected: their ``priority`` raises, so keyring does not consider them
viable. Select one explicitly with ``keyring.set_keyring(MemoryKeyring())`` (in-process) or, for a
subprocess, ``PYTHON_KEYRING_BACKEND=cordon_testing.config.FileKeyring`` plus
``CORDON_TEST_KEYRING_FILE=/tmp/.../keyring.json``.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from cordon_config.files import atomic_write
from cordon_config.proxyproc import stop_process
from keyring.backend import KeyringBackend
from keyring.compat import properties
from keyring.errors import PasswordDeleteError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import pytest


class _TestOnly(KeyringBackend):
    @properties.classproperty
    def priority(cls) -> float:
        raise RuntimeError("test-only keyring backend; select it explicitly")

    def __str__(self) -> str:
        return f"{type(self).__module__}.{type(self).__name__} (test only)"


class MemoryKeyring(_TestOnly):
    """An in-memory keyring for unit tests."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # keyring's KeyringBackend.__init__ is unannotated
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.entries.pop((service, username), None) is None:
            raise PasswordDeleteError("no such password")


class FileKeyring(_TestOnly):
    """A JSON-file keyring (path in ``$CORDON_TEST_KEYRING_FILE``) so subprocess tests share entries.

    Viable only while ``CORDON_TEST_KEYRING_FILE`` is set (keyring checks viability when
    ``PYTHON_KEYRING_BACKEND`` names it), and then with the lowest priority, so it is never picked on its own.
    """

    @properties.classproperty
    def priority(cls) -> float:
        if not os.environ.get("CORDON_TEST_KEYRING_FILE"):
            raise RuntimeError("test-only keyring backend: set CORDON_TEST_KEYRING_FILE and select it explicitly")
        return -100

    def _path(self) -> Path:
        value = os.environ.get("CORDON_TEST_KEYRING_FILE")
        if not value:
            raise RuntimeError("CORDON_TEST_KEYRING_FILE is not set")
        return Path(value)

    def _load(self) -> dict[str, str]:
        try:
            entries: dict[str, str] = json.loads(self._path().read_text(encoding="utf-8"))
            return entries
        except FileNotFoundError:
            return {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}\0{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}\0{username}"] = password
        atomic_write(self._path(), json.dumps(data), mode=0o600)

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if data.pop(f"{service}\0{username}", None) is None:
            raise PasswordDeleteError("no such password")
        atomic_write(self._path(), json.dumps(data), mode=0o600)


@contextmanager
def memory_keyring() -> Iterator[MemoryKeyring]:
    """Use a fresh :class:`MemoryKeyring` for the duration of the block, then restore the previous backend."""
    import keyring
    import keyring.core

    previous = keyring.core._keyring_backend
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.core._keyring_backend = previous


def write_config(directory: Path, body: str, *, listen: int = 6790, name: str = "cordon.toml") -> Path:
    """Write a cordon.toml with ``listen``, a [tls] table pointing into ``directory`` and ``body`` appended."""
    path = directory / name
    path.write_text(
        f'listen = {listen}\n\n[tls]\nenabled = true\nca_cert_path = "certs/ca-cert.pem"\n'
        f'ca_key_path = "certs/ca-key.pem"\n\n{body}',
        encoding="utf-8",
    )
    return path


def approve_config(config_path: Path, *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
                   scope: str | None = None) -> None:
    """Approve everything in ``config_path`` as its user would (``cordon route approve --all --yes``), in the
    scope that ``env`` (default: ``os.environ``) selects for it: the test plays the human."""
    from cordon_config.approvals import approve
    from cordon_config.parse import load_config
    from cordon_config.scope import resolve_scope

    environ = os.environ if env is None else env
    paths = resolve_scope(scope, None if scope == "user" else config_path, env=environ, cwd=cwd or Path.cwd())
    approve(paths, load_config(paths.config_path))


def route_block(name: str, host: str, secret: str, *, auth: str = 'type = "header"\nheader_name = "x-api-key"'
                ) -> str:
    """A ``[[routes]]`` block; ``secret`` is the body of ``[routes.auth.secret]``."""
    return (f'[[routes]]\nname = "{name}"\n[routes.match]\nhost = "{host}"\n[routes.auth]\n{auth}\n'
            f"[routes.auth.secret]\n{secret}\n\n")


# Variables that would let a test reach outside its sandbox: proxies, CA overrides, agent homes, keyring and
# D-Bus selection, the proxy's test-only knobs. Every cordon test suite strips them (see `isolate_environ`).
TEST_STRIPPED_ENV: tuple[str, ...] = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "SSLKEYLOGFILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS", "NODE_USE_ENV_PROXY", "GIT_SSL_CAINFO", "CODEX_HOME", "XDG_RUNTIME_DIR",
    "PYTHON_KEYRING_BACKEND", "CORDON_TEST_KEYRING_FILE", "DBUS_SESSION_BUS_ADDRESS", "NO_COLOR",
    "CORDON_TEST_RESOLVE", "CORDON_TEST_ALLOW_LOOPBACK",
)


def isolate_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Strip :data:`TEST_STRIPPED_ENV` and point HOME and XDG_CONFIG_HOME into ``tmp_path``; returns HOME.

    ``monkeypatch`` is pytest's fixture; each package's conftest wraps this in an autouse fixture.
    """
    for name in TEST_STRIPPED_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    return home


# -- a real Secret Service ----------------------------------------------------------------------------------

SECRET_SERVICE_TOOLS = ("dbus-daemon", "gnome-keyring-daemon")
SECRET_SERVICE_TIMEOUT = 15.0


def secret_service_missing() -> list[str]:
    """The tools :class:`SecretService` needs that are not installed (empty when it can run)."""
    return [tool for tool in SECRET_SERVICE_TOOLS if shutil.which(tool) is None]




def wait_for_secret_service(timeout: float = SECRET_SERVICE_TIMEOUT) -> None:
    """Return once a process owns ``org.freedesktop.secrets`` on the session bus ($DBUS_SESSION_BUS_ADDRESS).

    gnome-keyring-daemon unlocks its login keyring and then takes the name from its main loop, so the name
    appears a moment after ``gnome-keyring-daemon --unlock`` has returned. A client that calls the Secret
    Service before then makes a bus with the system's service files start a second daemon (``--start``, no
    password), and which of the two answers is luck. NameHasOwner (asked with ``dbus-send``, which comes with
    the bus) starts nothing. Raises TimeoutError."""
    import time

    argv = ["dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner", "string:org.freedesktop.secrets"]
    deadline = time.monotonic() + timeout
    while True:
        reply = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if reply.returncode == 0 and reply.stdout.split()[-1:] == ["true"]:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing owns org.freedesktop.secrets on the session bus after {timeout} s: "
                               f"{reply.stderr.strip() or reply.stdout.strip()}")
        time.sleep(0.05)


BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""  # no <servicedir>: nothing is auto-activated, the only Secret Service is the one started below

SET_PASSWORD = """
import sys, time
import keyring
service, account, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
value = sys.stdin.read()
deadline = time.monotonic() + timeout
while True:  # gnome-keyring-daemon owns org.freedesktop.secrets a moment after it starts
    try:
        keyring.set_password(service, account, value)
        break
    except Exception:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
assert keyring.get_password(service, account) == value
print(type(keyring.get_keyring()).__module__)
"""


class SecretService:
    """A real Secret Service: gnome-keyring (login keyring unlocked with a throwaway password) on a private
    D-Bus session bus; HOME and XDG_DATA_HOME under ``root``. Never touches the user's keyring or bus."""

    def __init__(self, root: Path) -> None:
        self.runtime = Path(tempfile.mkdtemp(prefix="cordon-kr-"))  # short: unix socket paths are limited
        self.procs: list[subprocess.Popen[bytes]] = []
        home = root / "home"
        home.mkdir(parents=True)
        self.base_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
            "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(root / "data"),
            "XDG_RUNTIME_DIR": str(self.runtime),
        }
        try:
            bus_config = self.runtime / "bus.conf"
            bus_config.write_text(BUS_CONFIG.format(socket=self.runtime / "bus"), encoding="utf-8")
            bus = self._spawn(["dbus-daemon", f"--config-file={bus_config}", "--nofork", "--print-address=1"],
                              stdout=subprocess.PIPE)
            assert bus.stdout is not None
            ready, _, _ = select.select([bus.stdout], [], [], SECRET_SERVICE_TIMEOUT)
            self.address = bus.stdout.readline().decode().strip() if ready else ""
            assert self.address.startswith("unix:"), "dbus-daemon printed no address"
            keyring = self._spawn(["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
                                  stdin=subprocess.PIPE)
            assert keyring.stdin is not None
            keyring.stdin.write(b"throwaway-password")
            keyring.stdin.close()
        except BaseException:
            self.close()
            raise

    def _spawn(self, argv: list[str], *, stdin: int | None = None, stdout: int = subprocess.DEVNULL
               ) -> subprocess.Popen[bytes]:
        env = dict(self.base_env, DBUS_SESSION_BUS_ADDRESS=getattr(self, "address", ""))
        proc = subprocess.Popen(argv, env=env, stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def client_env(self) -> dict[str, str]:
        """What a process needs to use this Secret Service through ``keyring``."""
        return {"DBUS_SESSION_BUS_ADDRESS": self.address,
                "PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring"}

    def set(self, value: str, service: str, account: str) -> None:
        """Store ``value`` (sent on stdin, never on a command line) under ``service``/``account``."""
        result = subprocess.run(
            [sys.executable, "-c", SET_PASSWORD, service, account, str(SECRET_SERVICE_TIMEOUT)], input=value,
            capture_output=True, text=True, env=dict(self.base_env, **self.client_env()), timeout=SECRET_SERVICE_TIMEOUT + 20,
        )
        assert result.returncode == 0, f"storing into gnome-keyring failed: {result.stderr[-2000:]}"
        assert result.stdout.strip() == "keyring.backends.SecretService", result.stdout

    def close(self) -> None:
        for proc in reversed(self.procs):  # gnome-keyring first, then its bus
            stop_process(proc, SECRET_SERVICE_TIMEOUT)
            if proc.stdout is not None:
                proc.stdout.close()
        shutil.rmtree(self.runtime, ignore_errors=True)
