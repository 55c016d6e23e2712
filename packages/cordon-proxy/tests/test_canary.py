"""The secret canary (SECURITY.md A.8): unique random secrets driven through every path of the real proxy.

One proxy runs at ``--log-level trace`` with ``PYTHONASYNCIODEBUG=1``, five routes whose secrets come from
every source: env, file and command (header, ``X-Api-Key`` and basic auth), keyring (a real Secret Service:
gnome-keyring on a private D-Bus session bus, throwaway HOME; ``X-Keyring-Key``) and 1password (an ``op``
stand-in named by ``[secrets] op_path``; ``X-Op-Key``), and proxy tokens on. The test drives success, every
error status cordon answers (400, 403, 407, 421, 431, 502 connect, 502 TLS, 503 for a failing command or
``op`` and for an invalid file or keyring value, 504), relayed upstream errors, and a crash injected inside a
request handler (test-only fault injection through ``sitecustomize``). Then the raw canaries, their Base64,
the Base64 of ``user:canary`` and their percent-encodings must appear in no log line, no client response and
no file outside the secret stores, while the upstream did receive them (so the test is not vacuous).
Without gnome-keyring and dbus-daemon the keyring route is left out and its control test is skipped.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from cordon_testing.config import SecretService
from cordon_testing.proxy import (
    TEST_HOSTS,
    TEST_NAMES,
    ProxyProcess,
    RecordingUpstream,
    free_port,
    health_ok,
    read_head,
    status,
    tokens_for,
)

TIMEOUT = 10.0
BASIC_USER = "svc"
KEYRING_HOST, OP_HOST = "keyring.test", "op.test"
KEYRING_SERVICE, KEYRING_ACCOUNT = "cordon-canary", "canary"
OP_REFERENCE = "op://Private/Canary/credential"
KEYRING_TOOLS = ("dbus-daemon", "gnome-keyring-daemon")
KEYRING_MISSING = [tool for tool in KEYRING_TOOLS if shutil.which(tool) is None]

FAULT_INJECTION = '''
"""Test-only fault injection: a request to /__crash__ raises inside the session after the secret is fetched."""
import cordon_proxy.core.session as _session

_original = _session.Session._on_secret


def _on_secret(self, event, out):
    exchange = self._exchange
    if exchange is not None and exchange.path.startswith("/__crash__"):
        header = _session.injected_header(exchange.route, event.secret)  # the secret is a live local here
        raise RuntimeError("injected fault while handling a request")
    return _original(self, event, out)


_session.Session._on_secret = _on_secret
'''


def _canary() -> str:
    # '/', '+' and '=' make the percent-encodings differ from the raw value.
    return f"cnry/{secrets.token_hex(12)}+{secrets.token_hex(4)}="


@dataclass
class Canaries:
    env: str = field(default_factory=_canary)
    file: str = field(default_factory=_canary)
    command: str = field(default_factory=_canary)
    keyring: str = field(default_factory=_canary)
    onepassword: str = field(default_factory=_canary)

    def forms(self) -> dict[str, str]:
        out: dict[str, str] = {}
        sources = (("env", self.env), ("file", self.file), ("command", self.command), ("keyring", self.keyring),
                   ("1password", self.onepassword))
        for source, value in sources:
            out[f"{source}"] = value
            out[f"{source}-base64"] = base64.b64encode(value.encode()).decode()
            out[f"{source}-basic"] = base64.b64encode(f"{BASIC_USER}:{value}".encode()).decode()
            out[f"{source}-percent"] = quote(value, safe="")
            out[f"{source}-plus"] = quote_plus(value)
        return out


@dataclass
class Run:
    directory: Path
    proxy: ProxyProcess
    upstream: RecordingUpstream
    bad_tls: RecordingUpstream
    canaries: Canaries
    stores: list[Path]
    fail_flag: Path
    token_header: str
    keyring: SecretService | None  # None: no gnome-keyring here, the keyring route is left out
    op_fail_flag: Path
    responses: list[bytes] = field(default_factory=list)
    driven: dict[str, Any] = field(default_factory=dict)  # what each driven path got back (see _drive)


def _write_config(
    directory: Path,
    port: int,
    upstream_ca: Path,
    secret_file: Path,
    command_store: Path,
    fail_flag: Path,
    op_tool: Path,
    *,
    keyring: bool,
) -> Path:
    certs = directory / "state" / "certs"
    script = f'cat "{command_store}"; if [ -e "{fail_flag}" ]; then echo "helper failed" >&2; exit 3; fi'
    text = f"""
