"""The CA is name-constrained to exactly the routed hosts by default (SECURITY.md §E rule 6), with cordon's
real commands: `cordon route add|edit|remove|approve` re-issue it through the `cordon.routes_changed` hook
(cordon-config never imports cordon-ca), a replaced key is destroyed, hosts of routes nobody approved are never
permitted, and a CA left unconstrained by cordon 0.1 gets a doctor warning and one command. Every step runs as
``python -m cordon ...`` in a subprocess, with HOME and XDG_CONFIG_HOME in a temporary directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomlkit
from cryptography import x509

pytestmark = pytest.mark.e2e

TIMEOUT = 60


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "proj"
    path.mkdir()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "home" / ".config"),
               CORDON_NC_SECRET="sk-nc-0123456789")
    return path, env


def cordon(project: tuple[Path, dict[str, str]], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    cwd, env = project
    done = subprocess.run([sys.executable, "-m", "cordon", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    if ok:
        assert done.returncode == 0, done.stderr + done.stdout
    return done


def permitted(project: tuple[Path, dict[str, str]]) -> list[str] | None:
    info = json.loads(cordon(project, "ca", "show", "--json").stdout)
    return info["permitted_hosts"]


def set_constrained(project: tuple[Path, dict[str, str]]) -> None:
    config = project[0] / "cordon.toml"
    doc = tomlkit.parse(config.read_text())
    doc.setdefault("tls", tomlkit.table())["name_constraints"] = True
    config.write_text(tomlkit.dumps(doc))


def add_route_by_hand(project: tuple[Path, dict[str, str]], name: str, host: str) -> None:
    with open(project[0] / "cordon.toml", "a", encoding="utf-8") as handle:
        handle.write(f'\n[[routes]]\nname = "{name}"\n[routes.match]\nhost = "{host}"\n[routes.auth]\n'
                     'type = "header"\nheader_name = "Authorization"\nscheme = "Bearer"\n'
                     '[routes.auth.secret]\nsource = "env"\nvar = "CORDON_NC_SECRET"\n')


ROUTE_FLAGS = ["--auth-type", "header", "--header-name", "Authorization", "--scheme", "Bearer",
               "--source", "env", "--var", "CORDON_NC_SECRET"]


def sign_with_the_stolen_key(project: tuple[Path, dict[str, str]], host: str, out: Path) -> Path:
    """What a copy of the CA key gives: a leaf for ``host`` signed by the CA, bypassing cordon's refusal."""
    import datetime as dt

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    info = json.loads(cordon(project, "ca", "path", "--json").stdout)
    ca_cert = x509.load_pem_x509_certificate(Path(info["cert"]).read_bytes())
    ca_key = serialization.load_pem_private_key(Path(info["key"]).read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out


def verifies(bundle: Path, leaf: Path, host: str) -> bool:
    done = subprocess.run(["openssl", "verify", "-CAfile", str(bundle), "-verify_hostname", host, str(leaf)],
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)
    return done.returncode == 0


def test_the_default_ca_permits_exactly_the_routed_hosts(project, tmp_path: Path) -> None:
    cordon(project, "setup")
    assert permitted(project) == []  # a fresh scope: no route yet, so no host at all
    ca_paths = json.loads(cordon(project, "ca", "path", "--json").stdout)
    bundle = Path(ca_paths["bundle"])
    added = cordon(project, "route", "add", "--name", "openai", "--host", "api.openai.com", *ROUTE_FLAGS)
    assert "re-issued the name-constrained CA for api.openai.com" in added.stdout
    assert "the old key is destroyed" in added.stdout
    assert permitted(project) == ["api.openai.com"]
    assert Path(ca_paths["cert"]).read_bytes().strip() in bundle.read_bytes()  # the bundle follows
    assert not Path(ca_paths["key"] + ".bak").exists()
    # a stolen copy of the key mints nothing clients of the combined bundle accept, but the routed host
    assert verifies(bundle, sign_with_the_stolen_key(project, "api.openai.com", tmp_path / "ok.pem"),
                    "api.openai.com")
    for host in ("evil.api.openai.com", "www.google.com"):
        assert not verifies(bundle, sign_with_the_stolen_key(project, host, tmp_path / "x.pem"), host), host
    edited = cordon(project, "route", "edit", "openai", "--host", "api.openai.test")
    assert "re-issued" in edited.stdout and permitted(project) == ["api.openai.test"]
    cordon(project, "route", "remove", "openai", "--yes")
    assert permitted(project) == []


def test_turning_constraints_off_is_an_approved_setting(project) -> None:
    cordon(project, "setup")
    config = project[0] / "cordon.toml"
    doc = tomlkit.parse(config.read_text())
    doc["tls"]["name_constraints"] = False
    config.write_text(tomlkit.dumps(doc))
    refused = cordon(project, "route", "add", "--name", "b", "--host", "b.test", *ROUTE_FLAGS)
    assert "re-issued" not in refused.stdout and permitted(project) == []  # not approved: the CA stays
    approved = cordon(project, "route", "approve", "--all", "--yes")
    assert "re-issued the CA without name constraints" in approved.stdout
    assert permitted(project) is None


def test_hand_added_routes_count_once_approved(project) -> None:
    cordon(project, "setup")
    add_route_by_hand(project, "one", "one.test")
    setup = cordon(project, "setup")
    assert 'note: route "one" is new and not approved' in setup.stdout
    assert permitted(project) == []  # the CA never permits a host nobody approved
    approved = cordon(project, "route", "approve", "one", "--yes")
    assert "re-issued the name-constrained CA for one.test" in approved.stdout
    add_route_by_hand(project, "two", "two.test")
    cordon(project, "route", "approve", "--all", "--yes")
    cwd, env = project
    proc = subprocess.Popen([sys.executable, "-m", "cordon", "start"], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        cordon(project, "wait", "--timeout", "30")
        assert permitted(project) == ["one.test", "two.test"]
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_an_unconstrained_ca_from_0_1_gets_a_warning_and_one_command(project, tmp_path: Path) -> None:
    from cordon_ca import regenerate_ca

    cordon(project, "setup")
    cordon(project, "route", "add", "--name", "a", "--host", "a.test", *ROUTE_FLAGS)
    info = json.loads(cordon(project, "ca", "path", "--json").stdout)
    cert, key = Path(info["cert"]), Path(info["key"])
    regenerate_ca(cert, key, namespace=info["namespace"], permitted_hosts=None)  # as cordon 0.1 made it
    key.with_name(key.name + ".bak").write_bytes(key.read_bytes())
    key.with_name(key.name + ".bak").chmod(0o600)
    hard_link = tmp_path / "copy-of-the-old-key"
    os.link(key, hard_link)
    cordon(project, "ca", "bundle")
    report = cordon(project, "doctor", ok=False).stdout
    assert "warn ca.constraints: the CA is not name-constrained (made by cordon 0.1)" in report, report
    assert "fix: cordon ca generate --force" in report
    assert f"warn ca.old_key: an old CA key is kept at {key}.bak" in report
    assert permitted(project) is None
    cordon(project, "ca", "generate", "--force")
    assert permitted(project) == ["a.test"]
    assert not key.with_name(key.name + ".bak").exists() and hard_link.read_bytes() == b""
    report = cordon(project, "doctor", ok=False).stdout
    assert "ok   ca.constraints: the CA is limited to exactly 1 host(s)" in report, report
