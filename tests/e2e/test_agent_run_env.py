"""The agent is the adversary: `cordon run` must not hand the command a secret (SECURITY.md §E rule 1).

Attack: the secret of an ``env`` route is in the shell (as docs once suggested), a copy of it sits in another
variable, and a real ``OPENAI_API_KEY`` is exported; the agent runs ``cordon run -- sh -c 'echo …'``. What the
command prints, what reaches stderr and what the upstream receives are checked. ``cordon run`` runs in a mount
namespace whose hosts file maps ``api.test`` to 127.0.0.1, so the proxy it starts reaches the recording
upstream (no product switch).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

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
