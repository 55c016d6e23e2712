"""Lossless, atomic, locked edits of cordon.toml."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cordon_config import BasicAuth, ConfigError, HeaderAuth, Route, SecretRef, load_config
from cordon_config.edit import (
    RouteExists,
    add_route,
    edit_route,
    free_port,
    remove_route,
    route_to_toml,
    scaffold_config,
    set_listen,
)
from cordon_config.errors import RouteNotFound

HAND_WRITTEN = """\
# My cordon config — written by hand.
listen   =   6790   # keep this odd spacing

[tls]   # the CA
enabled = true
ca_cert_path = "/abs/ca-cert.pem"  # absolute
ca_key_path = "/abs/ca-key.pem"

# OpenAI: via keyring
[[routes]]
name = "openai"          # short name
[routes.match]
host = "api.openai.com"  # the API host
[routes.auth]
type = "header"
header_name = "Authorization"
scheme = "Bearer"        # required for Authorization
[routes.auth.secret]
source = "keyring"
account = "openai"       # see `cordon secret set openai`

# Anthropic: inline tables on purpose
[[routes]]
name = "anthropic"
match = { host = "api.anthropic.com" }
auth = { type = "header", header_name = "x-api-key", secret = { source = "env", var = "ANTHROPIC_KEY" } }