listen = {port}
secret_ttl = 0

[limits]
response_header_timeout = 1.0
connect_timeout = 3.0

[tls]
enabled = true
ca_cert_path = "{certs / "ca-cert.pem"}"
ca_key_path = "{certs / "ca-key.pem"}"
upstream_ca_file = "{upstream_ca}"

[secrets]
op_path = "{op_tool}"

[[routes]]
name = "envroute"
[routes.match]
host = "api.test"
[routes.auth]
type = "header"
header_name = "Authorization"
scheme = "Bearer"
[routes.auth.secret]
source = "env"
var = "CORDON_CANARY"

[[routes]]
name = "fileroute"
[routes.match]
host = "other.test"
[routes.auth]
type = "header"
header_name = "X-Api-Key"
[routes.auth.secret]
source = "file"
path = "{secret_file}"

[[routes]]
name = "commandroute"
[routes.match]
host = "third.test"
[routes.auth]
type = "basic"
username = "{BASIC_USER}"
[routes.auth.secret]
source = "command"
argv = ["/bin/sh", "-c", '{script}']

[[routes]]
name = "oproute"
[routes.match]
host = "{OP_HOST}"
[routes.auth]
type = "header"
header_name = "X-Op-Key"
[routes.auth.secret]
source = "1password"
vault = "Private"
item = "Canary"
field = "credential"
"""
    if keyring:
        text += f"""
