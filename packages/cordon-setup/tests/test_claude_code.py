import shlex
from pathlib import Path

from cordon_config.scope import resolve_scope
from cordon_setup.context import SetupContext
from cordon_setup.targets import claude_code


def _ctx(tmp_path: Path, scope: str) -> SetupContext:
    env = {"HOME": str(tmp_path / "home")}
    paths = resolve_scope(scope, None, env=env, cwd=tmp_path / "my proj")
    return SetupContext(paths, 6790, {}, tmp_path / "my proj", tmp_path / "home", env, "'/opt/my bin/cordon'")


def test_paths_per_scope(tmp_path):
    project = _ctx(tmp_path, "project")
    assert claude_code.settings_path(project, claude_code.agent_dir(project)) == (
        tmp_path / "my proj" / ".claude" / "settings.local.json"
    )
    user = _ctx(tmp_path, "user")
    assert (
        claude_code.settings_path(user, claude_code.agent_dir(user))
        == tmp_path / "home" / ".claude" / "settings.json"
    )


def test_hook_quotes_paths_and_exits_2(tmp_path):
    ctx = _ctx(tmp_path, "project")
    command = claude_code.hook_command(ctx)
    words = shlex.split(command.split("||")[0])
    assert words[:6] == [
        "/opt/my bin/cordon",
        "status",
        "--quiet",
        "--config",
        str(ctx.paths.config_path),
        ">/dev/null",
    ]
    assert command.rstrip().endswith("exit 2; }")


def test_skill_has_front_matter_and_says_not_to_seek_credentials():
    head, _, body = claude_code.SKILL.partition("\n---\n")
    assert head.startswith("---\nname: cordon\ndescription: ")
    assert "Do not search for API keys" in body and "dummy-replaced-by-cordon" in body
