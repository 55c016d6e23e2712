"""cordon-ca CLI: generate/show/bundle/path through main(), scope and [tls] paths, errors and exit codes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cordon_ca import CertificateAuthority
from cordon_ca.cli import build_parser, main, trust_main, untrust_main
from cordon_testing.config import approve_config, route_block


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    monkeypatch.chdir(proj)
    return proj


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_idempotent_and_force(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "generate", "--json")
    assert code == 0
    first = json.loads(out)
    assert first["status"] == "created" and first["key_type"] == "ECDSA P-256"
    assert first["subject"].startswith("CN=cordon local CA proj-")
    key = Path(first["key_path"])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    code, out, _ = run(capsys, "generate", "--json")
    assert code == 0 and json.loads(out)["status"] == "exists"
    assert json.loads(out)["fingerprint_sha256"] == first["fingerprint_sha256"]
    code, out, _ = run(capsys, "generate", "--force")
    assert code == 0 and "the old key is destroyed" in out
    assert not Path(first["cert_path"] + ".bak").exists() and not Path(first["key_path"] + ".bak").exists()
    assert CertificateAuthority.load(Path(first["cert_path"]), key).fingerprint_sha256 != first["fingerprint_sha256"]


def test_show(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "show")
    assert code == 1 and err.startswith("cordon: no CA certificate at ") and "hint: create one with: cordon ca generate" in err
    code, _, err = run(capsys, "show", "--scope", "user")  # the hint keeps the scope the user chose
    assert code == 1 and err.endswith("hint: create one with: cordon ca generate --scope user\n")
    code, _, err = run(capsys, "show", "--config", str(project / "other dir" / "cordon.toml"))
    assert f"hint: create one with: cordon ca generate --config '{project / 'other dir' / 'cordon.toml'}'\n" in err
    run(capsys, "generate")
    code, out, _ = run(capsys, "show", "--json")
    info = json.loads(out)
    assert code == 0
    assert set(info) >= {"subject", "fingerprint_sha256", "not_after", "key_type", "cert_path", "key_path"}
    assert info["permitted_hosts"] == []  # name-constrained by default: no route yet, so no host at all
    code, out, _ = run(capsys, "show")
    assert code == 0 and "sha256" in out and info["fingerprint_sha256"] in out and "ECDSA P-256" in out


def test_show_refuses_insecure_key(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "generate")
    key = run(capsys, "path", "key")[1].strip()
    os.chmod(key, 0o644)
    code, _, err = run(capsys, "show")
    assert code == 1
    assert err.splitlines() == [
        f"cordon: CA key {key} is accessible by group/others (mode 0644)",
        f"hint: chmod 600 {key}",
    ]


def test_user_scope_and_paths(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "path", "--scope", "user", "--json")
    assert code == 0
    info = json.loads(out)
    home = Path(os.environ["XDG_CONFIG_HOME"])
    assert info["cert"] == str(home / "cordon/user/certs/ca-cert.pem")
    assert info["bundle"] == str(home / "cordon/user/certs/combined-ca.pem")
    assert info["namespace"] == "user"
    _, out, _ = run(capsys, "path", "--scope", "user", "cert")
    assert out.strip() == info["cert"]


def test_config_tls_paths_and_name_constraints(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CA permits exactly the approved routes' hosts: an agent's new route, or a route it points elsewhere,
    is left out until the user approves it (SECURITY.md §E rule 6)."""
    secret = 'source = "env"\nvar = "K"'
    config = project / "cordon.toml"
    config.write_text(
        'listen = 6790\n[tls]\nenabled = true\nca_cert_path = "tls/ca.pem"\nca_key_path = "tls/ca-key.pem"\n'
        "name_constraints = true\n\n" + route_block("a", "API.Test", secret) + route_block("b", "b.test.", secret)
    )
    approve_config(config)
    code, out, _ = run(capsys, "generate", "--json")
    info = json.loads(out)
    assert code == 0
    assert info["cert_path"] == str(project / "tls/ca.pem")
    assert info["permitted_hosts"] == ["api.test", "b.test"]
    assert stat.S_IMODE((project / "tls/ca-key.pem").stat().st_mode) == 0o600
    config.write_text(config.read_text().replace('host = "b.test."', 'host = "evil.test"')
                      + route_block("c", "c.test", secret))
    code, out, err = run(capsys, "generate", "--json")
    assert code == 0 and json.loads(out)["status"] == "exists" and "not exactly the routed hosts" in err
    code, out, _ = run(capsys, "generate", "--force", "--json")
    assert json.loads(out)["permitted_hosts"] == ["api.test"]  # neither the new route nor the re-pointed one
    config.write_text(config.read_text() + "[[routes]]\nname = \"half\"\n[routes.match]\nhost = \"d.test\"\n")
    code, out, _ = run(capsys, "generate", "--force", "--json")  # a half-written route does not stop it
    assert code == 0 and json.loads(out)["permitted_hosts"] == ["api.test"]
    config.write_text(config.read_text().split("[[routes]]\nname = \"half\"")[0])
    approve_config(config)
    code, out, _ = run(capsys, "generate", "--force", "--json")
    assert json.loads(out)["permitted_hosts"] == ["api.test", "c.test", "evil.test"]


def test_bundle(project: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run(capsys, "generate")
    out_path = tmp_path / "b.pem"
    code, out, err = run(capsys, "bundle", "--out", str(out_path))
    assert code == 0, err
    assert out.strip() == str(out_path)
    ca_pem = Path(run(capsys, "path", "cert")[1].strip()).read_bytes()
    assert out_path.read_bytes().endswith(ca_pem)


def test_bad_input_exit_2(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "show", "--scope", "user", "--config", "x.toml")
    assert code == 2 and err.startswith("cordon: ") and len(err.splitlines()) == 1
    (project / "cordon.toml").write_text("listen = [\n")
    code, _, err = run(capsys, "show")
    assert code == 2 and err.startswith("cordon: ") and "not valid TOML" in err
    assert main(["frobnicate"]) == 2
    assert capsys.readouterr().err.startswith("cordon: argument COMMAND: invalid choice")


@pytest.mark.parametrize("argv", [[], ["generate"], ["show"], ["bundle"], ["path"], ["trust"], ["untrust"]])
def test_help_has_examples(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--help"]) == 0
    assert "examples:" in capsys.readouterr().out


@pytest.mark.parametrize("entry", [trust_main, untrust_main])
def test_umbrella_help(entry, capsys: pytest.CaptureFixture[str]) -> None:
    assert entry(["--help"]) == 0
    assert "--dry-run" in capsys.readouterr().out


def test_build_parser_prog() -> None:
    assert build_parser("cordon ca").prog == "cordon ca"


def test_module_entry_point(project: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cordon_ca", "generate", "--json"], capture_output=True, text=True, timeout=60,
        check=False, env=os.environ.copy(),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "created"
