"""Secret sources (env, file, command, 1password via an `op` stand-in, keyring in memory), masking, cache."""

from __future__ import annotations

import base64
import copy
import os
import pickle
import secrets as pysecrets
import stat
import sys
import textwrap
from pathlib import Path

import pytest
from cordon_config import Config, HeaderAuth, Route, SecretRef, parse_config
from cordon_config.secrets import (
    Secret,
    SecretCache,
    SecretUnavailable,
    check_secrets,
    fetch_secret,
    header_value_problem,
)
from cordon_testing.config import MemoryKeyring


def canary() -> str:
    return "canary-" + pysecrets.token_hex(12)


def make(tmp_path: Path, source: str, op_path: str | None = None, **fields: object) -> tuple[Route, Config]:
    route = Route("r1", "api.test", HeaderAuth("x-api-key"), SecretRef(source, fields))  # type: ignore[arg-type]
    text = "listen = 6790\n"
    if op_path:
        text += f'[secrets]\nop_path = "{op_path}"\n'
    config = parse_config(text, tmp_path / "cordon.toml")
    return route, config


def assert_no_leak(value: str, *texts: str) -> None:
    encoded = base64.b64encode(value.encode()).decode()
    for text in texts:
        assert value not in text and encoded not in text


# -- Secret ---------------------------------------------------------------------------------------------------


def test_secret_is_masked_everywhere() -> None:
    value = canary()
    secret = Secret(value)
    assert secret.reveal() == value
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>40}", "{}".format(secret),  # noqa: UP032
                 repr([secret]), repr({"k": secret})):
        assert value not in text
    assert repr(secret) == "Secret('***')"
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert copy.deepcopy(secret) is secret
    assert secret == Secret(value) and secret != Secret("other")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"), ("a\r\nb", "line break"), ("ab\n", "line break"), ("a\0b", "NUL"), (" ab", "whitespace"),
        ("ab\t", "whitespace"), ("é", "non-ASCII"), ("a\x01b", "control"), ("a\x7fb", "control"),
    ],
)
def test_header_value_problems(value: str, reason: str) -> None:
    problem = header_value_problem(value)
    assert problem is not None and reason in problem


def test_header_value_ok() -> None:
    assert header_value_problem("sk-abc DEF\tghi~!") is None


# -- env / file / command ------------------------------------------------------------------------------------


def test_env_source(tmp_path: Path) -> None:
    value = canary()
    route, config = make(tmp_path, "env", var="CORDON_T_KEY")
    assert fetch_secret(route, config=config, env={"CORDON_T_KEY": value}).reveal() == value
    with pytest.raises(SecretUnavailable) as caught:
        fetch_secret(route, config=config, env={})
    assert caught.value.route_name == "r1" and "CORDON_T_KEY is not set" in str(caught.value)


def test_env_value_with_newline_is_refused_without_leaking(tmp_path: Path) -> None:
    value = canary()
    route, config = make(tmp_path, "env", var="K")
    with pytest.raises(SecretUnavailable) as caught:
        fetch_secret(route, config=config, env={"K": value + "\r\nX-Evil: 1"})
    assert "line break" in caught.value.reason and "'r1'" in str(caught.value)
    assert_no_leak(value, str(caught.value), repr(caught.value), caught.value.reason)


def test_file_source(tmp_path: Path) -> None:
    value = canary()
    path = tmp_path / "secret"
    path.write_text(value + "\n")
    path.chmod(0o600)
    route, config = make(tmp_path, "file", path=str(path))
    assert fetch_secret(route, config=config).reveal() == value
    path.write_text(value + "\n\n")
    with pytest.raises(SecretUnavailable, match="line break"):
        fetch_secret(route, config=config)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_file_source_refuses_group_or_world_access(tmp_path: Path, mode: int) -> None:
    value = canary()
    path = tmp_path / "secret"
    path.write_text(value)
    path.chmod(mode)
    route, config = make(tmp_path, "file", path=str(path))
    with pytest.raises(SecretUnavailable) as caught:
        fetch_secret(route, config=config)
    assert f"{mode:04o}" in caught.value.reason and caught.value.hint == f"run chmod 600 {path}"
    assert_no_leak(value, str(caught.value))


