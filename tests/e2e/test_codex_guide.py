"""codex-guide.md, followed literally in a temporary project with cordon's real commands.

Every `cordon ...` step runs as ``python -m cordon ...`` in a subprocess. Two stand-ins, both loopback-only:

* ``codex`` is a script that does what the guide relies on Codex doing: ``codex login --with-api-key`` stores
  the (dummy) key; at startup it loads ``$CODEX_HOME/.env`` the way Codex does (dotenv, ``CODEX_*`` names
  dropped) and calls the OpenAI API at ``$OPENAI_BASE_URL`` through ``HTTPS_PROXY``, trusting ``SSL_CERT_FILE``;
  the shell command it launches gets ``[shell_environment_policy.set]`` from ``$CODEX_HOME/config.toml``.
* ``api.openai.com`` is replaced by ``api.openai.test``: a local TLS upstream (cordon_testing.proxy), which the
  proxy reaches through the hosts file of its own mount namespace (cordon_testing.namespaces) and trusts through
  ``[tls] upstream_ca_file``. That host name is the one deviation from the guide.

The secret lives in a keyring, as in the guide, but a file-backed test keyring (cordon_testing.config) so
the real user's keyring is never touched. Where that test keyring cannot be selected, the route uses the
``env`` source instead (``--source env --var ...``, no ``cordon secret set``): the second deviation.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

testing = pytest.importorskip("cordon_testing.proxy")
from cordon_testing.namespaces import hosts_argv  # noqa: E402 - after the importorskip above

SECRET = "sk-real-openai-key-0123456789"
DUMMY = "dummy-replaced-by-cordon"
HOST = "api.openai.test"
TIMEOUT = 60

CODEX_STAND_IN = textwrap.dedent(
    '''\
    #!{python}
    """Stand-in for the codex CLI: what cordon relies on, nothing more."""
    import json, os, re, subprocess, sys, tomllib, urllib.request
    from pathlib import Path

    home = Path(os.environ.get("CODEX_HOME") or Path.home() / ".codex")


    def load_dotenv(path):
        # dotenvy, as Codex's arg0 loader uses it: NAME=value, optional `export`, quotes; CODEX_* is dropped
        if not path.exists():
            return
        for raw in path.read_text().splitlines():
            m = re.match(r"\\s*(?:export\\s+)?([A-Za-z_][A-Za-z0-9_.]*)\\s*=(.*)$", raw)
            if not m:
                continue
            name, value = m.group(1), m.group(2).strip()
            if value.startswith("'"):
                value = value[1 : value.index("'", 1)]
            elif value.startswith('"'):
                value = re.sub(r'\\\\(.)', lambda x: x.group(1), value[1 : value.rindex('"')])
            else:
                value = value.split(" #")[0].strip()
            if name.upper().startswith("CODEX_"):
                continue
            os.environ[name] = value


    args = sys.argv[1:]
    if args[:2] == ["login", "--with-api-key"]:
        home.mkdir(parents=True, exist_ok=True)
        (home / "auth.json").write_text(json.dumps({{"OPENAI_API_KEY": sys.stdin.read().strip()}}))
        print("Successfully logged in")
        sys.exit(0)
    if args[:1] != ["exec"] or "--dangerously-bypass-approvals-and-sandbox" not in args:
        sys.exit("stand-in codex: only `login --with-api-key` and `exec --dangerously-...` are modelled")
    load_dotenv(home / ".env")
    key = json.loads((home / "auth.json").read_text())["OPENAI_API_KEY"]
    base = os.environ["OPENAI_BASE_URL"]
    req = urllib.request.Request(
        base + "/responses", data=json.dumps({{"model": "gpt-test", "input": args[-1]}}).encode(),
        headers={{"Authorization": "Bearer " + key, "Content-Type": "application/json"}}, method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        answer = json.loads(resp.read())
    # a shell command the model runs: inherits Codex's env plus [shell_environment_policy.set]
    policy = tomllib.loads((home / "config.toml").read_text()).get("shell_environment_policy", {{}})
    tool_env = dict(os.environ)
    for name in list(tool_env):
        if "PROXY" in name.upper() or name in ("SSL_CERT_FILE", "CURL_CA_BUNDLE"):
            del tool_env[name]
    tool_env.update(policy.get("set", {{}}))
    tool = subprocess.run(
        ["curl", "-sS", "--fail", "-H", "Authorization: Bearer " + key, base + "/models"],
        env=tool_env, capture_output=True, text=True, timeout=30,
    )
    print(json.dumps({{"api": answer["path"], "tool_rc": tool.returncode, "tool_err": tool.stderr}}))
    '''
)


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHON_KEYRING_BACKEND"] = "cordon_testing.config.FileKeyring"
    env["CORDON_TEST_KEYRING_FILE"] = str(tmp_path / "keyring.json")
    return env


def _keyring_usable(env: dict[str, str]) -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "import keyring; keyring.get_keyring()"],
        env=env,
        capture_output=True,
        timeout=TIMEOUT,
    )
    return probe.returncode == 0


def _cordon(
    project: Path, env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "cordon", *args],
        cwd=project,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, f"cordon {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_codex_guide_end_to_end(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is needed for the shell-command half of the guide")
    project = tmp_path / "project"
    project.mkdir()
    env = _env(tmp_path)

    # an existing Codex .env (with a comment) that setup must back up and disable must give back
    dotenv = project / ".codex" / ".env"
    dotenv.parent.mkdir()
    original = b"# my Codex settings\nRUST_LOG=info\n"
    dotenv.write_bytes(original)

    # "Automated setup": cordon setup codex
    setup = _cordon(project, env, "setup", "codex")
    out = setup.stdout
    assert (project / ".codex" / ".env.cordon.bak").read_bytes() == original
    assert 'export CODEX_HOME="$PWD/.codex"' in out
    assert (
        "codex login" in out and DUMMY in out and "cordon secret set openai" in out and "cordon start" in out
    )
    assert (
        dotenv.read_bytes().startswith(original)
        and (project / ".codex" / "config.toml").exists()
        and (project / "cordon.toml").exists()
    )
    assert not re.search(r"^\s*(export\s+)?CODEX_", dotenv.read_text(), re.M)
    assert "nothing to change" in _cordon(project, env, "setup", "codex").stdout
    # "Manual setup": the same values as `cordon env` (which embeds the `default` token instead of `codex`)
    contract = json.loads(_cordon(project, env, "env", "--format", "json").stdout)
    assert f"SSL_CERT_FILE='{contract['SSL_CERT_FILE']}'" in dotenv.read_text()

    # "Adding routes": the exact command setup printed (host swapped for the local stand-in)
    route_line = next(line for line in out.splitlines() if "cordon route add" in line)
    route_cmd = shlex.split(route_line.split(". ", 1)[1].split("#")[0])
    assert route_cmd[:2] == ["cordon", "route"] and "api.openai.com" in route_cmd
    route_args = [HOST if a == "api.openai.com" else a for a in route_cmd[1:]]
    secret_env: dict[str, str] = {}
    use_keyring = _keyring_usable(env)
    if not use_keyring:  # deviation: the test keyring is unavailable, so the secret comes from the env source
        at = route_args.index("--source")
        route_args[at : at + 4] = ["--source", "env", "--var", "CORDON_E2E_OPENAI_KEY"]
        secret_env["CORDON_E2E_OPENAI_KEY"] = SECRET
    _cordon(project, env, *route_args)
    if use_keyring:
        _cordon(project, env, "secret", "set", "openai", stdin=SECRET + "\n")

    # "API key setup": codex login with the dummy key
    codex_home = project / ".codex"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    codex = bindir / "codex"
    codex.write_text(CODEX_STAND_IN.format(python=sys.executable))
    codex.chmod(0o755)
    agent_env = {k: v for k, v in env.items() if "PROXY" not in k.upper()}
    agent_env.update({"CODEX_HOME": str(codex_home), "PATH": f"{bindir}:{env.get('PATH', '')}"})
    login = subprocess.run(
        ["codex", "login", "--with-api-key"],
        input=DUMMY,
        env=agent_env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert login.returncode == 0, login.stderr

    with testing.RecordingUpstream(hosts=(HOST,)) as upstream:
        upstream_ca = upstream.write_ca(tmp_path / "upstream-ca.pem")
        # "Workflow" 1: cordon start (around it, for the test only: the local upstream's CA in upstream_ca_file,
        # and a mount namespace whose hosts file resolves its .test name to 127.0.0.1)
        config = project / "cordon.toml"
        config.write_text(config.read_text().replace("[tls]\n", f'[tls]\nupstream_ca_file = "{upstream_ca}"\n', 1))
        _cordon(project, env, "route", "approve", "--all", "--yes")  # the user approves the edit
        proxy_env = dict(env, **secret_env)
        log = open(tmp_path / "proxy.log", "wb")  # noqa: SIM115 - closed below
        proxy = subprocess.Popen(
            hosts_argv([sys.executable, "-m", "cordon", "start"], {HOST: "127.0.0.1"}, tmp_path / "hosts"),
            cwd=project,
            env=proxy_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_healthy(project, env, proxy, tmp_path / "proxy.log")
            # "Workflow" 2-4: start Codex as usual; it calls the API with the dummy key
            agent_env["OPENAI_BASE_URL"] = f"https://{HOST}:{upstream.port}/v1"
            run = subprocess.run(
                ["codex", "exec", "--dangerously-bypass-approvals-and-sandbox", "say hi"],
                env=agent_env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
            )
            assert run.returncode == 0, (
                f"{run.stderr}\n--- proxy log ---\n{(tmp_path / 'proxy.log').read_text()}"
            )
            result = json.loads(run.stdout.strip().splitlines()[-1])
            assert result["api"] == "/v1/responses"
            assert result["tool_rc"] == 0, result["tool_err"]
        finally:
            proxy.terminate()
            proxy.wait(timeout=20)
            log.close()

    seen = [r for r in upstream.requests if r.path.startswith("/v1/")]
    assert [r.path for r in seen] == ["/v1/responses", "/v1/models"]
    for request in seen:
        assert request.header("Authorization") == [f"Bearer {SECRET}"]
        assert request.header("Proxy-Authorization") == []
    assert DUMMY.encode() not in upstream.all_bytes()
    logs = (tmp_path / "proxy.log").read_text()
    assert SECRET not in logs and "codex" in logs  # the client token's name is logged, never the secret
    # the guide's troubleshooting: "Check cordon's logs — you should see `MITM: injecting credentials route=openai`"
    assert f"MITM: injecting credentials route=openai host={HOST}" in logs

    # "Remove the setup"
    disabled = _cordon(project, env, "integration", "disable", "codex")
    assert "revoked the proxy token 'codex'" in disabled.stdout
    assert dotenv.read_bytes() == original and not (project / ".codex" / ".env.cordon.bak").exists()
    assert not (project / ".codex" / "config.toml").exists()


def _wait_healthy(project: Path, env: dict[str, str], proxy: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proxy.poll() is not None:
            pytest.fail(f"cordon start exited with {proxy.returncode}:\n{log.read_text()}")
        waited = subprocess.run([sys.executable, "-m", "cordon", "wait", "--timeout", "0.5"], cwd=project, env=env,
                                capture_output=True, text=True, timeout=TIMEOUT)
        if waited.returncode == 0:  # this project's cordon, proven by its identity key
            return
    pytest.fail(f"cordon start not healthy within 20 s:\n{log.read_text()}")
