"""ensure_scope_ca and the cordon.routes_changed hook: a name-constrained CA follows the routed hosts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from cordon_ca import (
    CertificateAuthority,
    authority,
    ensure_scope_ca,
    load_or_create_ca,
    write_combined_bundle,
)
from cordon_ca.scope_ca import on_routes_changed
from cryptography import x509
from cryptography.hazmat.primitives import hashes


def scope(tmp_path: Path) -> SimpleNamespace:
    certs = tmp_path / "state" / "certs"
    return SimpleNamespace(namespace="proj-12345678", ca_cert=certs / "ca-cert.pem", ca_key=certs / "ca-key.pem",
                           combined_bundle=certs / "combined-ca.pem")


def config(hosts: list[str], *, constrained: bool | None = True) -> SimpleNamespace:
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
    assert not paths.ca_key.with_name("ca-key.pem.bak").exists()  # the old key is destroyed, not kept
    assert on_routes_changed(paths, config(["api.anthropic.com", "api.openai.com"])) == []  # same set: no-op


def test_the_hook_leaves_an_unconstrained_or_missing_ca_alone(tmp_path: Path) -> None:
    paths = scope(tmp_path)
    assert on_routes_changed(paths, config(["a.test"])) == [] and not paths.ca_cert.exists()  # setup creates it
    load_or_create_ca(paths.ca_cert, paths.ca_key, namespace=paths.namespace)
    before = paths.ca_cert.read_bytes()
    assert on_routes_changed(paths, config(["a.test"], constrained=False)) == []
    assert paths.ca_cert.read_bytes() == before


def test_unset_constraints_keep_an_unconstrained_ca_and_constrain_a_new_one(tmp_path: Path) -> None:
    paths = scope(tmp_path)
    load_or_create_ca(paths.ca_cert, paths.ca_key, namespace=paths.namespace)  # cordon 0.1's default
    before = paths.ca_cert.read_bytes()
    assert on_routes_changed(paths, config(["a.test"], constrained=None)) == []
    assert paths.ca_cert.read_bytes() == before  # kept: doctor warns, `cordon ca generate --force` re-issues
    paths.ca_cert.unlink()
    paths.ca_key.unlink()
    ca, written = ensure_scope_ca(paths.ca_cert, paths.ca_key, namespace=paths.namespace, permitted_hosts=[],
                                  keep_unconstrained=True)
    assert written and ca.permitted_hosts == frozenset() and ca.exact_constraints  # no host until a route
    lines = on_routes_changed(paths, config(["a.test"], constrained=None))
    assert lines and "re-issued the name-constrained CA for a.test" in lines[0] and "old key is destroyed" in lines[0]


def test_a_ca_that_permits_subdomains_is_reissued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A constrained CA from cordon 0.1 permitted every name below the routed host: re-issued exactly."""
    paths = scope(tmp_path)
    real_build = authority.build_ca

    def without_exclusions(namespace, permitted_hosts=None, *, now=None):
        cert, key = real_build(namespace, permitted_hosts, now=now)
        nc = cert.extensions.get_extension_for_class(x509.NameConstraints).value
        excluded = [n for n in nc.excluded_subtrees if not isinstance(n, x509.DNSName)]
        builder = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
                   .public_key(cert.public_key()).serial_number(cert.serial_number)
                   .not_valid_before(cert.not_valid_before_utc).not_valid_after(cert.not_valid_after_utc))
        for ext in cert.extensions:
            value = ext.value
            if isinstance(value, x509.NameConstraints):
                value = x509.NameConstraints(permitted_subtrees=value.permitted_subtrees, excluded_subtrees=excluded)
            builder = builder.add_extension(value, critical=ext.critical)
        return builder.sign(key, hashes.SHA256()), key

    monkeypatch.setattr(authority, "build_ca", without_exclusions)
    old, _ = ensure_scope_ca(paths.ca_cert, paths.ca_key, namespace=paths.namespace, permitted_hosts=["a.test"])
    assert old.permitted_hosts == frozenset({"a.test"}) and not old.exact_constraints
    monkeypatch.undo()
    new, written = ensure_scope_ca(paths.ca_cert, paths.ca_key, namespace=paths.namespace, permitted_hosts=["a.test"])
    assert written and new.exact_constraints and new.fingerprint_sha256 != old.fingerprint_sha256


def test_turning_constraints_off_reissues_an_unconstrained_ca(tmp_path: Path) -> None:
    paths = scope(tmp_path)
    ensure_scope_ca(paths.ca_cert, paths.ca_key, namespace=paths.namespace, permitted_hosts=["a.test"])
    write_combined_bundle(paths.ca_cert, paths.combined_bundle)
    lines = on_routes_changed(paths, config(["a.test", "b.test"], constrained=False))
    assert lines and "re-issued the CA without name constraints" in lines[0]
    ca = CertificateAuthority.load(paths.ca_cert, paths.ca_key)
    assert ca.permitted_hosts is None  # b.test (and any new route) gets a leaf again
    assert paths.ca_cert.read_bytes().strip() in paths.combined_bundle.read_bytes()
    again, written = ensure_scope_ca(paths.ca_cert, paths.ca_key, namespace=paths.namespace, permitted_hosts=None)
    assert not written and again.permitted_hosts is None


def test_a_matching_ca_loads_without_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CA its user cannot lock (a directory it cannot write) still loads when it matches: the lock
    is only for writing. (Simulated: as root, every directory is writable.)"""
    paths = scope(tmp_path)
    ensure_scope_ca(paths.ca_cert, paths.ca_key, namespace=paths.namespace, permitted_hosts=["a.test"])

    def no_lock(path: object) -> object:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(authority, "locked", no_lock)
    ca, written = ensure_scope_ca(paths.ca_cert, paths.ca_key, namespace=paths.namespace,
                                  permitted_hosts=["A.test."])
    assert not written and ca.permitted_hosts == frozenset({"a.test"})
    with pytest.raises(PermissionError):  # a re-issue does need it
        ensure_scope_ca(paths.ca_cert, paths.ca_key, namespace=paths.namespace, permitted_hosts=["b.test"])


def test_a_bundle_without_the_current_ca_is_rebuilt_even_when_the_ca_matches(tmp_path: Path) -> None:
    paths = scope(tmp_path)
    ensure_scope_ca(paths.ca_cert, paths.ca_key, namespace=paths.namespace, permitted_hosts=["a.test"])
    paths.combined_bundle.write_bytes(b"-----BEGIN CERTIFICATE-----\nold\n-----END CERTIFICATE-----\n")
    _, written = ensure_scope_ca(paths.ca_cert, paths.ca_key, namespace=paths.namespace,
                                 permitted_hosts=["a.test"], bundle=paths.combined_bundle)
    assert not written  # a re-issue whose bundle write failed earlier is repaired by the next call
    assert paths.ca_cert.read_bytes().strip() in paths.combined_bundle.read_bytes()
