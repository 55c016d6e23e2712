"""Scopes: config discovery upwards (like git), the scope records in the state dirs, a port per scope."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cordon_config.scope import find_project, missing_config, resolve_scope, using_line, with_scope_flag
from cordon_config.scopes import (
    KnownScope,
    known_scopes,
    ports_in_use,
    read_record,
    record_log,
    record_scope,
    remove_state_dir,
    scope_log,
    scope_port,
)


def env() -> dict[str, str]:
    return dict(os.environ)


def project(path: Path, listen: int | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    config = path / "cordon.toml"
    config.write_text(f"listen = {listen}\n" if listen else "")
    return config


# -- discovery ------------------------------------------------------------------------------------------------


def test_a_subdirectory_finds_the_nearest_cordon_toml_above(tmp_path: Path) -> None:
    top = tmp_path / "proj"
    project(top)
    deep = top / "src" / "pkg"
    deep.mkdir(parents=True)
    paths = resolve_scope(None, None, env=env(), cwd=deep)
    assert paths.config_path == top / "cordon.toml"
    assert paths.state_dir == resolve_scope(None, None, env=env(), cwd=top).state_dir  # one scope, one state dir
    assert paths.found_above and paths.flag == "" and paths.found_from == deep
    assert using_line(paths) == f"cordon: using {top / 'cordon.toml'}"
    nested = project(top / "src" / "sub")  # the nearest wins
    (nested.parent / "deeper").mkdir()
    assert resolve_scope(None, None, env=env(), cwd=nested.parent / "deeper").config_path == nested
    assert using_line(resolve_scope(None, None, env=env(), cwd=top)) is None  # found here: nothing to say


def test_discovery_stops_below_home_and_at_directories_others_may_write(tmp_path: Path) -> None:
    home = Path(os.environ["HOME"])
    project(home)  # a cordon.toml in $HOME itself must not become every project's config
    work = home / "work" / "proj"
    work.mkdir(parents=True)
    assert resolve_scope(None, None, env=env(), cwd=work).config_path == work / "cordon.toml"
    shared = tmp_path / "shared"
    project(shared)
    inner = shared / "drop" / "mine"
    inner.mkdir(parents=True)
    (shared / "drop").chmod(0o1777)  # like /tmp: anyone could have planted what is above it
    assert find_project(str(inner), str(home)) == str(inner)
    (shared / "drop").chmod(0o755)
    assert find_project(str(inner), str(home)) == str(shared)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the file to another user")
def test_a_cordon_toml_owned_by_another_user_is_not_used(tmp_path: Path) -> None:
    config = project(tmp_path / "p")
    (tmp_path / "p" / "sub").mkdir()
    os.chown(config, 65534, 65534)
    assert find_project(str(tmp_path / "p" / "sub"), os.environ["HOME"]) == str(tmp_path / "p" / "sub")


def test_discovery_does_not_cross_into_another_filesystem(tmp_path: Path) -> None:
    """A tmpfs mounted on proj/mnt (in a private mount namespace) hides proj/cordon.toml from below it."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs unshare and root for a private mount namespace")
    project(tmp_path / "proj")
    mount = tmp_path / "proj" / "mnt"
    mount.mkdir()
    code = ("import sys; from cordon_config.scope import find_project; "
            "print(find_project(sys.argv[1], '/nonexistent-home'))")
    script = f'mount -t tmpfs none "{mount}" && mkdir "{mount}/deep" && "{sys.executable}" -c "{code}" "{mount}/deep"'
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    if done.returncode != 0 and "mount" in done.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(mount / "deep")
    assert find_project(str(mount), os.environ["HOME"]) == str(tmp_path / "proj")  # same filesystem: found


