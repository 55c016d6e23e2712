"""The policy keys of cordon.toml: method/path rules and their one normalisation, rate limits, scrubbing,
[egress] and [audit]; and the lossless edits that change them."""

from __future__ import annotations

from pathlib import Path

import pytest
from cordon_config import load_config, parse_config
from cordon_config.edit import add_route, edit_egress, edit_route
from cordon_config.egress import EgressAllow, canonical_pattern
from cordon_config.model import AuditConfig, Egress, HeaderAuth, RateLimit, Route, SecretRef
from cordon_config.pathrules import (
    AmbiguousPath,
    PathRules,
    method_problem,
    normalise_path,
    path_rule_problem,
)

DATA = Path(__file__).parent / "data"
HEAD = 'listen = 1\n[tls]\nca_cert_path = "/a"\nca_key_path = "/b"\n'


def test_policy_model() -> None:
    config = load_config(DATA / "valid" / "policy.toml")
    assert config.egress == Egress("deny", ("github.com", "*.npmjs.org", "192.0.2.10"))
    assert config.audit == AuditConfig(True, 1048576, 3)
    openai, echo = config.routes
    assert openai.methods == ("POST", "GET")
    assert openai.paths == ("/v1/responses", "/v1/chat/completions", "/v1/models*")
    assert openai.rate_limit == RateLimit(120, 20) and openai.rate_limit.capacity == 20
    assert openai.scrub_responses
    assert echo.methods is None and echo.paths is None and not echo.scrub_responses
    assert echo.rate_limit == RateLimit(6) and echo.rate_limit.capacity == 6


def test_defaults_change_nothing() -> None:
    config = parse_config(HEAD, "/tmp/cordon.toml")
    assert config.egress == Egress("tunnel", ()) and config.audit == AuditConfig(True, 10 * 1024 * 1024, 5)


@pytest.mark.parametrize(("path", "normal"), [
    ("/v1/models", "/v1/models"),
    ("/", "/"),
    ("/v1/models/", "/v1/models/"),
    ("/v1/%6Dodels", "/v1/models"),             # an unreserved character, escaped: decoded
    ("/v1/%7euser", "/v1/~user"),
    ("/v1/a%2cb", "/v1/a%2Cb"),                 # a reserved one: kept, hex upper-cased
    ("/v1/file.name", "/v1/file.name"),
    ("/v1/.well-known", "/v1/.well-known"),
    ("/v1/%2Ehidden", "/v1/.hidden"),
])
def test_normalise_path(path: str, normal: str) -> None:
    assert normalise_path(path) == normal


@pytest.mark.parametrize(("path", "why"), [
    ("/v1/a%2Fb", "encoded slash"),
    ("/v1/a%2fb", "encoded slash"),
    ("/v1/a%5Cb", "encoded backslash"),
    ("/v1/a%252Fb", "encoded percent"),
    ("/v1/a%00", "control character"),
    ("/v1/a%0d%0a", "control character"),
    ("/v1/%zz", "malformed percent-escape"),
    ("/v1/%4", "malformed percent-escape"),
    ("/v1/%", "malformed percent-escape"),
    ("/v1/../admin", "dot segment"),
    ("/v1/./models", "dot segment"),
    ("/v1/..", "dot segment"),
    ("/v1/%2E%2E/admin", "dot segment"),
    ("/v1/.%2e/admin", "dot segment"),
    ("/v1//models", "empty segment"),
    ("/v1/models\\..\\admin", "backslash"),
    ("/v1/models/..;/admin", "semicolon"),
    ("/v1/models;x", "semicolon"),
    ("/v1/caf\u00e9", "visible ASCII"),
    ("/v1/a b", "visible ASCII"),
    ("v1/models", "does not start with /"),
    ("*", "does not start with /"),
])
def test_ambiguous_paths_are_refused(path: str, why: str) -> None:
    with pytest.raises(AmbiguousPath, match=why):
        normalise_path(path)