def test_file_source_missing_and_directory(tmp_path: Path) -> None:
    route, config = make(tmp_path, "file", path=str(tmp_path / "none"))
    with pytest.raises(SecretUnavailable, match="does not exist"):
        fetch_secret(route, config=config)
    directory = tmp_path / "d"
    directory.mkdir(mode=0o700)
    route, config = make(tmp_path, "file", path=str(directory))
    with pytest.raises(SecretUnavailable, match=r"not a regular file|cannot open"):
        fetch_secret(route, config=config)


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def test_command_source(tmp_path: Path) -> None:
    value = canary()
    tool = script(tmp_path, "helper", f"import sys\nassert sys.argv[1:] == ['auth', 'token']\nprint({value!r})\n")
    route, config = make(tmp_path, "command", argv=(str(tool), "auth", "token"))
    assert fetch_secret(route, config=config).reveal() == value


def test_command_failure_shows_exit_code_and_stderr_never_stdout(tmp_path: Path) -> None:
    value = canary()
    tool = script(tmp_path, "helper", f"""\
        import sys
        print({value!r})
        sys.stderr.write("not logged in; token was " + {value!r} + "\\n")
        sys.exit(3)
    """)
    route, config = make(tmp_path, "command", argv=(str(tool),))
    with pytest.raises(SecretUnavailable) as caught:
        fetch_secret(route, config=config)
    assert "exited with code 3" in caught.value.reason and "not logged in" in caught.value.reason
    assert_no_leak(value, str(caught.value), repr(caught.value))


def test_command_timeout_missing_and_long_stderr(tmp_path: Path) -> None:
    slow = script(tmp_path, "slow", "import time\ntime.sleep(30)\n")
    route, config = make(tmp_path, "command", argv=(str(slow),))
    with pytest.raises(SecretUnavailable, match=r"timed out after 0.5 s"):
        fetch_secret(route, config=config, timeout=0.5)
    route, config = make(tmp_path, "command", argv=(str(tmp_path / "absent"),))
    with pytest.raises(SecretUnavailable, match="not found"):
        fetch_secret(route, config=config)
    noisy = script(tmp_path, "noisy", "import sys\nsys.stderr.write('e' * 5000)\nsys.exit(1)\n")
    route, config = make(tmp_path, "command", argv=(str(noisy),))
    with pytest.raises(SecretUnavailable) as caught:
        fetch_secret(route, config=config)
    assert len(caught.value.reason) < 600 and caught.value.reason.endswith("…")


def test_command_runs_without_a_shell(tmp_path: Path) -> None:
    route, config = make(tmp_path, "command", argv=("echo $HOME; true",))
    with pytest.raises(SecretUnavailable, match="not found"):
        fetch_secret(route, config=config)


# -- 1password via an `op` stand-in ---------------------------------------------------------------------------

OP_STANDIN = """\
import os, sys, time
args = sys.argv[1:]
mode = os.environ.get("OP_MODE", "ok")
log = os.environ.get("OP_LOG")
if log:
    with open(log, "a") as f:
        f.write(" ".join(args) + "\\n")
if args[:1] != ["read"]:
    sys.stderr.write("[ERROR] unknown command\\n"); sys.exit(1)
ref = args[1]
if mode == "slow":
    time.sleep(30)
if mode == "locked":
    sys.stderr.write("[ERROR] 2026/11/23 could not read secret '" + ref + "': error initializing client: "
                     "You are not currently signed in. Please run `op signin --help` for instructions\\n")
    sys.exit(1)
if ref != "op://Private/OpenAI/credential":
    sys.stderr.write("[ERROR] could not read secret '" + ref + "': could not get item: \\"Nope\\" isn't an item "
                     "in the \\"Private\\" vault\\n")
    sys.exit(1)
sys.stdout.write(os.environ["OP_VALUE"])
"""


