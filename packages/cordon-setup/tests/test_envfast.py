"""`cordon env`'s fast path: same answer as the full command, from a cache that follows every change."""

from __future__ import annotations

import itertools
import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import pytest
from cordon_config.scope import resolve_scope
from cordon_config.tokens import TokenStore
from cordon_setup import envfast
from cordon_setup.cli import env_main, setup_main
from cordon_setup.envfast import cached_env, parse_args, resolve

HOMES = ["/root", "/", "//", "///h", "/h/./x/", "rel", "/h//x", "/a b/ü"]
XDGS = ["", "rel", "/x", "/x/", "//x", "/x/./y", "/x/../y"]
CWDS = ["/", "//", "/a", "/a/b/", "//a/b", "/a b/ü", "/a/./b"]
CONFIGS = [None, "cordon.toml", "./c.toml", "../c.toml", "/abs/c.toml", "//abs/c.toml", "a//b/../c.toml",
           "../../../../c.toml", "/c.toml", "d/"]


@pytest.mark.parametrize("home,xdg", list(itertools.product(HOMES, XDGS)))
def test_resolve_matches_the_scope_module_on_awkward_paths(home: str, xdg: str) -> None:
    env = {"HOME": home, "XDG_CONFIG_HOME": xdg}
    for cwd in CWDS:
        for config in CONFIGS:
            scopes = [None, "project", "user"] if config is None else [None]
            for scope in scopes:
                want = resolve_scope(scope, config, env=env, cwd=Path(cwd))
                got = resolve(scope, config, env, cwd)
                assert got == (str(want.config_path), str(want.state_dir)), (scope, config, cwd)


def test_resolve_matches_the_scope_module_on_real_trees(tmp_path: Path) -> None:
    """Discovery included: a project found above, nested projects, a directory others may write."""
    env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    (tmp_path / "home" / "p" / "src" / "deep").mkdir(parents=True)
    (tmp_path / "home" / "p" / "cordon.toml").write_text("")
    (tmp_path / "home" / "p" / "src" / "inner").mkdir()
    (tmp_path / "home" / "p" / "src" / "inner" / "cordon.toml").write_text("")
    (tmp_path / "home" / "p" / "tmp" / "x").mkdir(parents=True)
    (tmp_path / "home" / "p" / "tmp").chmod(0o1777)
    cwds = [tmp_path / "home", tmp_path / "home" / "p", tmp_path / "home" / "p" / "src" / "deep",
            tmp_path / "home" / "p" / "src" / "inner", tmp_path / "home" / "p" / "tmp" / "x", tmp_path]
    for cwd in cwds:
        for config in (None, "cordon.toml"):
            want = resolve_scope(None, config, env=env, cwd=cwd)
            assert resolve(None, config, env, str(cwd)) == (str(want.config_path), str(want.state_dir)), cwd
    assert resolve(None, None, env, str(cwds[2]))[0] == str(tmp_path / "home" / "p" / "cordon.toml")


@pytest.mark.parametrize("path", ["", ".", "/", "//", "///", "a", "a/", "./a", "a/./b", "a//b", "/a/../b", "//a/b/",
                                  "///a//b/.", "a/b/..", "..", "/.."])
def test_pure_and_parent_match_purepath(path: str) -> None:
    from cordon_config import quickscope

    pure = quickscope._pure(path)
    assert pure == str(PurePosixPath(path))
    assert quickscope._parent(pure) == str(PurePosixPath(path).parent)


@pytest.mark.parametrize("args,expected", [
    ([], {}),
    (["-c", "x.toml"], {"config": "x.toml"}),
    (["--config=x.toml", "--format", "fish"], {"config": "x.toml", "format": "fish"}),
    (["--scope", "user", "-f", "dotenv", "--token=codex"], {"scope": "user", "format": "dotenv", "token": "codex"}),
])
def test_plain_arguments_are_understood(args: list[str], expected: dict[str, str]) -> None:
    assert parse_args(args) == expected


@pytest.mark.parametrize("args", [
    ["--help"], ["-h"], ["--json"], ["--format", "json"], ["--scope", "user", "-c", "x"], ["--scope", "team"],
    ["-c"], ["-c", "-x"], ["--config="], ["-cx.toml"], ["--conf", "x"], ["-c", "a", "-c", "b"], ["extra"],
    ["--format", "zsh"], ["--token"],
])
def test_anything_else_goes_to_the_full_command(args: list[str]) -> None:
    assert parse_args(args) is None  # the full command parses it: help, errors, abbreviations, json


