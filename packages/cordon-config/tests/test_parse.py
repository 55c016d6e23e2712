"""Validation of cordon.toml: data-driven invalid configs, valid round trips, the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomlkit
from cordon_config import BasicAuth, ConfigError, HeaderAuth, load_config, parse_config
from cordon_config.errors import ConfigNotFound
from cordon_config.locate import key_lines

DATA = Path(__file__).parent / "data"
INVALID = sorted((DATA / "invalid").glob("*.toml"))
VALID = sorted((DATA / "valid").glob("*.toml"))


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_config_reports_expected_message(path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    report = str(caught.value).replace(str(path), path.name)
    assert report + "\n" == path.with_suffix(".expected").read_text(encoding="utf-8")
    for problem in caught.value.problems:
        assert problem.file == path
        assert problem.message


def test_every_invalid_config_has_an_expectation() -> None:
    expected = {p.stem for p in (DATA / "invalid").glob("*.expected")}
    assert expected == {p.stem for p in INVALID}


def test_problems_name_line_route_and_key() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(DATA / "invalid" / "scheme_required_for_authorization.toml")
    (problem,) = caught.value.problems
    assert (problem.line, problem.route, problem.key) == (14, '"openai"', "auth.scheme")
    assert problem.hint == 'add scheme = "Bearer"'


def test_many_problems_are_all_reported_in_line_order() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(DATA / "invalid" / "many_problems_reported_together.toml")
    lines = [p.line for p in caught.value.problems]
    assert len(lines) == 6 and lines == sorted(lines)  # type: ignore[type-var]
    assert "6 problems" in caught.value.first_line


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_config_loads_and_round_trips_byte_identical(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    load_config(path)
    assert tomlkit.dumps(tomlkit.parse(text)) == text


def test_every_key_model() -> None:
    path = DATA / "valid" / "every_key.toml"
    config = load_config(path)
    assert config.listen == 7001 and config.secret_ttl == 0.0
    assert config.tls.ca_cert_path == path.parent / "certs" / "ca-cert.pem"
    assert config.tls.upstream_ca_file == Path("/etc/ssl/extra-roots.pem") and config.tls.name_constraints
    assert config.op_path == "/opt/1password/op"
    assert (config.limits.header_bytes, config.limits.connect_timeout, config.limits.max_connections) == (
        32768, 5.0, 256)
    names = [route.name for route in config.routes]
    assert names == ["openai", "anthropic", "gh.api", "internal_1", "filed"]
    openai, anthropic, gh, internal, filed = config.routes
    assert openai.host == "api.openai.com" and openai.auth == HeaderAuth("Authorization", "Bearer")
    assert dict(openai.secret.fields) == {"account": "openai", "service": "my-tools", "decode": "go-keyring"}
    assert anthropic.port == 443 and anthropic.secret.source == "1password"
    assert anthropic.secret.fields["account"] == "my.1password.com"
    assert gh.auth == BasicAuth("x-access-token") and gh.secret.fields["argv"] == ("gh", "auth", "token")
    assert internal.host == "xn--bcher-kva.test"
    assert filed.secret.fields["path"] == str(path.parent / "secrets" / "files-token")


def test_defaults(tmp_path: Path) -> None:
    config = parse_config("listen = 6790\n", tmp_path / "cordon.toml")
    assert config.routes == () and config.secret_ttl == 10.0 and config.op_path is None
    assert config.tls.enabled is False
    assert config.limits.header_bytes == 65536 and config.limits.response_header_timeout == 300.0
    spec = load_config(DATA / "valid" / "spec_example.toml")
    assert spec.routes[0].secret.fields["service"] == "cordon"


def test_route_for_host_canonicalises(tmp_path: Path) -> None:
    config = load_config(DATA / "valid" / "every_key.toml")
    assert config.route_for_host("API.OPENAI.COM.").name == "openai"  # type: ignore[union-attr]
    assert config.route_for_host("bücher.test").name == "internal_1"  # type: ignore[union-attr]
    assert config.route_for_host("api.anthropic.com", 443) is not None
    assert config.route_for_host("api.anthropic.com", 8443) is None
    assert config.route_for_host("other.test") is None
    assert config.route_for_host("not a host") is None


def test_same_host_on_different_ports_is_allowed(tmp_path: Path) -> None:
    block = ('[[routes]]\nname = "{n}"\n[routes.match]\nhost = "a.test"\nport = {p}\n[routes.auth]\ntype = "header"\n'
             'header_name = "x-k"\n[routes.auth.secret]\nsource = "env"\nvar = "K"\n')
    text = ('listen = 1\n[tls]\nca_cert_path = "/c"\nca_key_path = "/k"\n' + block.format(n="a", p=443)
            + block.format(n="b", p=8443))
    config = parse_config(text, tmp_path / "c.toml")
    assert [r.port for r in config.routes] == [443, 8443]


def test_missing_file_and_bad_utf8(tmp_path: Path) -> None:
    with pytest.raises(ConfigNotFound) as caught:
        load_config(tmp_path / "nope.toml")
    assert "file not found" in str(caught.value) and "cordon setup" in str(caught.value)
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"listen = 6790\n# \xff\n")
    with pytest.raises(ConfigError, match=r"bad.toml:2: not valid UTF-8"):
        load_config(bad)


def test_key_lines_handles_multiline_values_and_inline_tables() -> None:
    text = ('a = """\nx = 1\n"""\nb = [\n  "[not a table]",\n]\n[t]\nc = { d = 1 }\n[[r]]\n[[r]]\n[r.s]\ne = 2\n')
    lines = key_lines(text)
    assert lines[("a",)] == 1 and ("x",) not in lines and lines[("b",)] == 4
    assert lines[("t", "c", "d")] == 8
    assert lines[("r", 1, "s", "e")] == 12 and lines[("r", 0)] == 9


def test_importing_cordon_config_does_not_import_keyring() -> None:
    import subprocess
    import sys

    code = ("import sys, cordon_config, cordon_config.secrets, cordon_config.edit, cordon_config.tokens, "
            "cordon_config.cli; print('keyring' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"


def test_valid_config_is_parsed_without_tomlkit_or_difflib() -> None:
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from cordon_config import load_config; "
            f"load_config(Path({str(DATA / 'valid' / 'every_key.toml')!r})); "
            "print(sorted(m for m in ('tomlkit', 'difflib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_text_tomllib_rejects_falls_back_to_tomlkit(tmp_path: Path) -> None:
    # a multi-line inline table with a trailing comma is TOML 1.1: tomlkit accepts it, Python 3.11's tomllib
    # does not, so it reaches the tomlkit fallback and still loads as before.
    text = ('listen = 6791\n[limits]\nheader_bytes = 4096\n[[routes]]\nname = "api"\n'
            'match = {\n  host = "api.test",\n}\nauth = { type = "header", header_name = "x-api-key", '
            'secret = { source = "env", var = "API_KEY" } }\n[tls]\nenabled = true\n'
            'ca_cert_path = "/ca.pem"\nca_key_path = "/ca.key"\n')
    config = parse_config(text, tmp_path / "cordon.toml")
    assert config.listen == 6791 and config.limits.header_bytes == 4096
    (route,) = config.routes
    assert route.host == "api.test" and route.auth == HeaderAuth("x-api-key", None)
    assert dict(route.secret.fields) == {"var": "API_KEY"}


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_mangled_configs_only_ever_raise_config_error(path: Path, tmp_path: Path) -> None:
    import random

    rng = random.Random(path.stem)
    original = path.read_text(encoding="utf-8")
    lines = original.splitlines(keepends=True)
    alphabet = '[]{}="\'.,#\n \\x0aé1-'
    for _ in range(300):
        mangled = list(lines)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(mangled))
            choice = rng.random()
            if choice < 0.3:
                del mangled[i]
                if not mangled:
                    mangled = [""]
            elif choice < 0.5:
                mangled.insert(i, mangled[i])
            else:
                line = mangled[i]
                j = rng.randrange(len(line) + 1)
                mangled[i] = line[:j] + rng.choice(alphabet) + line[j + 1:]
        try:
            parse_config("".join(mangled), tmp_path / "cordon.toml")
        except ConfigError as exc:
            assert exc.problems and str(exc)


def test_listeners_model() -> None:
    config = load_config(DATA / "valid" / "listeners.toml")
    prod, local, replica = config.listeners
    assert (prod.name, prod.port, prod.upstream_host, prod.upstream_port) == ("prod-db", 15432, "db.example.com", 5432)
    assert (prod.client_tls, prod.upstream_tls, prod.auth.username) == ("accept", "verify-full", "app_user")
    assert prod.secret.source == "1password" and prod.secret.fields["item"] == "Postgres Prod"
    assert (local.upstream_host, local.upstream_port, local.upstream) == ("::1", 5432, "[::1]:5432")
    assert (local.client_tls, local.upstream_tls) == ("disable", "disable")
    assert (replica.upstream, replica.client_tls, replica.upstream_tls) == ("10.1.2.3:6432", "require", "verify-full")
    assert replica.secret.fields["service"] == "cordon"
    assert config.listener("replica") is replica and config.listener("openai") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("db.example.com", ("db.example.com", 5432)),
    ("DB.Example.COM.:6000", ("db.example.com", 6000)),
    ("127.0.0.1:5433", ("127.0.0.1", 5433)),
    ("[::1]", ("::1", 5432)),
    ("[2001:DB8::1]:1", ("2001:db8::1", 1)),
])
def test_parse_upstream(text: str, expected: tuple[str, int]) -> None:
    from cordon_config.parse import parse_upstream

    assert parse_upstream(text) == expected


@pytest.mark.parametrize("text", ["", " db", "db:", "db:0", "db:x", "::1", "[::1", "[db]:1", "[::1]5432",
                                  "tcp://db:5432", "db/x", "-bad-.example"])
def test_parse_upstream_rejects(text: str) -> None:
    from cordon_config.parse import parse_upstream

    with pytest.raises(ValueError, match="upstream"):
        parse_upstream(text)
