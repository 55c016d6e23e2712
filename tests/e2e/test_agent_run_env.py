"""The agent is the adversary: `cordon run` must not hand the command a secret (SECURITY.md §E rule 1).

Attack: the secret of an ``env`` route is in the shell (as docs once suggested), a copy of it sits in another
variable, and a real ``OPENAI_API_KEY`` is exported; the agent runs ``cordon run -- sh -c 'echo …'``. What the
command prints, what reaches stderr and what the upstream receives are checked. ``cordon run`` runs in a mount
namespace whose hosts file maps ``api.test`` to 127.0.0.1, so the proxy it starts reaches the recording
upstream (no product switch).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cordon_config.providers import DUMMY_KEY
from cordon_testing.namespaces import hosts_argv
from cordon_testing.proxy import RecordingUpstream, free_port

pytestmark = pytest.mark.e2e

REAL_OPENAI = "sk-proj-the-users-real-openai-key-7c1e"


@pytest.fixture
def upstream() -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as up:
        yield up


def test_cordon_run_gives_the_command_no_secret_and_the_dummy_provider_key(projects, upstream, tmp_path) -> None:
    a = projects("a").setup(free_port(), upstream.write_ca(tmp_path / "up-ca.pem"))
    a.must("route", "add", "--name", "openai", "--host", "api.openai.com", "--auth-type", "header",
           "--header-name", "Authorization", "--scheme", "Bearer", "--source", "env", "--var", a.SECRET_VAR)
    env = {**a.env, a.SECRET_VAR: a.secret, "COPY_OF_THE_KEY": a.secret, "OPENAI_API_KEY": REAL_OPENAI}
    script = (
        'echo "route-var=${CORDON_E2E_SECRET:-unset} copy=${COPY_OF_THE_KEY:-unset} openai=$OPENAI_API_KEY"; '
        f"curl -sS https://api.test:{upstream.port}/through-run"
    )
    argv = hosts_argv([sys.executable, "-m", "cordon", "run", "--", "sh", "-c", script], {"api.test": "127.0.0.1"},
                      tmp_path / "hosts")
    result = subprocess.run(argv, cwd=a.dir, env=env, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first == f"route-var=unset copy=unset openai={DUMMY_KEY}"
    for value in (a.secret, REAL_OPENAI):
        assert value not in result.stdout and value not in result.stderr
    notices = [line for line in result.stderr.splitlines() if line.startswith("cordon: ")]
    assert f'cordon: {a.SECRET_VAR} removed from the command\'s environment (route "api" reads its secret from it)' \
        in notices
    assert "cordon: COPY_OF_THE_KEY removed from the command's environment (its value is a route's secret)" in notices
    assert any(line.startswith("cordon: OPENAI_API_KEY from your environment replaced with cordon's dummy key")
               for line in notices)
    # the command still reaches the API through the proxy `cordon run` started, which had the secret
    (seen,) = [r for r in upstream.requests if r.path == "/through-run"]
    assert seen.header("Authorization") == [f"Bearer {a.secret}"]


def test_cordon_env_and_agent_files_carry_the_dummy_key_of_each_routed_provider(projects, upstream, tmp_path) -> None:
    a = projects("a").setup(free_port(), upstream.write_ca(tmp_path / "up-ca.pem"))
    a.must("route", "add", "--name", "anthropic", "--host", "api.anthropic.com", "--auth-type", "header",
           "--header-name", "x-api-key", "--source", "env", "--var", a.SECRET_VAR)
    out = a.must("env", "--format", "dotenv", env={**a.env, "ANTHROPIC_API_KEY": "sk-ant-real"}).stdout
    assert f"ANTHROPIC_API_KEY={DUMMY_KEY}" in out.replace("'", "").replace('"', "")
    assert "sk-ant-real" not in out and a.SECRET_VAR not in out


NOBODY = 65534
# what the command (the agent) runs: it reads the environment of its parent, `cordon run`, and of every other
# ancestor it can (all of them run as the same user), and says whether it is itself dumpable (a process is made
# dumpable again when it executes a program, so the agent's own tools keep working)
READ_ANCESTORS = """
import ctypes, os
pid, found = os.getppid(), []
while pid > 1:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            found.append(f"{pid}:read:" + f.read().hex())
    except OSError as exc:
        found.append(f"{pid}:refused:{type(exc).__name__}")
    with open(f"/proc/{pid}/stat") as f:
        pid = int(f.read().rsplit(")", 1)[1].split()[1])