[limits]  # trailing table
connect_timeout = 5
"""


def route(name: str = "gh", host: str = "api.github.test") -> Route:
    return Route(name, host, BasicAuth("x-access-token"), SecretRef("command", {"argv": ("gh", "auth", "token")}))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cordon.toml"
    path.write_text(HAND_WRITTEN, encoding="utf-8")
    path.chmod(0o640)
    return path


def test_scaffold_is_valid_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cordon.toml"
    config = scaffold_config(path, listen=6791, ca_cert_path=tmp_path / "c.pem", ca_key_path=tmp_path / "k.pem")
    assert config.listen == 6791 and config.routes == () and config.tls.ca_key_path == tmp_path / "k.pem"
    assert "# One [[routes]] table per host" in path.read_text()
    with pytest.raises(FileExistsError):
        scaffold_config(path, listen=1, ca_cert_path="/c", ca_key_path="/k")
    add_route(path, route())
    assert load_config(path).routes[0].name == "gh"


def test_add_route_appends_and_keeps_everything_else(config: Path) -> None:
    add_route(config, route())
    text = config.read_text()
    before_limits, limits = HAND_WRITTEN.split("[limits]")
    assert text.startswith(before_limits.rstrip("\n"))
    assert text.endswith("[limits]" + limits) or "[limits]" + limits in text
    assert route_to_toml(route()) in text
    assert [r.name for r in load_config(config).routes] == ["openai", "anthropic", "gh"]
    assert (config.parent / "cordon.toml.bak").read_text() == HAND_WRITTEN
    assert oct(config.stat().st_mode & 0o777) == oct(0o640)


def test_add_route_refuses_duplicates_and_invalid_routes(config: Path) -> None:
    with pytest.raises(RouteExists):
        add_route(config, route("openai", "other.test"))
    with pytest.raises(ConfigError, match="already matched"):
        add_route(config, route("other", "api.openai.com"))
    bad = Route("x", "x.test", HeaderAuth("Authorization"), SecretRef("env", {"var": "X"}))
    with pytest.raises(ConfigError, match="scheme is required"):
        add_route(config, bad)
    assert config.read_text() == HAND_WRITTEN
    assert not (config.parent / "cordon.toml.bak").exists()


def test_edit_route_changes_only_the_given_key(config: Path) -> None:
    before, after = edit_route(config, "openai", host="API.OpenAI.test")
    assert before.host == "api.openai.com" and after.host == "api.openai.test"
    assert config.read_text() == HAND_WRITTEN.replace(
        'host = "api.openai.com"  # the API host', 'host = "api.openai.test"  # the API host')


def test_edit_route_inline_tables_and_secret_source(config: Path) -> None:
    edit_route(config, "anthropic", secret=SecretRef("keyring", {"account": "anthropic", "service": "cordon"}))
    text = config.read_text()
    assert 'secret = { source = "keyring", account = "anthropic" }' in text
    assert text.replace('secret = { source = "keyring", account = "anthropic" }',
                        'secret = { source = "env", var = "ANTHROPIC_KEY" }') == HAND_WRITTEN
    config_ = load_config(config)
    assert dict(config_.routes[1].secret.fields) == {"account": "anthropic", "service": "cordon"}


def test_edit_route_auth_type_and_rename(config: Path) -> None:
    edit_route(config, "openai", new_name="oai", auth=HeaderAuth("x-api-key"))
    text = config.read_text()
    assert 'name = "oai"          # short name' in text
    assert "scheme" not in text.split("[limits]")[0].split("# Anthropic")[0].split("[routes.auth]")[1].split(
        "[routes.auth.secret]")[0]
    loaded = load_config(config)
    assert loaded.routes[0].auth == HeaderAuth("x-api-key")
    assert 'account = "openai"       # see `cordon secret set openai`' in text
    with pytest.raises(RouteNotFound):
        edit_route(config, "nope", host="a.test")
    with pytest.raises(RouteExists):
        edit_route(config, "oai", new_name="anthropic")


def test_remove_route_and_set_listen(config: Path) -> None:
    removed = remove_route(config, "anthropic")
    assert removed.name == "anthropic"
    text = config.read_text()
    assert "anthropic" not in text and "Anthropic" not in text
    assert text == HAND_WRITTEN.replace(HAND_WRITTEN[HAND_WRITTEN.index("# Anthropic"):HAND_WRITTEN.index(
        "[limits]")], "")
    set_listen(config, 7001)
    assert config.read_text().startswith("# My cordon config — written by hand.\nlisten   =   7001   # keep")
    remove_route(config, "openai")
    assert load_config(config).routes == ()
    with pytest.raises(RouteNotFound):
        remove_route(config, "openai")


def test_failed_replace_leaves_original_intact(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(src: object, dst: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        add_route(config, route())
    monkeypatch.undo()
    assert config.read_text() == HAND_WRITTEN
    left = sorted(p.name for p in config.parent.iterdir() if p.name != "home")
    assert left == ["cordon.toml", "cordon.toml.bak"]  # no temp file left, and no lock file beside the config


def test_writer_killed_mid_write_leaves_a_whole_file(config: Path, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = textwrap.dedent(f"""
        import os, sys, time
        from pathlib import Path
        from cordon_config import Route, BasicAuth, SecretRef
        from cordon_config.edit import add_route
        real_fsync = os.fsync
        def slow_fsync(fd):
            Path({str(ready)!r}).write_text("x")
            time.sleep(60)
        os.fsync = slow_fsync
        add_route({str(config)!r}, Route("gh", "gh.test", BasicAuth("u"), SecretRef("env", {{"var": "X"}})))
    """)
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        for _ in range(300):
            if ready.exists() or proc.poll() is not None:
                break
            import time

            time.sleep(0.05)
        assert ready.exists(), "the writer never reached fsync"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=10)
    assert config.read_text() == HAND_WRITTEN
    load_config(config)
    add_route(config, route())  # the lock was released by the kill
    assert [r.name for r in load_config(config).routes] == ["openai", "anthropic", "gh"]


def test_concurrent_route_add_keeps_every_route(config: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        from cordon_config import Route, HeaderAuth, SecretRef
        from cordon_config.edit import add_route
        n = sys.argv[1]
        add_route({str(config)!r}, Route("r" + n, "h" + n + ".test", HeaderAuth("x-k"), SecretRef("env", {{"var": "V"}})))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)]) for i in range(10)]
    assert [p.wait(timeout=60) for p in procs] == [0] * 10
    names = {r.name for r in load_config(config).routes}
    assert names == {"openai", "anthropic"} | {f"r{i}" for i in range(10)}


def test_free_port_skips_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert free_port(port, port + 50) > port


def test_crlf_file_stays_crlf(tmp_path: Path) -> None:
    path = tmp_path / "cordon.toml"
    path.write_bytes(HAND_WRITTEN.replace("\n", "\r\n").encode())
    add_route(path, route())
    data = path.read_bytes()
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert [r.name for r in load_config(path).routes] == ["openai", "anthropic", "gh"]


def test_backup_is_kept_from_the_first_edit_only(config: Path) -> None:
    add_route(config, route())
    remove_route(config, "gh")
    set_listen(config, 7002)
    assert (config.parent / "cordon.toml.bak").read_text() == HAND_WRITTEN


def test_modes_do_not_depend_on_the_umask(tmp_path: Path) -> None:
    from cordon_config.tokens import TokenStore

    old = os.umask(0)
    try:
        path = tmp_path / "cordon.toml"
        scaffold_config(path, listen=6790, ca_cert_path="/c", ca_key_path="/k")
        tokens = tmp_path / "state" / "tokens.toml"
        TokenStore.open(tokens).ensure("default")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644
    assert tokens.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("seed", range(4))
def test_random_edit_sequences_keep_the_model_and_the_untouched_text(config: Path, seed: int) -> None:
    import random

    rng = random.Random(seed)
    model = {r.name: r for r in load_config(config).routes}
    head = HAND_WRITTEN[: HAND_WRITTEN.index("# OpenAI: via keyring")]
    tail = "[limits]  # trailing table\nconnect_timeout = 5\n"
    for step in range(40):
        op = rng.choice(["add", "add", "remove", "edit", "edit"])
        if op == "add" or not model:
            new = route(f"r{step}", f"h{step}.test")
            add_route(config, new)
            model[new.name] = new
        elif op == "remove":
            name = rng.choice(sorted(model))
            remove_route(config, name)
            del model[name]
        else:
            name = rng.choice(sorted(model))
            _, after = edit_route(config, name, host=f"e{step}.test", port=rng.choice([None, 443]))
            model[name] = after
        text = config.read_text()
        assert text.startswith(head) and tail in text
        loaded = load_config(config).routes
        assert [(r.name, r.host, r.port) for r in loaded] == [(r.name, r.host, r.port) for r in model.values()]


def test_a_new_key_goes_after_the_tables_last_key_not_after_its_trailing_comment(tmp_path: Path) -> None:
    path = tmp_path / "cordon.toml"
    head = HAND_WRITTEN.split("# Anthropic")[0].replace('source = "keyring"\naccount = "openai"       # see `cordon '
                                                        'secret set openai`\n', 'source = "env"\nvar = "OPENAI"\n')
    path.write_text(head + "# the end of the file\n", encoding="utf-8")
    edit_route(path, "openai", port=8443, secret=SecretRef("keyring", {"account": "acct"}))
    text = path.read_text(encoding="utf-8")
    assert text.endswith('source = "keyring"\naccount = "acct"\n\n# the end of the file\n'), text
    assert 'host = "api.openai.com"  # the API host\nport = 8443\n' in text
    assert load_config(path).routes[0].port == 8443