@pytest.fixture
def op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tool = script(tmp_path, "op", OP_STANDIN)
    monkeypatch.setenv("PATH", f"{tool.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("OP_LOG", str(tmp_path / "op.log"))
    return tool


def onepassword(tmp_path: Path, item: str = "OpenAI", **extra: str) -> tuple[Route, Config]:
    return make(tmp_path, "1password", vault="Private", item=item, field="credential", **extra)


def test_op_signed_in(tmp_path: Path, op: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    value = canary()
    monkeypatch.setenv("OP_VALUE", value)
    route, config = onepassword(tmp_path, account="team.1password.com")
    assert fetch_secret(route, config=config).reveal() == value
    log = (tmp_path / "op.log").read_text()
    assert "read op://Private/OpenAI/credential" in log and "--account team.1password.com" in log


def test_op_locked_not_signed_in(tmp_path: Path, op: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OP_MODE", "locked")
    route, config = onepassword(tmp_path)
    with pytest.raises(SecretUnavailable) as caught:
        fetch_secret(route, config=config)
    assert "locked or not signed in" in caught.value.reason and "op signin" in (caught.value.hint or "")


def test_op_missing_item(tmp_path: Path, op: Path) -> None:
    route, config = onepassword(tmp_path, item="Nope")
    with pytest.raises(SecretUnavailable, match="item not found: op://Private/Nope/credential"):
        fetch_secret(route, config=config)


def test_op_slow_times_out(tmp_path: Path, op: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OP_MODE", "slow")
    route, config = onepassword(tmp_path)
    with pytest.raises(SecretUnavailable, match=r"timed out after 0\.5 s"):
        fetch_secret(route, config=config, timeout=0.5)


def test_op_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    route, config = onepassword(tmp_path)
    with pytest.raises(SecretUnavailable, match="`op` is not installed"):
        fetch_secret(route, config=config)
    route, config = make(tmp_path, "1password", op_path=str(tmp_path / "op-missing"), vault="v", item="i", field="f")
    with pytest.raises(SecretUnavailable, match="op_path"):
        fetch_secret(route, config=config)


def test_op_path_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    value = canary()
    tool = script(tmp_path, "my-op", OP_STANDIN)
    monkeypatch.setenv("OP_VALUE", value)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    route, config = make(tmp_path, "1password", op_path=str(tool), vault="Private", item="OpenAI",
                         field="credential")
    assert fetch_secret(route, config=config).reveal() == value


# -- keyring (in memory; the real Secret Service is in test_keyring_real.py) ---------------------------------


def test_keyring_source(tmp_path: Path, fake_keyring: MemoryKeyring) -> None:
    value = canary()
    fake_keyring.set_password("cordon", "openai", value)
    route, config = make(tmp_path, "keyring", account="openai", service="cordon")
    assert fetch_secret(route, config=config).reveal() == value
    route, config = make(tmp_path, "keyring", account="missing", service="cordon")
    with pytest.raises(SecretUnavailable) as caught:
        fetch_secret(route, config=config)
    assert "no keyring entry for service 'cordon' account 'missing'" in caught.value.reason
    assert caught.value.hint == "run `cordon secret set r1`"


def test_keyring_go_keyring_decoding(tmp_path: Path, fake_keyring: MemoryKeyring) -> None:
    value = canary()
    fake_keyring.set_password("gh:github.com", "me", "go-keyring-base64:" + base64.b64encode(value.encode()).decode())
    fake_keyring.set_password("hex", "me", "go-keyring-encoded:" + value.encode().hex())
    fake_keyring.set_password("plain", "me", value)
    fake_keyring.set_password("broken", "me", "go-keyring-base64:@@@")
    for service in ("gh:github.com", "hex", "plain"):
        route, config = make(tmp_path, "keyring", account="me", service=service, decode="go-keyring")
        assert fetch_secret(route, config=config).reveal() == value
    route, config = make(tmp_path, "keyring", account="me", service="broken", decode="go-keyring")
    with pytest.raises(SecretUnavailable, match="does not decode"):
        fetch_secret(route, config=config)


def test_keyring_fail_backend(tmp_path: Path) -> None:
    import keyring
    from keyring.backends import fail

    keyring.set_keyring(fail.Keyring())
    route, config = make(tmp_path, "keyring", account="a", service="cordon")
    with pytest.raises(SecretUnavailable, match="no keyring backend is available"):
        fetch_secret(route, config=config)


# -- check and cache -----------------------------------------------------------------------------------------


def test_check_secrets_reports_every_failure(tmp_path: Path, fake_keyring: MemoryKeyring,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    value = canary()
    fake_keyring.set_password("cordon", "good", value)
    monkeypatch.delenv("NOT_SET_VAR", raising=False)
    secret_file = tmp_path / "s"
    secret_file.write_text(value)
    os.chmod(secret_file, stat.S_IRUSR | stat.S_IRGRP)
    text = ('listen = 6790\n[tls]\nca_cert_path = "/c"\nca_key_path = "/k"\n'
            + "".join(
                f'[[routes]]\nname = "{n}"\n[routes.match]\nhost = "{n}.test"\n[routes.auth]\ntype = "header"\n'
                f'header_name = "x-k"\n[routes.auth.secret]\n{s}\n'
                for n, s in [("good", 'source = "keyring"\naccount = "good"'),
                             ("nokey", 'source = "keyring"\naccount = "nokey"'),
                             ("noenv", 'source = "env"\nvar = "NOT_SET_VAR"'),
                             ("loose", f'source = "file"\npath = "{secret_file}"')]))
    config = parse_config(text, tmp_path / "cordon.toml")
    failures = check_secrets(config)
    assert [name for name, _ in failures] == ["nokey", "noenv", "loose"]
    assert_no_leak(value, repr(failures))


def test_secret_cache_ttl_and_invalidate(tmp_path: Path) -> None:
    calls: list[str] = []
    now = [100.0]

    def fetch(route: Route, *, config: Config) -> Secret:
        calls.append(route.name)
        return Secret(f"v{len(calls)}")

    route, config = make(tmp_path, "env", var="X")
    cache = SecretCache(10, fetch=fetch, clock=lambda: now[0])
    assert cache.get(route, config).reveal() == "v1"
    now[0] += 9
    assert cache.get(route, config).reveal() == "v1"
    now[0] += 2
    assert cache.get(route, config).reveal() == "v2"
    cache.invalidate("r1")
    assert cache.get(route, config).reveal() == "v3"
    every = SecretCache(0, fetch=fetch)
    every.get(route, config)
    every.get(route, config)
    assert len(calls) == 5


def test_secret_cache_peek_never_fetches(tmp_path: Path) -> None:
    calls: list[str] = []
    now = [100.0]

    def fetch(route: Route, *, config: Config) -> Secret:
        calls.append(route.name)
        return Secret("v")

    route, config = make(tmp_path, "env", var="X")
    cache = SecretCache(10, fetch=fetch, clock=lambda: now[0])
    assert cache.peek(route) is None
    assert cache.get(route, config).reveal() == "v"
    assert cache.peek(route).reveal() == "v"  # type: ignore[union-attr]
    now[0] += 11
    assert cache.peek(route) is None  # expired
    cache.get(route, config)
    cache.invalidate(route.name)
    assert cache.peek(route) is None
    assert SecretCache(0, fetch=fetch).peek(route) is None  # ttl 0: every request fetches
    assert calls == ["r1", "r1"]


def test_secret_cache_get_nowait_fetches_only_sources_that_never_block(tmp_path: Path) -> None:
    calls: list[str] = []

    def fetch(route: Route, *, config: Config) -> Secret:
        calls.append(route.secret.source)
        return Secret("v")

    env_route, config = make(tmp_path, "env", var="X")
    file_route = Route("r2", "b.test", HeaderAuth("x-api-key"), SecretRef("file", {"path": "/x"}))
    command_route = Route("r3", "c.test", HeaderAuth("x-api-key"), SecretRef("command", {"argv": ("true",)}))
    cache = SecretCache(10, fetch=fetch)
    assert cache.get_nowait(env_route, config).reveal() == "v"  # type: ignore[union-attr]
    assert cache.get_nowait(file_route, config).reveal() == "v"  # type: ignore[union-attr]
    assert cache.get_nowait(command_route, config) is None  # would block: the caller uses a thread
    assert calls == ["env", "file"]
    cache.get(command_route, config)
    assert cache.get_nowait(command_route, config).reveal() == "v"  # type: ignore[union-attr]  # a fresh hit
    assert calls == ["env", "file", "command"]


def test_secret_cache_get_nowait_raises_like_get(tmp_path: Path) -> None:
    route, config = make(tmp_path, "env", var="CORDON_NOWAIT_UNSET")
    os.environ.pop("CORDON_NOWAIT_UNSET", None)
    with pytest.raises(SecretUnavailable):
        SecretCache(10).get_nowait(route, config)


def test_secret_cache_does_not_cache_failures(tmp_path: Path) -> None:
    route, config = make(tmp_path, "env", var="CORDON_CACHE_T")
    cache = SecretCache(60)
    os.environ.pop("CORDON_CACHE_T", None)
    with pytest.raises(SecretUnavailable):
        cache.get(route, config)
    os.environ["CORDON_CACHE_T"] = "v"
    try:
        assert cache.get(route, config).reveal() == "v"
    finally:
        del os.environ["CORDON_CACHE_T"]
