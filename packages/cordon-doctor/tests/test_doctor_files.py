"""Doctor checks on files: each test breaks one thing and asserts the fail line and its fix."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from cordon_doctor.cli import doctor_main
from cordon_testing.doctor import doctor, line_and_fix


def test_healthy_scope_passes(project, capsys) -> None:
    code, out = doctor(capsys)
    assert code == 0, out
    for check in ("config", "ca.files", "ca.key", "ca.valid", "bundle", "tokens", "port"):
        assert line_and_fix(out, check)[0].startswith("ok"), out


def test_missing_config(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "config")
    assert code == 1
    assert line == f"FAIL config: no cordon.toml in {tmp_path} or a parent directory"
    assert fix is not None and fix.startswith("fix: cordon setup   (new to cordon? `cordon demo`")
    # one line, not a cascade of CA/bundle/tokens failures that only follow from the missing file
    assert out.count("FAIL") == 1 and "skip scope: CA, bundle, tokens" in out


def test_invalid_config_names_problem_and_file(project, capsys) -> None:
    project.config_path.write_text(project.config_path.read_text() + "\nlisten_typo = 1\n")
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "config")
    assert code == 1 and line.startswith("FAIL config:") and "listen_typo" in line
    assert "problems" not in line  # one problem (with its hint) is that problem, not "1 problems in …"
    assert fix is not None and fix.startswith(f"fix: edit {project.config_path}")


def test_ca_key_mode(project, capsys) -> None:
    os.chmod(project.ca_key, 0o644)
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "ca.key")
    assert code == 1 and line.startswith("FAIL ca.key:") and "0644" in line
    assert fix == f"fix: chmod 600 {project.ca_key}"


def test_ca_files_missing(project, capsys) -> None:
    project.ca_key.unlink()
    project.ca_cert.unlink()
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "ca.files")
    assert code == 1 and line.startswith("FAIL ca.files: CA file missing")
    assert fix == "fix: cordon setup"


def test_ca_half_missing(project, capsys) -> None:
    project.ca_cert.unlink()
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "ca.files")
    assert code == 1 and str(project.ca_cert) in line
    assert fix is not None and fix.startswith("fix: cordon ca generate --force")


def _write_short_lived_ca(paths, days: int, *, starts_in_days: int = -1) -> None:
    """Re-sign the scope's CA certificate (same key) so it expires in ``days`` (valid from ``starts_in_days``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    old = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(old.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=starts_in_days))
        .not_valid_after(now + dt.timedelta(days=days))
    )
    for ext in old.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    paths.ca_cert.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def test_ca_expiring_within_30_days(project, capsys) -> None:
    _write_short_lived_ca(project, days=10)
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "ca.valid")
    assert code == 1 and line.startswith("FAIL ca.valid:") and "within 30 days" in line
    assert fix == "fix: cordon ca generate --force && cordon setup"


def test_ca_expired(project, capsys) -> None:
    _write_short_lived_ca(project, days=-1, starts_in_days=-10)
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "ca.valid")
    assert code == 1 and line.startswith("FAIL ca.valid: the CA expired on "), out
    assert fix == "fix: cordon ca generate --force && cordon setup"


def test_ca_not_yet_valid(project, capsys) -> None:
    _write_short_lived_ca(project, days=3650, starts_in_days=2)
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "ca.valid")
    assert code == 1 and line.startswith("FAIL ca.valid: the CA is not valid before "), out
    assert fix == "fix: check the system clock"


def test_ca_certificate_garbage_does_not_load(project, capsys) -> None:
    project.ca_cert.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "ca.valid")
    assert code == 1 and line == f"FAIL ca.valid: {project.ca_cert} is not a PEM certificate", out
    assert fix == "fix: cordon ca generate --force && cordon setup"


def test_ca_does_not_load_fix_carries_the_scope_flag(tmp_path, monkeypatch, capsys) -> None:
    from cordon_config.scope import resolve_scope
    from cordon_setup.base import ensure_base_setup

    monkeypatch.chdir(tmp_path)
    paths = resolve_scope("user", None, env=os.environ, cwd=tmp_path)
    ensure_base_setup(paths, progress=lambda line: None)
    paths.ca_key.write_bytes(b"garbage\n")
    os.chmod(paths.ca_key, 0o600)
    code, out = doctor(capsys, "--scope", "user")
    line, fix = line_and_fix(out, "ca.valid")
    assert code == 1 and line == f"FAIL ca.valid: {paths.ca_key} is not an unencrypted PEM private key", out
    assert fix == "fix: cordon ca generate --scope user --force && cordon setup --scope user"


def test_ca_key_symlink(project, capsys, tmp_path) -> None:
    real = tmp_path / "elsewhere-ca-key.pem"
    real.write_bytes(project.ca_key.read_bytes())
    os.chmod(real, 0o600)
    project.ca_key.unlink()
    project.ca_key.symlink_to(real)
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "ca.key")
    assert code == 1 and line == f"FAIL ca.key: {project.ca_key} is a symlink", out
    assert fix == "fix: replace it with the real file: cordon ca generate --force"
    assert "ca.valid" not in out  # the loader would refuse it too; doctor stops at ca.key


OTHER_UID = 65534  # nobody


def test_ca_key_owned_by_another_user(project, capsys) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown the CA key to another uid")
    os.chown(project.ca_key, OTHER_UID, -1)
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "ca.key")
    assert code == 1 and line == f"FAIL ca.key: {project.ca_key} is owned by uid {OTHER_UID}, not by you (uid 0)", out
    assert fix == f"fix: sudo chown 0 {project.ca_key}"