def test_path_rules_exact_and_prefix() -> None:
    rules = PathRules(["/v1/responses", "/v1/models*"])
    assert rules.allows("/v1/responses") and not rules.allows("/v1/responses/x")
    assert not rules.allows("/v1/responses/") and not rules.allows("/V1/responses")
    assert rules.allows("/v1/models") and rules.allows("/v1/models/gpt-4") and rules.allows("/v1/modelsx")
    assert not rules.allows("/v1/files")


@pytest.mark.parametrize(("rule", "problem"), [
    ("/v1/models*", None),
    ("/*", None),
    ("/v1/a%2Cb", None),
    ("/v1/a%2cb", "not in normal form"),
    ("*", 'must start with "/"'),
    ("/v1/*x", '"*" may only end a rule'),
    ("/v1/x?y", 'must not contain "?"'),
    ("/v1/../x", "dot segment"),
])
def test_path_rule_grammar(rule: str, problem: str | None) -> None:
    found = path_rule_problem(rule)
    assert (found is None) if problem is None else (found is not None and problem in found)


@pytest.mark.parametrize(("method", "ok"), [("POST", True), ("PROPFIND", True), ("post", False),
                                            ("CONNECT", False), ("GE T", False), ("", False)])
def test_method_grammar(method: str, ok: bool) -> None:
    assert (method_problem(method) is None) is ok


@pytest.mark.parametrize(("entry", "canonical"), [
    ("GitHub.com.", "github.com"),
    ("*.NPMjs.org", "*.npmjs.org"),
    ("bücher.test", "xn--bcher-kva.test"),
    ("192.0.2.1", "192.0.2.1"),
    ("[2001:db8::1]", "2001:db8::1"),
    ("2001:DB8:0::1", "2001:db8::1"),
])
def test_egress_entries(entry: str, canonical: str) -> None:
    assert canonical_pattern(entry) == canonical


@pytest.mark.parametrize("entry", ["", "*", "*.com", "*.*.a.com", "a.*.com", "github.com:443", "https://x.com",
                                   "bad_host!", "*."])
def test_egress_entries_refused(entry: str) -> None:
    with pytest.raises(ValueError):
        canonical_pattern(entry)


def test_egress_matching() -> None:
    allow = EgressAllow(["github.com", "*.npmjs.org", "192.0.2.1"])
    assert allow.allows_name("github.com") and not allow.allows_name("api.github.com")
    assert allow.allows_name("registry.npmjs.org") and allow.allows_name("a.b.npmjs.org")
    assert not allow.allows_name("npmjs.org") and not allow.allows_name("evilnpmjs.org")
    import ipaddress

    assert allow.allows_address(ipaddress.ip_address("192.0.2.1"))
    assert not allow.allows_address(ipaddress.ip_address("192.0.2.2"))


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "cordon.toml"
    path.write_text(HEAD + "\n# keep me\n", encoding="utf-8")
    return path


def test_add_and_edit_rules_limits_and_scrubbing_round_trip(tmp_path: Path) -> None:
    path = _config(tmp_path)
    route = Route("openai", "api.openai.com", HeaderAuth("Authorization", "Bearer"), SecretRef("env", {"var": "K"}),
                  methods=("POST",), paths=("/v1/responses", "/v1/models*"), rate_limit=RateLimit(60, 5),
                  scrub_responses=False)
    add_route(path, route)
    assert load_config(path).routes[0] == route
    text = path.read_text()
    assert "# keep me" in text and "[routes.limits]" in text and "scrub_responses = false" in text
    before, after = edit_route(path, "openai", methods=None, paths=("/v1/responses",), rate_limit=None,
                               scrub_responses=True)
    assert before == route
    assert (after.methods, after.paths, after.rate_limit, after.scrub_responses) == (
        None, ("/v1/responses",), None, True)
    assert load_config(path).routes[0] == after
    assert "[routes.limits]" not in path.read_text() and "methods" not in path.read_text()
    _, again = edit_route(path, "openai", rate_limit=RateLimit(10))
    assert again.rate_limit == RateLimit(10) and again.paths == ("/v1/responses",)


