"""Background service: a systemd user unit on Linux, a launchd agent on macOS.

Generating the files is pure (:func:`systemd_unit`, :func:`launchd_plist`); :class:`ServiceManager` runs
``systemctl --user`` / ``launchctl`` and is the only part with side effects.
"""

from __future__ import annotations

import os
import plistlib
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cordon_config.files import atomic_write
from cordon_config.scope import ScopePaths

LABEL_PREFIX = "dev.cordon."
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


class ServiceError(RuntimeError):
    """The service cannot be managed here (one line; ``hint`` says what to do instead)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def service_name(paths: ScopePaths, name: str | None = None) -> str:
    """``cordon-<namespace>`` (other characters become ``-``) unless a NAME is given (letters, digits,
    ``.``, ``_``, ``-``)."""
    chosen = name or "cordon-" + re.sub(r"[^A-Za-z0-9._-]+", "-", paths.namespace)
    if not _NAME.match(chosen):
        raise ServiceError(f"invalid service name {chosen!r}", "use letters, digits, '.', '_' and '-' only")
    return chosen


def _systemd_quote(arg: str) -> str:
    """One ExecStart argument: double-quoted with C escapes; ``%`` and ``$`` doubled (specifier/variable)."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"' if re.search(r'[\s"\'\\;]', arg) or not arg else escaped


def systemd_unit(argv: Sequence[str], *, description: str) -> str:
    """A user unit running ``argv`` in the foreground, restarted on failure. The proxy logs to its
    ``--log-file``; what it prints before it can (and its errors) also reach the journal."""
    exec_start = " ".join(_systemd_quote(a) for a in argv)
    return (
        "[Unit]\n"
        f"Description={description}\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={exec_start}\n"
        "WorkingDirectory=/\n"
        "Restart=on-failure\n"
        "RestartSec=2\n"
        "StandardOutput=journal\n"
        "StandardError=journal\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def launchd_plist(label: str, argv: Sequence[str], *, log_path: Path) -> bytes:
    """A launchd agent running ``argv``: started at login, restarted when it exits unsuccessfully."""
    return plistlib.dumps(
        {
            "Label": label,
            "ProgramArguments": list(argv),
            "RunAtLoad": True,
            "KeepAlive": {"SuccessfulExit": False},
            "WorkingDirectory": "/",
            "StandardOutPath": str(log_path),
            "StandardErrorPath": str(log_path),
            "ProcessType": "Background",
        }
    )


def start_argv(cordon: Sequence[str], config_path: Path, log_path: Path | None = None) -> list[str]:
    """``<abs cordon> start --config <abs cordon.toml> [--log-file <abs log>]``."""
    argv = [*cordon, "start", "--config", str(config_path)]
    return [*argv, "--log-file", str(log_path)] if log_path is not None else argv


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """Installed (the unit/plist file exists) and running (the manager says so)."""

    name: str
    kind: str
    path: Path
    installed: bool
    running: bool


Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)


class ServiceManager:
    """Install, uninstall and inspect the service of one scope with the platform's service manager."""

    def __init__(
        self,
        paths: ScopePaths,
        *,
        cordon: Sequence[str],
        environ: Mapping[str, str] | None = None,
        platform: str | None = None,
        run: Runner = _run,
        uid: int | None = None,
    ) -> None:
        self.paths = paths
        self.cordon = list(cordon)
        self.environ = dict(os.environ if environ is None else environ)
        self.platform = sys.platform if platform is None else platform
        self.run = run
        self.uid = os.getuid() if uid is None else uid
        home = self.environ.get("HOME") or os.path.expanduser("~")
        self.home = Path(home)

    # ---- detection --------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """``launchd`` on macOS, else ``systemd``."""
        return "launchd" if self.platform == "darwin" else "systemd"

    def _call(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        try:
            return self.run(argv)
        except FileNotFoundError:
            return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: not found")
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(list(argv), 124, "", f"{argv[0]}: timed out")

    def check_available(self) -> None:
        """Raise ServiceError (with the foreground alternative) when no user service manager is reachable."""
        probe = (
            ["launchctl", "print", f"gui/{self.uid}"]
            if self.kind == "launchd"
            else ["systemctl", "--user", "show-environment"]
        )
        result = self._call(probe)
        if result.returncode != 0:
            what = (
                "launchd (launchctl)"
                if self.kind == "launchd"
                else "a systemd user session (systemctl --user)"
            )
            reason = (result.stderr or result.stdout).strip().splitlines()
            detail = f": {reason[0]}" if reason else ""
            raise ServiceError(
                f"cannot install a background service: {what} is not available here{detail}",
                "run the proxy in the foreground instead: cordon start --config "
                f"{shlex.quote(str(self.paths.config_path))}"
                " (e.g. under tmux, or your container's process manager)",
            )

    # ---- files ------------------------------------------------------------------------------------

    def unit_name(self, name: str | None = None) -> str:
        base = service_name(self.paths, name)
        return f"{LABEL_PREFIX}{base}" if self.kind == "launchd" else f"{base}.service"

    def unit_path(self, name: str | None = None) -> Path:
        if self.kind == "launchd":
            return self.home / "Library" / "LaunchAgents" / f"{self.unit_name(name)}.plist"
        xdg = self.environ.get("XDG_CONFIG_HOME", "")
        config_home = Path(xdg) if xdg and os.path.isabs(xdg) else self.home / ".config"
        return config_home / "systemd" / "user" / self.unit_name(name)

    def log_path(self, name: str | None = None) -> Path:
        """The scope's log (``cordon logs`` shows it): the proxy writes it, launchd sends stray output there too."""
        from cordon_config.scopes import default_log

        return default_log(self.paths)

    def render(self, name: str | None = None) -> bytes:
        """The unit file or plist for this scope."""
        argv = start_argv(self.cordon, self.paths.config_path, self.log_path(name))
        if self.kind == "launchd":
            return launchd_plist(self.unit_name(name), argv, log_path=self.log_path(name))
        description = f"cordon credential-injecting proxy ({self.paths.namespace}: {self.paths.config_path})"
        return systemd_unit(argv, description=description).encode("utf-8")

    # ---- actions ----------------------------------------------------------------------------------

    def _must(self, argv: Sequence[str]) -> None:
        result = self._call(argv)
        if result.returncode != 0:
            reason = (result.stderr or result.stdout).strip().splitlines()
            raise ServiceError(f"`{' '.join(argv)}` failed" + (f": {reason[0]}" if reason else ""))

    def install(self, name: str | None = None) -> Path:
        """Write the unit/plist and start it now and at every login; returns the file written."""
        if not self.paths.config_path.exists():
            raise ServiceError(f"no config at {self.paths.config_path}", "run `cordon setup` first")
        self.check_available()
        path = self.unit_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        unit = self.unit_name(name)
        if self.kind == "launchd":
            self.log_path(name).parent.mkdir(parents=True, exist_ok=True)
            if path.exists():
                self._call(["launchctl", "bootout", f"gui/{self.uid}/{unit}"])
            atomic_write(path, self.render(name), mode=0o644)
            self._must(["launchctl", "bootstrap", f"gui/{self.uid}", str(path)])
        else:
            atomic_write(path, self.render(name), mode=0o644)
            self._must(["systemctl", "--user", "daemon-reload"])
            self._must(["systemctl", "--user", "enable", "--now", unit])
        return path

    def restart(self, name: str | None = None) -> None:
        """Stop and start the installed service (it re-reads cordon.toml, secrets and the CA)."""
        path = self.unit_path(name)
        if not path.exists():
            raise ServiceError(f"{self.unit_name(name)} is not installed", "install it with: cordon service install")
        self.check_available()
        unit = self.unit_name(name)
        if self.kind == "launchd":
            self._must(["launchctl", "kickstart", "-k", f"gui/{self.uid}/{unit}"])
        else:
            self._must(["systemctl", "--user", "restart", unit])

    def uninstall(self, name: str | None = None) -> bool:
        """Stop and remove the service; False when it was not installed."""
        path = self.unit_path(name)
        if not path.exists():
            return False
        self.check_available()
        unit = self.unit_name(name)
        if self.kind == "launchd":
            self._call(["launchctl", "bootout", f"gui/{self.uid}/{unit}"])
            path.unlink()
        else:
            self._call(["systemctl", "--user", "disable", "--now", unit])
            path.unlink()
            self._must(["systemctl", "--user", "daemon-reload"])
        return True

    def status(self, name: str | None = None) -> ServiceStatus:
        """Installed and running, as the service manager reports it."""
        path = self.unit_path(name)
        unit = self.unit_name(name)
        installed = path.exists()
        running = False
        if installed:
            self.check_available()
            if self.kind == "launchd":
                result = self._call(["launchctl", "print", f"gui/{self.uid}/{unit}"])
                running = result.returncode == 0 and "state = running" in result.stdout
            else:
                result = self._call(["systemctl", "--user", "is-active", unit])
                running = result.returncode == 0 and result.stdout.strip() == "active"
        return ServiceStatus(service_name(self.paths, name), self.kind, path, installed, running)