def test_name_constraints_do_not_cover_routes(project, route, capsys, monkeypatch) -> None:
    text = project.config_path.read_text().replace("[tls]\n", "[tls]\nname_constraints = true\n")
    project.config_path.write_text(text)
    monkeypatch.setenv("DEMO_KEY", "sk-test-value-1234567890")
    route(project, '[[routes]]\nname = "api"\n[routes.match]\nhost = "api.test"\n[routes.auth]\ntype = "header"\n'
          'header_name = "x-api-key"\n[routes.auth.secret]\nsource = "env"\nvar = "DEMO_KEY"\n')
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "ca.constraints")
    assert code == 1 and line.startswith("FAIL ca.constraints:")
    assert fix is not None and fix.startswith("fix: cordon setup")


def test_bundle_missing(project, capsys) -> None:
    project.combined_bundle.unlink()
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "bundle")
    assert code == 1 and line.startswith("FAIL bundle: no combined CA bundle")
    assert fix == "fix: cordon ca bundle"


def test_bundle_without_current_ca(project, capsys, tmp_path) -> None:
    import trustme

    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    project.combined_bundle.write_bytes(other.read_bytes())
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "bundle")
    assert code == 1 and "does not contain the current cordon CA" in line
    assert fix == "fix: cordon ca bundle"


def test_bundle_older_than_system_store(project, capsys, tmp_path, monkeypatch) -> None:
    import cordon_ca

    system = tmp_path / "system.pem"
    system.write_bytes(b"")
    later = project.combined_bundle.stat().st_mtime + 100
    os.utime(system, (later, later))
    monkeypatch.setattr(cordon_ca, "find_system_bundle", lambda candidates=None: system)
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "bundle")
    assert code == 0 and line.startswith("warn bundle:") and "older than the system store" in line
    assert fix == "fix: cordon ca bundle"


def test_tokens_missing_and_loose(project, capsys) -> None:
    os.chmod(project.tokens_path, 0o644)
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "tokens")
    assert code == 1 and line.startswith("FAIL tokens:") and "0644" in line
    assert fix == f"fix: chmod 600 {project.tokens_path}"
    project.tokens_path.unlink()
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "tokens")
    assert line.startswith("warn tokens: no ") and fix == "fix: cordon setup"


def test_tokens_group_readable(project, capsys) -> None:
    os.chmod(project.tokens_path, 0o640)
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "tokens")
    assert code == 1 and line.startswith("FAIL tokens:") and "0640" in line and "other users" in line
    assert fix == f"fix: chmod 600 {project.tokens_path}"


def test_tokens_owned_by_another_user(project, capsys) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to chown tokens.toml to another uid")
    os.chown(project.tokens_path, OTHER_UID, -1)
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "tokens")
    assert code == 1 and line == f"FAIL tokens: {project.tokens_path} is owned by uid {OTHER_UID}, not by you", out
    assert fix == f"fix: sudo chown 0 {project.tokens_path}"


def test_user_scope_fixes_carry_the_flag(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = doctor(capsys, "--scope", "user")
    _line, fix = line_and_fix(out, "config")
    assert code == 1 and fix is not None and fix.startswith("fix: cordon setup --scope user ")


def test_json_schema(project, capsys) -> None:
    os.chmod(project.ca_key, 0o640)
    code, out = doctor(capsys, "--json")
    doc = json.loads(out)
    assert code == 1
    assert doc["schema"] == "cordon.doctor/1" and doc["ok"] is False
    assert set(doc["counts"]) == {"ok", "warn", "fail", "skip"} and doc["counts"]["fail"] >= 1
    key = next(c for c in doc["checks"] if c["check"] == "ca.key")
    assert key == {"check": "ca.key", "status": "fail", "message": key["message"], "fix": f"chmod 600 {project.ca_key}"}
    assert doc["scope"] == "project" and doc["config"] == str(project.config_path)


def test_both_scope_and_config_is_usage_error(capsys, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        doctor_main(["--scope", "user", "--config", str(tmp_path / "c.toml")])
    assert exc.value.code == 2


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p): (p.stat().st_mode, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


def test_doctor_changes_nothing(project, capsys, tmp_path) -> None:
    os.chmod(project.ca_key, 0o644)
    project.combined_bundle.unlink()
    before = _snapshot(tmp_path)
    code, _ = doctor(capsys)
    assert code == 1
    assert _snapshot(tmp_path) == before


def test_broken_config_skips_dependent_checks(project, capsys) -> None:
    project.config_path.write_text("listen = 'x'\n")
    code, out = doctor(capsys)
    assert code == 1
    assert "skip routes: route secrets, port and integration files not checked" in out


def test_constrained_ca_missing_a_route_host(project, route, capsys, monkeypatch) -> None:
    from cordon_ca import regenerate_ca, write_combined_bundle

    regenerate_ca(project.ca_cert, project.ca_key, namespace=project.namespace, permitted_hosts=["old.test"])
    write_combined_bundle(project.ca_cert, project.combined_bundle)
    monkeypatch.setenv("DEMO_KEY", "sk-test-value-1234567890")
    route(project, '[[routes]]\nname = "api"\n[routes.match]\nhost = "api.test"\n[routes.auth]\ntype = "header"\n'
          'header_name = "x-api-key"\n[routes.auth.secret]\nsource = "env"\nvar = "DEMO_KEY"\n')
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "ca.constraints")
    assert code == 1 and line.startswith("FAIL ca.constraints: the CA's name constraints do not cover: api.test")
    assert fix is not None and fix.startswith("fix: cordon setup")
