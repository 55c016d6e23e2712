"""`cordon run`'s child environment: no variable a route reads, no value cordon resolved, dummy provider keys."""

from __future__ import annotations

from pathlib import Path

from cordon_config.providers import DUMMY_KEY
from cordon_setup.childenv import child_environment, secret_references

CONFIG = """\
listen = 6790

[[routes]]
name = "rt"
[routes.match]
host = "api.example.com"
[routes.auth]
type = "header"
header_name = "Authorization"
[routes.auth.secret]
source = "env"
var = "RT_SECRET"

[[routes]]
name = "filed"
[routes.match]
host = "files.example.com"
[routes.auth]
type = "header"
header_name = "x-api-key"
[routes.auth.secret]
source = "file"
path = "secret.txt"

[[routes]]
name = "openai"
[routes.match]
host = "api.openai.com"
[routes.auth]
type = "header"
header_name = "Authorization"
[routes.auth.secret]
source = "keyring"
account = "openai"
"""

REAL = "sk-real-0123456789abcdef"
FILED = "file-secret-abcdef0123"


def _refs(tmp_path: Path):
    config = tmp_path / "cordon.toml"
    config.write_text(CONFIG)
    (tmp_path / "secret.txt").write_text(FILED + "\n")
    return secret_references(config)


def test_references_are_read_from_the_routes(tmp_path: Path) -> None:
    refs = _refs(tmp_path)
    assert dict(refs.env_vars) == {"RT_SECRET": "rt"}
    assert refs.files == (tmp_path / "secret.txt",)


def test_a_half_edited_config_names_nothing_rather_than_failing(tmp_path: Path) -> None:
    config = tmp_path / "cordon.toml"
    config.write_text("[[routes]\nname = ")
    assert secret_references(config).env_vars == {}
    assert secret_references(tmp_path / "absent.toml").files == ()


def test_child_gets_no_secret_and_one_notice_per_variable_naming_it_never_the_value(tmp_path: Path) -> None:
    environ = {
        "PATH": "/usr/bin",
        "RT_SECRET": REAL,
        "COPY_OF_IT": REAL,
        "IN_A_URL": f"https://user:{REAL}@example.com/",
        "FILE_COPY": FILED,
        "OPENAI_API_KEY": "sk-proj-the-users-real-openai-key",
        "HOME": "/home/u",
    }
    contract = {"HTTPS_PROXY": "http://ns:tok@127.0.0.1:6790", "OPENAI_API_KEY": DUMMY_KEY}
    child = child_environment(environ, contract, _refs(tmp_path))
    assert child.env == {"PATH": "/usr/bin", "HOME": "/home/u", **contract}
    text = "\n".join(child.notices)
    for value in (REAL, FILED, "sk-proj-the-users-real-openai-key"):
        assert value not in text
    assert len(child.notices) == 5
    assert 'cordon: RT_SECRET removed from the command\'s environment (route "rt" reads its secret from it)' in text
    assert "cordon: COPY_OF_IT removed from the command's environment (its value is a route's secret)" in text
    assert "IN_A_URL removed" in text and "FILE_COPY removed" in text
    assert "cordon: OPENAI_API_KEY from your environment replaced with cordon's dummy key" in text


def test_nothing_to_say_when_the_environment_is_clean(tmp_path: Path) -> None:
    contract = {"OPENAI_API_KEY": DUMMY_KEY}
    child = child_environment({"PATH": "/bin", "OPENAI_API_KEY": DUMMY_KEY}, contract, _refs(tmp_path))
    assert child.notices == [] and child.env == {"PATH": "/bin", "OPENAI_API_KEY": DUMMY_KEY}


def test_short_secrets_are_matched_whole_only(tmp_path: Path) -> None:
    config = tmp_path / "cordon.toml"
    config.write_text(CONFIG)
    refs = secret_references(config)
    child = child_environment({"RT_SECRET": "abc", "TERM": "xterm-abc", "OTHER": "abc"}, {}, refs)
    assert child.env == {"TERM": "xterm-abc"}
