"""Service files are checked with the real tools (systemd-analyze, plistlib); systemctl/launchctl calls are
captured through stand-in executables on PATH."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cordon_config.scope import resolve_scope
from cordon_setup.cli import service_main
from cordon_setup.service import ServiceError, ServiceManager, launchd_plist, service_name, systemd_unit

CORDON = [str(Path(sys.executable).parent / "cordon")]


def _stand_in(bindir: Path, name: str, *, code: int = 0, stdout: str = "") -> Path:
    bindir.mkdir(exist_ok=True)
    log = bindir / "calls"
    script = bindir / name
    script.write_text(f"#!/bin/sh\necho \"{name} $*\" >> {log}\nprintf '%s' '{stdout}'\nexit {code}\n")
    script.chmod(0o755)
    return log


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def paths(tmp_path):
    project = tmp_path / "my project"
    project.mkdir()
    (project / "cordon.toml").write_text("listen = 6790\n")
    return resolve_scope(None, None, env=os.environ, cwd=project)


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path, paths):
    cordon = tmp_path / "bin" / "cordon"  # systemd-analyze checks that ExecStart is an executable file
    cordon.parent.mkdir()
    cordon.write_text("#!/bin/sh\nexit 0\n")
    cordon.chmod(0o755)
    unit = systemd_unit([str(cordon), "start", "--config", str(paths.config_path)], description="cordon test")
    assert "Restart=on-failure\n" in unit and "StandardError=journal\n" in unit
    assert f'ExecStart={cordon} start --config "{paths.config_path}"\n' in unit
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    path = tmp_path / "cordon-test.service"
    path.write_text(unit)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_systemd_quoting_of_specifiers_and_variables():
    unit = systemd_unit(["/bin/x", "100%", "$HOME", 'a "b"'], description="d")
    assert 'ExecStart=/bin/x 100%% $$HOME "a \\"b\\""\n' in unit


def test_systemd_install_status_uninstall_command_sequence(tmp_path, paths, monkeypatch):
    bindir = tmp_path / "bin"
    log = _stand_in(bindir, "systemctl", stdout="active")
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    manager = ServiceManager(paths, cordon=CORDON, platform="linux")
    unit = f"cordon-{paths.namespace.replace(' ', '-')}.service"
    path = manager.install()
    assert path == Path(os.environ["XDG_CONFIG_HOME"]) / "systemd" / "user" / unit
    log_file = paths.state_dir / "proxy.log"  # `cordon logs` shows it
    assert f'ExecStart={CORDON[0]} start --config "{paths.config_path}" --log-file "{log_file}"' in path.read_text()
    assert _calls(log) == [
        "systemctl --user show-environment",
        "systemctl --user daemon-reload",
        f"systemctl --user enable --now {unit}",
    ]
    log.unlink()
    manager.restart()
    assert _calls(log) == ["systemctl --user show-environment", f"systemctl --user restart {unit}"]
    status = manager.status()
    assert status.installed and status.running
    assert _calls(log)[-1] == f"systemctl --user is-active {unit}"
    log.unlink()
    assert manager.uninstall() is True and not path.exists()
    assert _calls(log) == [
        "systemctl --user show-environment",
        f"systemctl --user disable --now {unit}",
        "systemctl --user daemon-reload",
    ]
    assert manager.uninstall() is False


def test_launchd_plist_and_command_sequence(tmp_path, paths, monkeypatch):
    bindir = tmp_path / "bin"
    log = _stand_in(bindir, "launchctl", stdout="state = running")
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    manager = ServiceManager(paths, cordon=CORDON, platform="darwin", uid=501)
    label = f"dev.cordon.cordon-{paths.namespace.replace(' ', '-')}"
    path = manager.install()
    home = Path(os.environ["HOME"])
    assert path == home / "Library" / "LaunchAgents" / f"{label}.plist"
    plist = plistlib.loads(path.read_bytes())
    assert plist["Label"] == label
    log_file = paths.state_dir / "proxy.log"
    assert plist["ProgramArguments"] == [*CORDON, "start", "--config", str(paths.config_path), "--log-file",
                                         str(log_file)]
    assert plist["KeepAlive"] == {"SuccessfulExit": False} and plist["RunAtLoad"] is True
    assert (
        plist["StandardErrorPath"] == plist["StandardOutPath"] == str(log_file) and log_file.parent.is_dir()
    )
    assert _calls(log) == ["launchctl print gui/501", f"launchctl bootstrap gui/501 {path}"]
    assert manager.status().running
    log.unlink()
    manager.restart()
    assert _calls(log) == ["launchctl print gui/501", f"launchctl kickstart -k gui/501/{label}"]
    log.unlink()
    manager.uninstall()
    assert (
        _calls(log) == ["launchctl print gui/501", f"launchctl bootout gui/501/{label}"] and not path.exists()
    )


def test_plist_is_valid_xml_plist():
    data = launchd_plist("dev.cordon.x", ["/a b/cordon", "start"], log_path=Path("/l/x.log"))
    assert plistlib.loads(data)["ProgramArguments"] == ["/a b/cordon", "start"]


def test_no_user_service_manager_is_a_clear_error_with_the_foreground_alternative(
    tmp_path, paths, monkeypatch
):
    bindir = tmp_path / "bin"
    _stand_in(bindir, "systemctl", code=1, stdout="Failed to connect to bus: No medium found")
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    manager = ServiceManager(paths, cordon=CORDON, platform="linux")
    with pytest.raises(ServiceError) as info:
        manager.install()
    assert str(info.value) == (
        "cannot install a background service: a systemd user session (systemctl --user) is not available here: "
        "Failed to connect to bus: No medium found"
    )
    assert info.value.hint and f"cordon start --config '{paths.config_path}'" in info.value.hint
    assert not manager.unit_path().exists()


def test_cli_in_this_container(paths, monkeypatch, capsys):
    real = shutil.which("systemctl")
    if (
        real
        and subprocess.run([real, "--user", "show-environment"], capture_output=True, timeout=10).returncode
        == 0
    ):
        pytest.skip("a systemd user session exists here; the container case cannot be shown")
    monkeypatch.chdir(paths.config_path.parent)
    assert service_main(["install"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cordon: cannot install a background service: a systemd user session")
    assert "hint: run the proxy in the foreground instead: cordon start" in err
    assert service_main(["status"]) == 0
    assert "not installed" in capsys.readouterr().out


def test_service_name_validation(paths):
    assert service_name(paths, "work") == "work"
    with pytest.raises(ServiceError):
        service_name(paths, "../evil")


GOLDEN_UNIT = """\
[Unit]
Description=cordon credential-injecting proxy (proj)