def test_edit_egress(tmp_path: Path) -> None:
    path = _config(tmp_path)
    unchanged = path.read_text()
    assert edit_egress(path, unrouted="tunnel") == (Egress(), Egress())
    assert path.read_text() == unchanged  # the default needs no table
    before, after = edit_egress(path, unrouted="deny", allow=["GitHub.com", "*.npmjs.org"])
    assert before == Egress() and after == Egress("deny", ("github.com", "*.npmjs.org"))
    _, after = edit_egress(path, allow=["pypi.org", "github.com"], disallow=["github.com."])
    assert after.allow == ("*.npmjs.org", "pypi.org")
    assert "# keep me" in path.read_text()
    with pytest.raises(ValueError):
        edit_egress(path, allow=["*.com"])


# -- approvals: the policy keys count only as a person approved them -----------------------------------------


def _scope(tmp_path: Path) -> tuple[Path, object]:
    from cordon_config.scope import resolve_scope

    path = _config(tmp_path)
    add_route(path, Route("openai", "api.openai.com", HeaderAuth("Authorization", "Bearer"),
                          SecretRef("env", {"var": "K"})))
    paths = resolve_scope(None, path, env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "x")},
                          cwd=tmp_path)
    from cordon_config.approvals import approve

    approve(paths, load_config(path))
    return path, paths


def _pending(path: Path, paths: object) -> dict[str, list[str]]:
    from cordon_config.approvals import check_approved

    return {entry.item.key: [change.name for change in entry.changes]
            for entry in check_approved(load_config(path), paths)}  # type: ignore[arg-type]


def test_defaults_need_no_approval_and_routes_approved_before_stay_approved(tmp_path: Path) -> None:
    from cordon_config.approvals import audit_item, egress_item, route_item

    path, paths = _scope(tmp_path)
    assert _pending(path, paths) == {}
    route = load_config(path).routes[0]
    assert not any(name.startswith(("match.", "limits.", "scrub")) for name in route_item(route).fields)
    assert egress_item(Egress()).fields == {} and audit_item(AuditConfig()).fields == {}


@pytest.mark.parametrize(("edit", "item", "fields"), [
    ('\n[egress]\nunrouted = "deny"\nallow = ["evil.test"]\n', "egress", ["unrouted", "allow"]),
    ("\n[audit]\nenabled = false\n", "audit", ["enabled"]),
    ("\n[audit]\nkeep_files = 1\nmax_file_bytes = 65536\n", "audit", ["max_file_bytes", "keep_files"]),
])
def test_hand_edits_of_egress_and_audit_need_approval(tmp_path: Path, edit: str, item: str,
                                                       fields: list[str]) -> None:
    path, paths = _scope(tmp_path)
    text = path.read_text()
    path.write_text(text.replace("\n[[routes]]", edit + "\n[[routes]]", 1))
    assert _pending(path, paths) == {item: fields}


def test_loosening_a_routes_rules_by_hand_needs_approval(tmp_path: Path) -> None:
    from cordon_config.approvals import record_change, route_item

    path, paths = _scope(tmp_path)
    before, after = edit_route(path, "openai", paths=("/v1/responses",), scrub_responses=False)
    record_change(paths, path, route_item(before), route_item(after))  # what `cordon route edit` does
    assert _pending(path, paths) == {}
    path.write_text(path.read_text().replace('paths = ["/v1/responses"]', 'paths = ["/*"]'))
    assert _pending(path, paths) == {"route:openai": ["match.paths"]}


def test_cordon_egress_records_the_approval_of_what_it_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from cordon_config import cli

    path, paths = _scope(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "x"))
    assert cli.egress_main(["mode", "deny", "--config", str(path)]) == 0
    assert cli.egress_main(["allow", "github.com", "*.npmjs.org", "--config", str(path)]) == 0
    assert cli.egress_main(["deny", "github.com", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert 'unrouted: "tunnel" -> "deny"' in out and "allowed: github.com, *.npmjs.org" in out
    assert "no longer allowed: github.com" in out
    assert load_config(path).egress == Egress("deny", ("*.npmjs.org",))
    assert _pending(path, paths) == {}
    assert cli.egress_main(["allow", "*.com", "--config", str(path)]) == 2
