"""The real agent CLIs through cordon, each in a private network namespace (see test_real_clients.py).

:class:`Scenario` builds the steps one test runs; :func:`run_scenario` hands them to ``driver.py`` under
``unshare -nm`` + ``dbus-run-session`` and returns an :class:`Outcome` with every step's output, cordon's log
and the fake provider's recording. Nothing here runs an agent CLI outside that namespace: versions are read
from the installed packages' metadata, never by running ``--version``.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cordon_config.providers import DUMMY_KEY, by_name

HERE = Path(__file__).parent
DRIVER = HERE / "driver.py"
PROVIDER_HOSTS = ("api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com")
REPLY = "Cordon fake provider says: the answer is 42."
SYSTEM_TOOLS = ("unshare", "ip", "mount", "dbus-run-session", "dbus-daemon", "gnome-keyring-daemon")


def clients_dir(environ: dict[str, str]) -> Path:
    """Where ``install.sh`` put the pinned clients: ``$CORDON_AGENT_CLIENTS`` or ``tests/agents/clients``."""
    return Path(environ.get("CORDON_AGENT_CLIENTS") or HERE / "clients")


@functools.cache
def namespace_problem() -> str | None:
    """None when a private network namespace (loopback only) can be made here, else why not."""
    if sys.platform != "linux":
        return "private network namespaces need Linux"
    missing = [tool for tool in SYSTEM_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install util-linux iproute2 dbus gnome-keyring)"
    if os.geteuid() != 0:
        return "unshare -n needs root (CI runs as root); never run on the host network instead"
    probe = subprocess.run(["unshare", "-nm", "--", "ip", "link", "set", "lo", "up"], capture_output=True,
                           text=True, timeout=30)
    if probe.returncode != 0:
        return f"cannot make a private network namespace: {probe.stderr.strip() or probe.returncode}"
    return None


def npm_version(root: Path, package: str) -> str | None:
    """The installed version of an npm package under ``root/node_modules`` (from its package.json)."""
    try:
        return json.loads((root / "node_modules" / package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def pip_version(venv: Path, distribution: str) -> str | None:
    """The installed version of a distribution in ``venv`` (from its dist-info, without running anything)."""
    for meta in venv.glob(f"lib/python3*/site-packages/{distribution.replace('-', '_')}-*.dist-info/METADATA"):
        for line in meta.read_text(errors="replace").splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    return None


def pinned_npm(package: str) -> str:
    return json.loads((HERE / "clients" / "package.json").read_text())["dependencies"][package]


def pinned_pip(name: str, distribution: str) -> str:
    for line in (HERE / "clients" / f"{name}.in").read_text().splitlines():
        if line.split("[")[0].split("==")[0].strip() == distribution:
            return line.split("==", 1)[1].strip()
    raise KeyError(distribution)


@dataclass
class Installed:
    """Where a client is and the version found (checked against the pin)."""

    version: str
    bin_dirs: list[str]


@dataclass
class Scenario:
    """The steps of one real-client run, with the paths they use."""

    name: str
    work: Path
    clients: Path
    real_key: str = field(default_factory=lambda: "sk-cordon-test-" + secrets.token_hex(20))
    steps: list[dict[str, Any]] = field(default_factory=list)
    bin_dirs: list[str] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.work / "home"

    @property
    def project(self) -> Path:
        return self.work / "project"

    def require_npm(self, package: str) -> Installed:
        """The pinned npm package, installed by install.sh; the test is skipped (with the reason) otherwise."""
        version = npm_version(self.clients, package)
        pinned = pinned_npm(package)
        if version != pinned:
            found = "is not installed" if version is None else f"{version} is installed, the pin is {pinned}"
            pytest.skip(f"{package} {found} in {self.clients} (run: bash tests/agents/install.sh)")
        return Installed(version, [str(self.clients / "node_modules" / ".bin")])

    def require_pip(self, name: str, distribution: str) -> Installed:
        """The pinned PyPI client in its venv ``venv-<name>``; skipped (with the reason) otherwise."""
        venv = self.clients / f"venv-{name}"
        version = pip_version(venv, distribution)
        pinned = pinned_pip(name, distribution)
        if version != pinned:
            found = "is not installed" if version is None else f"{version} is installed, the pin is {pinned}"
            pytest.skip(f"{distribution} {found} in {venv} (run: bash tests/agents/install.sh)")
        return Installed(version, [str(venv / "bin")])

    def run(self) -> Outcome:
        """Run the steps in a private network namespace; see :func:`run_scenario`."""
        return run_scenario(self)

    def cordon(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cordon", *args]

    def step(self, name: str, argv: list[str], *, env: dict[str, str] | None = None, stdin: str | None = None,
             timeout: float = 60, check: bool = True, background: bool = False, cwd: Path | None = None) -> None:
        self.steps.append({"name": name, "argv": argv, "env": env or {}, "stdin": stdin, "timeout": timeout,
                           "check": check, "background": background, "cwd": str(cwd or self.project)})

    def route(self, provider: str, *scope: str) -> None:
        """``cordon route add`` for ``provider`` (its flags from cordon-config's table), then its secret."""
        found = by_name(provider)
        assert found is not None
        flags = found.route_flags().split()
        self.step("route", self.cordon("route", "add", *scope, *flags, "--source", "keyring",
                                       "--account", found.name))
        self.step("secret", self.cordon("secret", "set", *scope, found.name), stdin="@real-key")

    def start(self, config: Path) -> None:
        """Trust the fake's CA for upstream verification (`cordon config set tls.upstream_ca_file`), start
        cordon and wait for it."""
        # through the CLI, as a person would: a trust setting counts only as a human set or approved it
        self.step("upstream-ca", self.cordon("config", "set", "tls.upstream_ca_file", "@upstream-ca",
                                             "-c", str(config)))
        self.step("start", self.cordon("start", "-c", str(config)), background=True)
        self.step("wait", self.cordon("wait", "-c", str(config), "--timeout", "30"))

    def base_env(self, runtime: Path) -> dict[str, str]:
        path = [*self.bin_dirs, str(Path(sys.executable).parent), "/usr/local/sbin", "/usr/local/bin",
                "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        return {
            "HOME": str(self.home), "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"), "XDG_CACHE_HOME": str(self.home / ".cache"),
            "XDG_RUNTIME_DIR": str(runtime), "TMPDIR": str(self.work / "tmp"), "PATH": os.pathsep.join(path),
            "LANG": "C.UTF-8", "TERM": "dumb", "NO_COLOR": "1", "CI": "true",
        }


