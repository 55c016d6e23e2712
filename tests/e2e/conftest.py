"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cordon_config.scope import ScopePaths, resolve_scope
from cordon_config.tokens import TokenStore
from cordon_testing.config import approve_config
from cordon_testing.namespaces import hosts_argv, require
from cordon_testing.project import CORDON
from cordon_testing.project import Project as SetupProject
from cordon_testing.proxy import terminate


@pytest.fixture(scope="module")
def dead_port() -> Iterator[int]:
    """A loopback port that is bound (so nobody else takes it) but not listening: a connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class Project(SetupProject):
    """:class:`cordon_testing.project.Project` routing ``api.test`` to a recording upstream, its proxy in a mount
    namespace whose hosts file maps ``api.test`` to 127.0.0.1 (cordon_testing.namespaces: no product switch).

    ``setup`` runs ``cordon setup --port``, routes ``api.test`` (secret from the ``env`` source
    ``SECRET_VAR``) and trusts the upstream's CA (``cordon config set tls.upstream_ca_file``); ``start`` runs
    ``cordon start`` in the background and waits until ``cordon wait`` sees this scope's cordon.
    """

    SECRET_VAR = "CORDON_E2E_SECRET"

    def __init__(self, root: Path, name: str, secret: str) -> None:
        super().__init__(root / name)
        self.secret = secret
        self.log = root / f"{name}-proxy.log"

    @property
    def paths(self) -> ScopePaths:
        return resolve_scope(None, None, env=self.env, cwd=self.dir)

    def cordon(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``cordon ARGS`` whatever its exit code (``env`` on top of the project's)."""
        return self.run(*args, check=False, env=env)

    def must(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(*args, env=env)

    def setup(self, port: int, upstream_ca: Path) -> Project:  # type: ignore[override]
        self.run("setup", "--port", str(port))
        self.run("route", "add", "--name", "api", "--host", "api.test", "--auth-type", "header",
                 "--header-name", "Authorization", "--scheme", "Bearer", "--source", "env", "--var",
                 self.SECRET_VAR)
        self.run("config", "set", "tls.upstream_ca_file", str(upstream_ca))
        return self

    def share_port(self, port: int) -> None:
        """Put this scope on ``port`` although another scope uses it (as two scopes set up by cordon 0.1, or a
        hand edit, can be), and approve that as the user would."""
        text = self.config.read_text()
        self.config.write_text(re.sub(r"(?m)^listen = \d+", f"listen = {port}", text))
        self.approve()

    def approve(self) -> None:
        """Approve the config as it is now, as its user would after editing it by hand."""
        approve_config(self.config, env=self.env, cwd=self.dir)

    def start(self, *, wait: bool = True) -> Project:  # type: ignore[override]
        argv = hosts_argv([str(CORDON), "start", "--log-level", "debug"], {"api.test": "127.0.0.1"},
                          self.dir.parent / f"{self.dir.name}-hosts")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, cwd=self.dir, env={**self.env, self.SECRET_VAR: self.secret},
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        if wait:
            deadline = time.monotonic() + 20
            while self.cordon("wait", "--timeout", "0.3").returncode != 0:
                assert self.proc.poll() is None, f"cordon start exited {self.proc.returncode}:\n{self.logs()}"
                assert time.monotonic() < deadline, f"cordon start not ready:\n{self.logs()}"
        return self

    def stop(self, sig: int = 15) -> str:
        if self.proc is not None:
            terminate(self.proc)
            self.proc = None
        return ""

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def token(self, name: str = "default") -> str:
        return TokenStore.open(self.paths.tokens_path).value(name)

    def proxy_url(self, port: int, name: str = "default") -> str:
        return f"http://{self.paths.namespace}:{self.token(name)}@127.0.0.1:{port}"


@pytest.fixture
def projects(tmp_path: Path) -> Iterator[Callable[[str], Project]]:
    """A factory of :class:`Project` under ``tmp_path`` (sharing this test's HOME/XDG, so each knows the
    others' scopes); every proxy started is stopped at the end."""
    require()  # the proxies' mount namespace (skips with the reason where it cannot be made)
    made: list[Project] = []

    def make(name: str) -> Project:
        project = Project(tmp_path, name, secret=f"sk-e2e-{name}-secret-0123456789")
        made.append(project)
        return project

    yield make
    for project in made:
        project.stop()