[Service]
Type=simple
ExecStart="/opt/cordon bin/cordon" start --config /home/me/proj/cordon.toml
WorkingDirectory=/
Restart=on-failure
RestartSec=2
StandardOutput=journal
StandardError=journal

[Install]
WantedBy=default.target
"""


def test_systemd_unit_golden():
    unit = systemd_unit(["/opt/cordon bin/cordon", "start", "--config", "/home/me/proj/cordon.toml"],
                        description="cordon credential-injecting proxy (proj)")
    assert unit == GOLDEN_UNIT


GOLDEN_PLIST = """\
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>KeepAlive</key>
	<dict>
		<key>SuccessfulExit</key>
		<false/>
	</dict>
	<key>Label</key>
	<string>dev.cordon.proj</string>
	<key>ProcessType</key>
	<string>Background</string>
	<key>ProgramArguments</key>
	<array>
		<string>/opt/cordon bin/cordon</string>
		<string>start</string>
	</array>
	<key>RunAtLoad</key>
	<true/>
	<key>StandardErrorPath</key>
	<string>/l/x.log</string>
	<key>StandardOutPath</key>
	<string>/l/x.log</string>
	<key>WorkingDirectory</key>
	<string>/</string>
</dict>
</plist>
"""


def test_launchd_plist_golden():
    data = launchd_plist("dev.cordon.proj", ["/opt/cordon bin/cordon", "start"], log_path=Path("/l/x.log"))
    assert data.decode() == GOLDEN_PLIST