[[routes]]
name = "keyringroute"
[routes.match]
host = "{KEYRING_HOST}"
[routes.auth]
type = "header"
header_name = "X-Keyring-Key"
[routes.auth.secret]
source = "keyring"
service = "{KEYRING_SERVICE}"
account = "{KEYRING_ACCOUNT}"
"""
    path = directory / "cordon.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _private(path: Path, text: str) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def _op_standin(directory: Path, store: Path, fail_flag: Path) -> Path:
    """An ``op`` stand-in: ``op read <OP_REFERENCE> --no-newline`` prints the store; with ``fail_flag`` present
    it prints the secret *and* fails as a signed-out ``op`` does (its stdout must not leak anywhere)."""
    # short: error lines are cut at 300 characters, which must not hide a leak appended to one
    signed_out = "[ERROR] 2026/11/24 You are not currently signed in. Please run 'op signin --help'"
    tool = directory / "op-standin"
    tool.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" != read ] || [ "$2" != "{OP_REFERENCE}" ]; then\n'
        "  echo \"[ERROR] could not read secret '$2': could not get item\" >&2; exit 1\nfi\n"
        f'cat "{store}"\n'
        f'if [ -e "{fail_flag}" ]; then echo "{signed_out}" >&2; exit 1; fi\n',
        encoding="utf-8",
    )
    tool.chmod(0o700)
    return tool


def _slow(h, seen) -> None:  # type: ignore[no-untyped-def]
    time.sleep(1.6)  # longer than response_header_timeout
    status(200, b"late")(h, seen)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    directory = tmp_path_factory.mktemp("canary")
    canaries = Canaries()
    secret_file = _private(directory / "file-secret", canaries.file + "\n")
    command_store = _private(directory / "command-secret", canaries.command)
    fail_flag = directory / "command-fails"
    op_store = _private(directory / "op-secret", canaries.onepassword)
    op_fail_flag = directory / "op-fails"
    op_tool = _op_standin(directory, op_store, op_fail_flag)
    inject_dir = directory / "inject"
    inject_dir.mkdir()
    (inject_dir / "sitecustomize.py").write_text(FAULT_INJECTION, encoding="utf-8")
    with contextlib.ExitStack() as stack:
        keyring = None
        if not KEYRING_MISSING:
            keyring = SecretService(directory / "keyring")
            stack.callback(keyring.close)
            keyring.set(canaries.keyring, KEYRING_SERVICE, KEYRING_ACCOUNT)
        upstream = stack.enter_context(RecordingUpstream(hosts=(*TEST_HOSTS, KEYRING_HOST, OP_HOST)))
        bad_tls = stack.enter_context(RecordingUpstream())  # a CA cordon does not trust
        upstream.handlers["/slow"] = _slow
        upstream.handlers["/status/401"] = status(401, b'{"error": "unauthorized"}')
        upstream.handlers["/status/500"] = status(500, b"upstream broke")
        upstream_ca = upstream.write_ca(directory / "upstream-ca.pem")
        port = free_port()
        config = _write_config(directory, port, upstream_ca, secret_file, command_store, fail_flag, op_tool,
                               keyring=keyring is not None)
        tokens_path, namespace = tokens_for(config)
        from cordon_config.tokens import TokenStore

        token = TokenStore.open(tokens_path).ensure("canary-client")
        token_header = "Basic " + base64.b64encode(f"{namespace}:{token}".encode()).decode()
        env = dict(
            os.environ,
            CORDON_CANARY=canaries.env,
            PYTHONASYNCIODEBUG="1",
            PYTHONPATH=os.pathsep.join(filter(None, [str(inject_dir), os.environ.get("PYTHONPATH")])),
        )
        for name in ("PYTHON_KEYRING_BACKEND", "CORDON_TEST_KEYRING_FILE", "DBUS_SESSION_BUS_ADDRESS"):
            env.pop(name, None)
        if keyring is not None:
            env.update(keyring.client_env())
        resolve = {h: "127.0.0.1" for h in (*TEST_NAMES, KEYRING_HOST, OP_HOST)}
        proxy = ProxyProcess(config, port, env=env, resolve=resolve, args=("--log-level", "trace"))
        with proxy:
            yield Run(
                directory,
                proxy,
                upstream,
                bad_tls,
                canaries,
                [secret_file, command_store, op_store],
                fail_flag,
                token_header,
                keyring,
                op_fail_flag,
            )


# -- client helpers -----------------------------------------------------------------------------------------


def _read_until_close(sock: socket.socket) -> bytes:
    sock.settimeout(TIMEOUT)
    chunks = []
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    except (ConnectionResetError, ssl.SSLError, TimeoutError):
        pass
    return b"".join(chunks)


def _plain(r: Run, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", r.proxy.port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        response = _read_until_close(sock)
    r.responses.append(response)
    return response


def _tunnel(
    r: Run, host: str, port: int, request: bytes, *, token: bool = True, cafile: Path | None = None
) -> bytes:
    sock = socket.create_connection(("127.0.0.1", r.proxy.port), timeout=TIMEOUT)
    with sock:
        auth = f"Proxy-Authorization: {r.token_header}\r\n" if token else ""
        sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}\r\n".encode())
        head = read_head(sock)
        if not head.startswith(b"HTTP/1.1 200 "):
            head += _read_until_close(sock)
            r.responses.append(head)
            return head
        ctx = ssl.create_default_context(
            cafile=str(cafile or r.proxy.config_path.parent / "state/certs/ca-cert.pem")
        )
        with ctx.wrap_socket(sock, server_hostname=host) as tls:
            tls.sendall(request)
            response = _read_until_close(tls)
    r.responses.append(response)
    return response


def _get(host: str, path: str, *, extra: str = "", host_header: str | None = None) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host_header or host}\r\nAuthorization: Bearer sk-dummy\r\n"
        f"X-Api-Key: dummy\r\n{extra}Connection: close\r\n\r\n"
    ).encode()


def _status(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12])


# -- the drive ----------------------------------------------------------------------------------------------


def _drive(r: Run) -> dict[str, Any]:
    """Every path the proxy has, once: what each client got back, by label (the tests below read these)."""
    up = r.upstream.port
    dead = free_port()
    got: dict[str, Any] = {}
    vaults = [OP_HOST, *([KEYRING_HOST] if r.keyring else [])]  # routes whose secret lives in a vault
    for host in ("api.test", "other.test", "third.test", *vaults):
        got[f"ok {host}"] = _tunnel(r, host, up, _get(host, "/ok?key=sk-dummy"))
    got["401"] = _tunnel(r, "api.test", up, _get("api.test", "/status/401"))
    got["500"] = _tunnel(r, "api.test", up, _get("api.test", "/status/500"))
    got["misdirected"] = _tunnel(r, "api.test", up, _get("api.test", "/x", host_header="evil.test"))
    smuggle = b"POST /x HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    got["smuggle"] = _tunnel(r, "api.test", up, smuggle)
    huge = _get("api.test", "/x", extra="X-Big: " + "b" * 70000 + "\r\n")
    got["huge"] = _tunnel(r, "api.test", up, huge)
    got["slow"] = _tunnel(r, "api.test", up, _get("api.test", "/slow"))
    got["dead"] = _tunnel(r, "api.test", dead, _get("api.test", "/x"))
    got["bad tls"] = _tunnel(r, "api.test", r.bad_tls.port, _get("api.test", "/x"))
    got["no token"] = _tunnel(r, "api.test", up, _get("api.test", "/x"), token=False)
    plain = f"GET http://api.test:{up}/x HTTP/1.1\r\nHost: api.test:{up}\r\nProxy-Authorization: {r.token_header}\r\n\r\n"
    got["plain http"] = _plain(r, plain.encode())
    blocked = f"CONNECT 127.1:{dead} HTTP/1.1\r\nHost: 127.1:{dead}\r\nProxy-Authorization: {r.token_header}\r\n\r\n"
    got["blocked"] = _plain(r, blocked.encode())
    # a crash inside the request handler (fault injection): whatever the client gets, the proxy keeps serving
    for host in ("api.test", *vaults):
        _tunnel(r, host, up, _get(host, "/__crash__"))
        got[f"alive after a crash ({host})"] = health_ok(r.proxy.port, timeout=TIMEOUT)
    # the command helper fails (its stdout holds the secret, its stderr is reported)
    r.fail_flag.touch()
    try:
        got["command fails"] = _tunnel(r, "third.test", up, _get("third.test", "/x"))
    finally:
        r.fail_flag.unlink()
    # `op` signed out: it prints the secret on stdout and fails (its stderr is reported)
    r.op_fail_flag.touch()
    try:
        got["op fails"] = _tunnel(r, OP_HOST, up, _get(OP_HOST, "/x"))
    finally:
        r.op_fail_flag.unlink()
    # the keyring entry now holds a value that is not a valid header value
    if r.keyring is not None:
        r.keyring.set(r.canaries.keyring + "\r\nX-Evil: 1", KEYRING_SERVICE, KEYRING_ACCOUNT)
        got["keyring bad value"] = _tunnel(r, KEYRING_HOST, up, _get(KEYRING_HOST, "/x"))
    # the file now holds a value that is not a valid header value
    r.stores[0].write_text(r.canaries.file + "\r\nX-Evil: 1\n", encoding="utf-8")
    got["file bad value"] = _tunnel(r, "other.test", up, _get("other.test", "/x"))
    return got


@pytest.fixture(scope="module")
def driven(run: Run) -> Run:
    """The proxy after every path was driven once (``run.driven``), whichever test of this module runs first."""
    if not run.driven:
        run.driven = _drive(run)
    return run


def test_drive_every_path(driven: Run) -> None:
    got = driven.driven
    vaults = [OP_HOST, *([KEYRING_HOST] if driven.keyring else [])]
    for host in ("api.test", "other.test", "third.test", *vaults):
        assert _status(got[f"ok {host}"]) == 200, host
    assert _status(got["401"]) == 401
    assert _status(got["500"]) == 500
    assert _status(got["misdirected"]) == 421
    assert _status(got["smuggle"]) == 400
    assert _status(got["huge"]) == 431
    assert _status(got["slow"]) == 504
    assert _status(got["dead"]) == 502
    assert _status(got["bad tls"]) == 502
    assert _status(got["no token"]) == 407
    assert _status(got["plain http"]) == 403
    assert _status(got["blocked"]) == 403
    for host in ("api.test", *vaults):
        assert got[f"alive after a crash ({host})"], f"the proxy died after a handler crash ({host})"
    assert _status(got["command fails"]) == 503
    answer = got["op fails"]
    assert _status(answer) == 503 and b"not signed in" in answer, answer
    if driven.keyring is not None:
        answer = got["keyring bad value"]
        assert _status(answer) == 503 and b"line break" in answer, answer
    assert _status(got["file bad value"]) == 503
    assert b"X-Evil" not in driven.upstream.all_bytes()


@pytest.mark.usefixtures("driven")
def test_upstream_received_the_secrets(run: Run) -> None:
    """Control: the canaries did flow (as the injected credentials), so their absence elsewhere means something."""
    seen = run.upstream.all_bytes()
    c = run.canaries
    assert f"Bearer {c.env}".encode() in seen
    assert f"X-Api-Key: {c.file}".encode() in seen
    assert base64.b64encode(f"{BASIC_USER}:{c.command}".encode()) in seen
    assert f"X-Op-Key: {c.onepassword}".encode() in seen


@pytest.mark.skipif(bool(KEYRING_MISSING), reason=f"the keyring source needs a real Secret Service: "
                    f"{' and '.join(KEYRING_MISSING)} missing (apt-get install gnome-keyring dbus)")
@pytest.mark.usefixtures("driven")
def test_upstream_received_the_keyring_secret(run: Run) -> None:
    """Control for the keyring route: the value stored in gnome-keyring reached the upstream via the proxy."""
    assert run.keyring is not None
    assert f"X-Keyring-Key: {run.canaries.keyring}".encode() in run.upstream.all_bytes()


@pytest.mark.usefixtures("driven")
def test_canary_absent_from_logs(run: Run) -> None:
    run.proxy.stop()  # flush and close everything the proxy writes
    logs = run.proxy.logs()
    assert "RuntimeError" in logs, "the injected crash did not happen (or left no trace in the log)"
    for name, form in run.canaries.forms().items():
        assert form not in logs, f"{name} leaked into the proxy's stdout/stderr"


@pytest.mark.usefixtures("driven")
def test_canary_absent_from_client_responses(run: Run) -> None:
    assert run.responses
    everything = b"\n".join(run.responses)
    for name, form in run.canaries.forms().items():
        assert form.encode() not in everything, f"{name} leaked to a client"


@pytest.mark.usefixtures("driven")
def test_canary_absent_from_files(run: Run) -> None:
    run.proxy.stop()
    stores = {p.resolve() for p in run.stores}
    checked = 0
    for path in run.directory.rglob("*"):
        if not path.is_file() or path.resolve() in stores:
            continue
        data = path.read_bytes()
        checked += 1
        for name, form in run.canaries.forms().items():
            assert form.encode() not in data, f"{name} found in {path.relative_to(run.directory)}"
    assert checked >= 5  # config, CA files, tokens.toml, proxy.log, ...
