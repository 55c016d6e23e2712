"""ensure_scope_ca and the cordon.routes_changed hook: a name-constrained CA follows the routed hosts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from cordon_ca import CertificateAuthority, ensure_scope_ca, load_or_create_ca, write_combined_bundle
from cordon_ca.scope_ca import on_routes_changed


def scope(tmp_path: Path) -> SimpleNamespace:
    certs = tmp_path / "state" / "certs"
    return SimpleNamespace(namespace="proj-12345678", ca_cert=certs / "ca-cert.pem", ca_key=certs / "ca-key.pem",
                           combined_bundle=certs / "combined-ca.pem")


def config(hosts: list[str], *, constrained: bool = True) -> SimpleNamespace:
    tls = SimpleNamespace(enabled=True, name_constraints=constrained, ca_cert_path=None, ca_key_path=None)
    return SimpleNamespace(tls=tls, routes=[SimpleNamespace(host=h) for h in hosts])


def test_a_constrained_ca_follows_the_hosts_and_the_bundle_is_rebuilt(tmp_path: Path) -> None:
    paths = scope(tmp_path)
    ca, written = ensure_scope_ca(paths.ca_cert, paths.ca_key, namespace=paths.namespace,
                                  permitted_hosts=["api.openai.com"])
    assert written and ca.permitted_hosts == frozenset({"api.openai.com"})
    write_combined_bundle(paths.ca_cert, paths.combined_bundle)
    old_pem = paths.ca_cert.read_bytes()
    lines = on_routes_changed(paths, config(["api.openai.com", "api.anthropic.com"]))
    assert lines and "re-issued the name-constrained CA for api.anthropic.com, api.openai.com" in lines[0]
    new = CertificateAuthority.load(paths.ca_cert, paths.ca_key)
    assert new.permitted_hosts == frozenset({"api.openai.com", "api.anthropic.com"})
    bundle = paths.combined_bundle.read_bytes()
    assert paths.ca_cert.read_bytes().strip() in bundle and old_pem.strip() not in bundle
    assert paths.ca_cert.with_name("ca-cert.pem.bak").read_bytes() == old_pem  # kept until restart
    assert on_routes_changed(paths, config(["api.anthropic.com", "api.openai.com"])) == []  # same set: no-op


def test_the_hook_leaves_an_unconstrained_or_missing_ca_alone(tmp_path: Path) -> None:
    paths = scope(tmp_path)
    assert on_routes_changed(paths, config(["a.test"])) == [] and not paths.ca_cert.exists()  # setup creates it
    load_or_create_ca(paths.ca_cert, paths.ca_key, namespace=paths.namespace)
    before = paths.ca_cert.read_bytes()
    assert on_routes_changed(paths, config(["a.test"], constrained=False)) == []
    assert paths.ca_cert.read_bytes() == before


def test_without_constraints_an_existing_ca_is_kept_as_it_is(tmp_path: Path) -> None:
    paths = scope(tmp_path)
    ensure_scope_ca(paths.ca_cert, paths.ca_key, namespace=paths.namespace, permitted_hosts=["a.test"])
    ca, written = ensure_scope_ca(paths.ca_cert, paths.ca_key, namespace=paths.namespace, permitted_hosts=None)
    assert not written and ca.permitted_hosts == frozenset({"a.test"})