@pytest.fixture(autouse=True)
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written a moment ago may be cached here (the racy-window test sets its own value)."""
    monkeypatch.setattr(envfast, "RACY_SECONDS", 0.0)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "my proj"
    path.mkdir()
    monkeypatch.chdir(path)
    assert setup_main([]) == 0
    return path


def full(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    capsys.readouterr()
    assert env_main(args) == 0
    return capsys.readouterr().out


def fast(args: list[str]) -> str | None:
    return cached_env(args, os.environ, os.getcwd())


@pytest.mark.parametrize("fmt", ["shell", "fish", "dotenv"])
def test_the_cache_gives_exactly_what_the_full_command_printed(project: Path, capsys, fmt: str) -> None:
    assert fast(["--format", fmt]) is None  # nothing cached yet
    printed = full(capsys, ["--format", fmt])
    assert "@127.0.0.1:" in printed  # the default token is in the proxy URL
    assert fast(["--format", fmt]) == printed
    assert fast([f"--format={fmt}", "-c", "cordon.toml"]) == printed  # same scope, spelled differently
    cache = resolve_scope(None, None, env=os.environ, cwd=project).state_dir / envfast.CACHE_NAME
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600  # it holds the proxy token


def test_an_edit_of_cordon_toml_or_tokens_toml_makes_the_cache_stale(project: Path, capsys) -> None:
    printed = full(capsys, [])
    config = project / "cordon.toml"
    text = config.read_text()
    port = tomllib.loads(text)["listen"]
    config.write_text(text.replace(f"listen = {port}", f"listen = {int(port) + 1}"))
    assert fast([]) is None
    again = full(capsys, [])
    assert f":{int(port) + 1}'" in again and again != printed
    assert fast([]) == again
    paths = resolve_scope(None, None, env=os.environ, cwd=project)
    TokenStore.open(paths.tokens_path).rotate("default")
    assert fast([]) is None  # a rotated token is never served from the cache
    rotated = full(capsys, [])
    assert rotated != again and fast([]) == rotated
    paths.tokens_path.unlink()
    assert fast([]) is None
    capsys.readouterr()
    assert env_main([]) == 1  # no token: an error naming the fix, never a URL without one
    assert "no proxy tokens for this scope" in capsys.readouterr().err


def test_the_cache_is_per_token_and_per_config_file(project: Path, capsys) -> None:
    full(capsys, [])
    assert fast(["--token", "other"]) is None
    (project / "b.toml").write_text((project / "cordon.toml").read_text())
    assert fast(["-c", "b.toml"]) is None  # same directory, same state dir, another file


def test_a_missing_config_is_never_answered_from_the_cache(project: Path, capsys) -> None:
    full(capsys, [])
    (project / "cordon.toml").unlink()
    assert fast([]) is None
    capsys.readouterr()
    assert env_main([]) == 1
    assert "no cordon.toml in " in capsys.readouterr().err


def test_a_tampered_cache_is_ignored(project: Path, capsys) -> None:
    full(capsys, [])
    cache = resolve_scope(None, None, env=os.environ, cwd=project).state_dir / envfast.CACHE_NAME
    cache.write_text(cache.read_text().replace("\nenv ", "\nbogus ", 1))
    assert fast([]) is None
    cache.write_text("cordon-env-cache 0\n")
    assert fast([]) is None


def test_values_that_do_not_fit_on_a_line_are_not_cached() -> None:
    assert envfast.cache_text("/p/cordon.toml", "default", "absent", "absent", {"A": "x\ny"}) is None
    assert envfast.cache_text("/p\n/cordon.toml", "default", "absent", "absent", {"A": "x"}) is None


def test_the_entry_point_answers_from_the_cache_without_parsing_toml(project: Path, capsys) -> None:
    printed = full(capsys, [])
    code = (
        "import sys\nfrom cordon_setup.envfast import main\nrc = main([])\n"
        "heavy = sorted({'tomllib', 'argparse', 'pathlib', 'cordon_setup.cli'} & set(sys.modules))\n"
        "sys.stderr.write(repr(heavy))\nsys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout == printed
    assert done.stderr == "[]"
    json_out = subprocess.run([sys.executable, "-c", code.replace("main([])", "main(['--json'])")],
                              capture_output=True, text=True, timeout=30)
    assert json.loads(json_out.stdout)["HTTPS_PROXY"] in printed  # json: the full command answers
    assert "tomllib" in json_out.stderr


def cache_path(project: Path) -> Path:
    return resolve_scope(None, None, env=os.environ, cwd=project).state_dir / envfast.CACHE_NAME


def test_a_file_changed_a_moment_ago_is_not_cached(project: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(envfast, "RACY_SECONDS", 3600.0)  # setup wrote both files just now
    full(capsys, [])
    assert not cache_path(project).exists()
    monkeypatch.setattr(envfast, "RACY_SECONDS", 0.0)
    full(capsys, [])
    assert cache_path(project).exists()


def test_an_in_place_edit_that_restores_size_and_mtime_is_still_seen(project: Path, capsys) -> None:
    full(capsys, [])
    config = project / "cordon.toml"
    before = config.stat()
    port = tomllib.loads(config.read_text())["listen"]
    with open(config, "r+", encoding="utf-8") as handle:  # same inode, same size
        text = handle.read().replace(f"listen = {port}", f"listen = {port + 1}")
        handle.seek(0)
        handle.write(text)
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `cp -p` or `touch -r` would
    assert config.stat().st_size == before.st_size and config.stat().st_mtime_ns == before.st_mtime_ns
    assert fast([]) is None  # the ctime moved
    assert f":{port + 1}'" in full(capsys, [])


def test_a_chmod_of_tokens_toml_is_seen(project: Path, capsys) -> None:
    full(capsys, [])
    tokens = resolve_scope(None, None, env=os.environ, cwd=project).tokens_path
    tokens.chmod(0o644)
    assert fast([]) is None
    capsys.readouterr()
    assert env_main([]) == 1  # the full command refuses a tokens.toml others can read
    assert "tokens.toml" in capsys.readouterr().err


def test_a_cache_others_can_read_or_write_is_not_used(project: Path, capsys) -> None:
    printed = full(capsys, [])
    cache = cache_path(project)
    cache.chmod(0o644)
    assert fast([]) is None
    assert full(capsys, []) == printed
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600 and fast([]) == printed  # rewritten as cordon writes it


def test_no_state_dir_no_cache_and_nothing_created(tmp_path: Path, monkeypatch, capsys) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "cordon.toml").write_text("listen = 6999\n")
    monkeypatch.chdir(bare)
    assert env_main([]) == 1  # not set up: no tokens
    assert "no proxy tokens" in capsys.readouterr().err
    assert not (tmp_path / "home" / ".config" / "cordon").exists()  # a read command creates nothing
    assert fast([]) is None