print("dumpable", ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))
print("\\n".join(found))
"""


def _nobody_python() -> tuple[list[str], str]:
    """``setpriv`` to uid/gid 65534 running the system Python on this venv's packages (the venv's own
    interpreter may live under /root, which that user cannot read), and the ``PYTHONPATH`` for it."""
    if os.getuid() != 0:
        pytest.skip("needs root to run `cordon run` as another (non-root) user")
    setpriv, system_python = shutil.which("setpriv"), "/usr/bin/python3"
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    if not os.access(system_python, os.X_OK):
        pytest.skip(f"{system_python} is missing")
    version = subprocess.run([system_python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                             text=True).stdout.strip()
    if version != str(sys.version_info[:2]):
        pytest.skip(f"{system_python} is Python {version}, not this venv's {sys.version_info[:2]}")
    purelib = Path(sysconfig.get_paths()["purelib"])
    roots = [str(purelib)]
    for pth in sorted(purelib.glob("cordon*.pth")):
        roots += [line.strip() for line in pth.read_text().splitlines() if line.strip().startswith("/")]
    argv = [setpriv, "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups", system_python]
    probe = subprocess.run([*argv, "-c", "import cordon_setup, cordon_proxy, cryptography"], capture_output=True,
                           text=True, env={"PYTHONPATH": os.pathsep.join(roots)})
    if probe.returncode != 0:
        pytest.skip(f"uid {NOBODY} cannot import this venv's packages: {probe.stderr.strip()[-200:]}")
    return argv, os.pathsep.join(roots)


def test_cordon_run_environment_is_not_readable_by_the_command_it_runs(tmp_path) -> None:
    """SECURITY.md §E rule 1: the command runs as the same user as `cordon run`, which keeps the caller's
    environment (the route's secret, the real provider key) to start the proxy. Reading its
    ``/proc/<pid>/environ`` (or that of the proxy) must be refused."""
    python, pythonpath = _nobody_python()
    root = Path(tempfile.mkdtemp(prefix="cordon-nobody-"))
    try:
        home, project = root / "home", root / "project"
        for path in (home, project):
            path.mkdir()
        for path in (root, home, project):
            os.chown(path, NOBODY, NOBODY)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
               "PYTHONPATH": pythonpath, "LANG": "C.UTF-8"}

        def cordon(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*python, "-m", "cordon", *args], cwd=project, env={**env, **(extra or {})},
                                  capture_output=True, text=True, timeout=90)

        port = free_port()
        for args in (("setup", "--port", str(port)),
                     ("route", "add", "--name", "api", "--host", "api.test", "--auth-type", "header",
                      "--header-name", "Authorization", "--scheme", "Bearer", "--source", "env", "--var",
                      "RT_SECRET")):
            done = cordon(*args)
            assert done.returncode == 0, done.stderr
        secret = "sk-run-secret-for-the-proxy-only-5d2a"
        result = cordon("run", "--", "/usr/bin/python3", "-c", READ_ANCESTORS,
                        extra={"RT_SECRET": secret, "OPENAI_API_KEY": REAL_OPENAI})
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == "dumpable 1", "the command itself must stay dumpable (reset at exec)"
        (parent, *others) = lines[1:]
        assert ":refused:PermissionError" in parent, "`cordon run`'s environment was readable by its command"
        for value in (secret, REAL_OPENAI):
            assert value.encode().hex() not in result.stdout, "an ancestor's environment held the secret"
            assert value not in result.stdout and value not in result.stderr
        assert others, "the command's ancestors (up to setpriv) were walked"
    finally:
        shutil.rmtree(root, ignore_errors=True)
