"""Lossless edits of ``[[listeners]]``: add, edit only what changed, remove with its comments."""

from __future__ import annotations

from pathlib import Path

import pytest
from cordon_config import ConfigError, Listener, PasswordAuth, SecretRef, load_config
from cordon_config.edit import (
    ListenerExists,
    add_listener,
    edit_listener,
    listener_to_toml,
    remove_listener,
)
from cordon_config.errors import ListenerNotFound

HAND_WRITTEN = """\
listen = 6790   # the HTTP proxy

[tls]
ca_cert_path = "/abs/ca-cert.pem"
ca_key_path = "/abs/ca-key.pem"

[[routes]]
name = "openai"
[routes.match]
host = "api.openai.com"
[routes.auth]
type = "header"
header_name = "Authorization"
scheme = "Bearer"
[routes.auth.secret]
source = "keyring"
account = "openai"

# The production database (read by the reporting agent)
[[listeners]]
name = "prod-db"            # keep this comment
port = 15432
upstream = "DB.example.com"  # spelled by hand
client_tls = "accept"       # the default, written out
[listeners.auth]
type = "password"
username = "app_user"
[listeners.auth.secret]
source = "1password"
vault = "Engineering"
item = "Postgres Prod"
field = "password"

[limits]  # a table after the listeners
connect_timeout = 5
"""


def listener(name: str = "staging-db", port: int = 15433) -> Listener:
    return Listener(name, port, "staging.db.test", 5432, PasswordAuth("app"),
                    SecretRef("keyring", {"account": name, "service": "cordon"}))


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "cordon.toml"
    path.write_text(HAND_WRITTEN, encoding="utf-8")
    return path


def test_add_listener_appends_after_the_last_listener_and_keeps_the_rest(config_file: Path) -> None:
    config = add_listener(config_file, listener())
    assert [item.name for item in config.listeners] == ["prod-db", "staging-db"]
    text = config_file.read_text(encoding="utf-8")
    assert text.startswith(HAND_WRITTEN.split("[limits]")[0])
    assert text.endswith("[limits]  # a table after the listeners\nconnect_timeout = 5\n")
    assert listener_to_toml(listener()) in text
    assert load_config(config_file).listener("staging-db") == listener()
    assert (config_file.parent / "cordon.toml.bak").read_text(encoding="utf-8") == HAND_WRITTEN


def test_add_first_listener_to_a_file_without_any(tmp_path: Path) -> None:
    path = tmp_path / "cordon.toml"
    path.write_text('listen = 6790\n[tls]\nca_cert_path = "/c"\nca_key_path = "/k"\n', encoding="utf-8")
    add_listener(path, listener())
    assert load_config(path).listeners == (listener(),)
    assert "\n\n[[listeners]]\nname = \"staging-db\"\nport = 15433\nupstream = \"staging.db.test:5432\"\n" in \
        path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["prod-db", "openai"])
def test_add_listener_refuses_a_taken_name(config_file: Path, name: str) -> None:
    with pytest.raises(ListenerExists, match=name):
        add_listener(config_file, listener(name))
    assert config_file.read_text(encoding="utf-8") == HAND_WRITTEN


@pytest.mark.parametrize("port", [6790, 15432])
def test_add_listener_refuses_a_taken_port_and_writes_nothing(config_file: Path, port: int) -> None:
    with pytest.raises(ConfigError, match=f"port {port} is already used"):
        add_listener(config_file, listener(port=port))
    assert config_file.read_text(encoding="utf-8") == HAND_WRITTEN


def test_edit_listener_touches_only_the_changed_keys(config_file: Path) -> None:
    before, after = edit_listener(config_file, "prod-db", port=15440, username="reporting")
    assert (before.port, after.port, after.auth.username) == (15432, 15440, "reporting")
    text = config_file.read_text(encoding="utf-8")
    assert text == HAND_WRITTEN.replace("port = 15432", "port = 15440").replace(
        'username = "app_user"', 'username = "reporting"')


def test_edit_listener_modes_and_secret(config_file: Path) -> None:
    secret = SecretRef("env", {"var": "PROD_DB_PASSWORD"})
    _, after = edit_listener(config_file, "prod-db", client_tls="require", upstream_tls="disable", secret=secret)
    assert (after.client_tls, after.upstream_tls, after.secret) == ("require", "disable", secret)
    text = config_file.read_text(encoding="utf-8")
    assert 'client_tls = "require"       # the default, written out' in text
    assert 'upstream_tls = "disable"' in text and "vault" not in text
    assert 'upstream = "DB.example.com"  # spelled by hand' in text
    assert load_config(config_file).listener("prod-db") == after


def test_edit_listener_upstream_and_rename(config_file: Path) -> None:
    _, after = edit_listener(config_file, "prod-db", new_name="main-db", upstream="[::1]:6432")
    assert (after.name, after.upstream) == ("main-db", "[::1]:6432")
    assert 'upstream = "[::1]:6432"  # spelled by hand' in config_file.read_text(encoding="utf-8")
    with pytest.raises(ListenerExists):
        edit_listener(config_file, "main-db", new_name="openai")
    with pytest.raises(ConfigError, match="not a URL"):
        edit_listener(config_file, "main-db", upstream="postgres://x")


def test_edit_or_remove_missing_listener(config_file: Path) -> None:
    with pytest.raises(ListenerNotFound, match="no listener named 'nope'"):
        edit_listener(config_file, "nope", port=1)
    with pytest.raises(ListenerNotFound):
        remove_listener(config_file, "nope")


def test_remove_listener_takes_its_comment_block_and_keeps_the_rest(config_file: Path) -> None:
    removed = remove_listener(config_file, "prod-db")
    assert removed.name == "prod-db"
    text = config_file.read_text(encoding="utf-8")
    assert "[[listeners]]" not in text and "production database" not in text
    assert text.endswith('account = "openai"\n\n[limits]  # a table after the listeners\nconnect_timeout = 5\n')
    assert load_config(config_file).listeners == ()


def test_add_then_remove_round_trips(config_file: Path) -> None:
    add_listener(config_file, listener())
    remove_listener(config_file, "staging-db")
    assert config_file.read_text(encoding="utf-8") == HAND_WRITTEN
