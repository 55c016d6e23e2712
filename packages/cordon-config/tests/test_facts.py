"""The lenient cordon.toml reader: the facts tools need while a route is half-edited, and the approved hosts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cordon_config import load_config
from cordon_config.approvals import approve
from cordon_config.facts import FactsError, approved_hosts, read_facts
from cordon_config.scope import ScopePaths, resolve_scope
from cordon_testing.config import route_block

SECRET = 'source = "env"\nvar = "K"'


@pytest.fixture
def scope(tmp_path: Path) -> ScopePaths:
    project = tmp_path / "proj"
    project.mkdir()
    env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config")}
    return resolve_scope(None, None, env=env, cwd=project)


def test_missing_file_has_no_facts(scope: ScopePaths) -> None:
    assert read_facts(scope) is None


def test_half_edited_route_is_passed_over_and_the_rest_is_read(scope: ScopePaths) -> None:
    scope.config_path.write_text(
        'listen = 7001\n[tls]\nca_cert_path = "tls/ca.pem"\n\n' + route_block("a", "API.Example.", SECRET)
        + '[[routes]]\nname = "half"\n[routes.match]\nhost = 5\n'
        + '[[listeners]]\nname = "db"\nport = 7002\n[listeners.auth]\nusername = "app"\n'
    )
    facts = read_facts(scope)
    assert facts is not None
    assert facts.listen == 7001 and facts.port() == 7001
    assert facts.ca_cert == scope.config_path.parent / "tls/ca.pem" and facts.ca_key == scope.ca_key
    assert facts.route_hosts == (("a", "api.example"),) and facts.routes == {"api.example": "a"}
    assert facts.listeners == {"db": (7002, "app")} and facts.listener_tls


@pytest.mark.parametrize(("text", "message"), [
    ("listen = [\n", "is not valid TOML"),
    ('tls = "x"\n', "[tls] must be a table"),
    ("[tls]\nca_key_path = 3\n", "[tls] ca_key_path must be a non-empty string path"),
])
def test_what_no_caller_can_do_without_is_one_line(scope: ScopePaths, text: str, message: str) -> None:
    scope.config_path.write_text(text)
    with pytest.raises(FactsError, match=re.escape(message)) as caught:
        read_facts(scope)
    assert "\n" not in str(caught.value) and str(scope.config_path) in str(caught.value)


def test_a_bad_listen_is_an_error_only_for_who_asks_for_the_port(scope: ScopePaths) -> None:
    scope.config_path.write_text('listen = "6790"\n')
    facts = read_facts(scope)
    assert facts is not None and facts.listen == 6790
    with pytest.raises(FactsError, match="listen must be a port number 1-65535, not '6790'"):
        facts.port()
    scope.config_path.write_text("")
    facts = read_facts(scope, default_listen=7000)
    assert facts is not None and facts.port() == 7000


def test_only_approved_route_hosts_are_permitted(scope: ScopePaths) -> None:
    head = f'listen = 6790\n[tls]\nenabled = true\nca_cert_path = "{scope.ca_cert}"\nca_key_path = "{scope.ca_key}"\n\n'
    scope.config_path.write_text(head + route_block("a", "a.example", SECRET) + route_block("b", "b.example", SECRET))
    facts = read_facts(scope)
    assert facts is not None and approved_hosts(facts, scope) == []  # no record yet: no host
    approve(scope, load_config(scope.config_path))
    assert approved_hosts(facts, scope) == ["a.example", "b.example"]
    # the agent points route b elsewhere and adds a route, one of them half-written: neither host counts
    scope.config_path.write_text(head + route_block("a", "a.example", SECRET) + route_block("b", "evil.example", SECRET)
                                 + '[[routes]]\nname = "c"\n[routes.match]\nhost = "c.example"\n')
    facts = read_facts(scope)
    assert facts is not None and approved_hosts(facts, scope) == ["a.example"]
    scope.state_dir.joinpath("approvals.json").write_text("{}")  # a record that does not verify approves nothing
    assert approved_hosts(facts, scope) == []
