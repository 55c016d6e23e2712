from pathlib import Path

from cordon_config.scope import resolve_scope
from cordon_setup.context import SetupContext
from cordon_setup.targets import codex


def _ctx(tmp_path: Path, scope: str, environ: dict[str, str]) -> SetupContext:
    env = {"HOME": str(tmp_path / "home"), **environ}
    paths = resolve_scope(scope, None, env=env, cwd=tmp_path / "proj")
    return SetupContext(paths, 6790, {}, tmp_path / "proj", tmp_path / "home", env, "cordon")


def test_codex_env_never_carries_a_codex_name():
    env = {"HTTPS_PROXY": "x", "CODEX_CA_CERTIFICATE": "/ca.pem", "codex_home": "y", "SSL_CERT_FILE": "/b"}
    assert codex.codex_env(env) == {"HTTPS_PROXY": "x", "SSL_CERT_FILE": "/b"}


def test_codex_directories(tmp_path):
    assert (
        codex.agent_dir(_ctx(tmp_path, "project", {"CODEX_HOME": "/elsewhere"}))
        == tmp_path / "proj" / ".codex"
    )
    assert codex.agent_dir(_ctx(tmp_path, "user", {})) == tmp_path / "home" / ".codex"
    assert codex.agent_dir(_ctx(tmp_path, "user", {"CODEX_HOME": "/opt/codex"})) == Path("/opt/codex")


def test_next_steps_follow_the_guide(tmp_path):
    ctx = _ctx(tmp_path, "project", {})
    steps = codex.next_steps(ctx, tmp_path / "proj" / ".codex")
    assert steps[0].startswith('export CODEX_HOME="$PWD/.codex"')
    assert steps[1].startswith("codex login") and "dummy-replaced-by-cordon" in steps[1]
    assert steps[2] == (
        "cordon route add --name openai --host api.openai.com --auth-type header --header-name Authorization "
        "--scheme Bearer --source keyring --account openai"
    )
    assert steps[3].startswith("cordon secret set openai") and steps[4].startswith("cordon start")
    user = codex.next_steps(_ctx(tmp_path, "user", {}), tmp_path / "home" / ".codex")
    assert any(s.startswith("cordon route add --scope user --name openai") for s in user)
    assert not any("export CODEX_HOME" in s for s in user)