@dataclass
class Outcome:
    """What one run produced."""

    scenario: Scenario
    result: dict[str, Any]

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.result["records"]

    def output(self, step: str, stream: str = "stdout") -> str:
        for entry in self.result["steps"]:
            if entry["name"] == step:
                return Path(entry[stream]).read_text(errors="replace")
        raise KeyError(step)

    def returncode(self, step: str) -> Any:
        return next(e["returncode"] for e in self.result["steps"] if e["name"] == step)

    def describe(self) -> str:
        """Every step's exit code and the tail of its output (for assertion messages)."""
        parts = [f"error: {self.result['error']}"]
        for entry in self.result["steps"]:
            parts.append(f"--- {entry['name']}: exit {entry.get('returncode')}")
            for stream in ("stdout", "stderr"):
                text = Path(entry[stream]).read_text(errors="replace").strip()
                if text:
                    parts.append(f"[{stream}] {text[-2500:]}")
        parts.append(f"records: {json.dumps(self.records)[:3000]}")
        return "\n".join(parts).replace(self.scenario.real_key, "<REAL KEY>")

    def assert_ran(self, client_step: str) -> None:
        assert self.result["error"] is None and self.returncode(client_step) == 0, self.describe()

    def assert_reply(self, client_step: str) -> None:
        assert REPLY in self.output(client_step), self.describe()

    def assert_only_the_real_key(self, host: str) -> None:
        """Every request (and WebSocket message) the fake saw carried the real key, in every place a key can
        travel, and never the dummy."""
        seen = [r for r in self.records if r["host"] == host]
        assert seen, f"the fake saw no request for {host}\n{self.describe()}"
        for record in seen:
            assert record["keys"], f"a request without any key: {record}"
            assert set(record["keys"].values()) == {"real"}, f"not exactly the real key: {record}"

    def assert_key_nowhere(self) -> None:
        """The real key is in no file under the run's directory (HOME, project, cordon's state, every step's
        output and log); the Secret Service keeps it encrypted."""
        needle = self.scenario.real_key.encode()
        for path in self.scenario.work.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert needle not in path.read_bytes(), f"the real key is in {path}"

    def proxy_tokens(self) -> set[str]:
        """The proxy token names cordon logged for routed requests."""
        names = set()
        for line in self.output("start", "stderr").splitlines():
            if "route=" in line and "route=-" not in line and " token=" in line:
                names.add(line.split(" token=", 1)[1].split()[0])
        return names


def run_scenario(scenario: Scenario) -> Outcome:
    """Run the scenario's steps in a private network namespace (loopback only) and collect what happened."""
    runtime = Path(tempfile.mkdtemp(prefix="cordon-ag-"))  # short: unix socket paths are limited
    try:
        env = scenario.base_env(runtime)
        spec = {"workdir": str(scenario.work), "hosts": list(PROVIDER_HOSTS), "dummy": DUMMY_KEY, "env": env,
                "steps": scenario.steps}
        spec_path = scenario.work / "spec.json"
        spec_path.write_text(json.dumps(spec, indent=1))
        done = subprocess.run(
            ["unshare", "-nm", "--", "dbus-run-session", "--", sys.executable, str(DRIVER), str(spec_path)],
            env={**env, "CORDON_AGENT_REAL_KEY": scenario.real_key}, capture_output=True, text=True,
            timeout=900, stdin=subprocess.DEVNULL,
        )
        result_path = scenario.work / "result.json"
        assert result_path.exists(), f"the driver wrote no result (exit {done.returncode}): {done.stderr[-3000:]}"
        return Outcome(scenario, json.loads(result_path.read_text()))
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def scenario(request: pytest.FixtureRequest, tmp_path: Path, original_environ: dict[str, str]) -> Iterator[Scenario]:
    """A fresh scenario; skipped with the reason where no private network namespace can be made."""
    problem = namespace_problem()
    if problem is not None:
        pytest.skip(problem)
    scenario = Scenario(request.node.name, tmp_path / "run", clients_dir(original_environ))
    for directory in (scenario.home, scenario.project, scenario.work / "tmp"):
        directory.mkdir(parents=True)
    yield scenario