def test_nothing_found_means_the_working_directory_and_one_message_for_it(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    paths = resolve_scope(None, None, env=env(), cwd=bare)
    assert paths.config_path == bare / "cordon.toml" and not paths.found_above
    message, hint = missing_config(paths)
    assert message == f"no cordon.toml in {bare} or a parent directory" and "cordon setup" in hint
    explicit = resolve_scope(None, bare / "x.toml", env=env(), cwd=tmp_path)
    assert missing_config(explicit)[0] == f"no cordon.toml at {bare / 'x.toml'}"
    user = resolve_scope("user", None, env=env(), cwd=bare)
    assert missing_config(user) == (f"no user-scope cordon.toml at {user.config_path}",
                                    "create it with: cordon setup --scope user")


def test_discovery_can_be_turned_off_and_explicit_choices_win(tmp_path: Path) -> None:
    project(tmp_path / "proj")
    sub = tmp_path / "proj" / "sub"
    sub.mkdir()
    assert resolve_scope(None, None, env=env(), cwd=sub, discover=False).config_path == sub / "cordon.toml"
    assert resolve_scope(None, "other.toml", env=env(), cwd=sub).config_path == sub / "other.toml"
    assert resolve_scope("project", None, env=env(), cwd=sub).config_path == tmp_path / "proj" / "cordon.toml"


def test_hints_carry_the_flag_the_user_chose(tmp_path: Path) -> None:
    hint = "create one with: cordon ca generate --force, then cordon setup"
    found = resolve_scope(None, None, env=env(), cwd=tmp_path)
    assert with_scope_flag(hint, found) == hint  # discovery finds it again from here
    user = resolve_scope("user", None, env=env(), cwd=tmp_path)
    assert with_scope_flag(hint, user) == \
        "create one with: cordon ca generate --force --scope user, then cordon setup --scope user"
    explicit = resolve_scope(None, tmp_path / "my dir" / "c.toml", env=env(), cwd=tmp_path)
    flag = f" --config '{tmp_path / 'my dir' / 'c.toml'}'"
    assert with_scope_flag("run `cordon ca bundle`", explicit) == f"run `cordon ca bundle{flag}`"


# -- records and ports ----------------------------------------------------------------------------------------


def test_record_scope_names_the_config_privately_and_keeps_other_keys(tmp_path: Path) -> None:
    paths = resolve_scope(None, None, env=env(), cwd=project(tmp_path / "a").parent)
    target = record_scope(paths)
    assert json.loads(target.read_text()) == {"config": str(paths.config_path)}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert read_record(paths.state_dir) == paths.config_path
    record_log(paths, tmp_path / "elsewhere.log")
    assert scope_log(paths) == tmp_path / "elsewhere.log"
    record_scope(paths)  # setup again: the log location stays
    assert json.loads(target.read_text()) == {"config": str(paths.config_path), "log": str(tmp_path / "elsewhere.log")}


def test_known_scopes_lists_projects_and_user_and_sees_gone_projects(tmp_path: Path) -> None:
    a = resolve_scope(None, None, env=env(), cwd=project(tmp_path / "a", 6790).parent)
    b = resolve_scope(None, None, env=env(), cwd=project(tmp_path / "b", 6791).parent)
    user = resolve_scope("user", None, env=env(), cwd=tmp_path)
    for paths in (a, b, user):
        record_scope(paths)
    unrecorded = a.state_dir.parent / "old-12345678"
    unrecorded.mkdir()
    scopes = known_scopes(env())
    assert [s.namespace for s in scopes] == [*sorted([a.namespace, b.namespace, "old-12345678"]), "user"]
    by_name = {s.namespace: s for s in scopes}
    assert by_name["old-12345678"].config_path is None and not by_name["old-12345678"].gone
    assert by_name["user"].kind == "user" and by_name["user"].config_path == user.config_path
    assert ports_in_use(env()) == {6790: a.config_path, 6791: b.config_path}
    assert ports_in_use(env(), exclude=a.config_path) == {6791: b.config_path}
    (tmp_path / "b" / "cordon.toml").unlink()
    assert KnownScope(b.namespace, b.state_dir, b.config_path).gone
    assert [s.namespace for s in known_scopes(env()) if s.gone] == [b.namespace]


def test_a_new_scope_skips_ports_other_scopes_use_even_when_free_now(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        start = probe.getsockname()[1]
    a = resolve_scope(None, None, env=env(), cwd=project(tmp_path / "a", start).parent)
    record_scope(a)  # A's proxy is not running: its port is free right now, but it is A's
    assert scope_port(start, env()) != start
    assert scope_port(start, env(), exclude=a.config_path) == start  # A itself may keep it
    with socket.socket() as busy:  # and a port something else holds now is skipped too
        busy.bind(("127.0.0.1", 0))
        held = busy.getsockname()[1]
        assert scope_port(held, env()) != held


def test_remove_state_dir_only_removes_cordon_state_dirs(tmp_path: Path) -> None:
    a = resolve_scope(None, None, env=env(), cwd=project(tmp_path / "a").parent)
    record_scope(a)
    (scope,) = known_scopes(env())
    with pytest.raises(ValueError):
        remove_state_dir(KnownScope("x", tmp_path / "a", None), env())
    remove_state_dir(scope, env())
    assert not a.state_dir.exists() and (tmp_path / "a" / "cordon.toml").exists()
