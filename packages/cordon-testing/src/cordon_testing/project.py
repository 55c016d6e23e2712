"""Test helpers (tests only): a real project driven through the real ``cordon`` command, as a user drives it.

:class:`Project` runs ``cordon setup``, ``cordon route add``, ``cordon env`` and ``cordon start`` as
subprocesses of the installed ``cordon`` script in a directory of its own, with HOME and XDG_CONFIG_HOME of the
test: two of them are two real projects side by side, each with its own scope, port, CA, tokens and proxy.
With a :class:`~cordon_testing.namespaces.PrivateNetwork` every command, proxy and client runs inside it, so
the ports ``cordon setup`` picks (the first free from 6790) are the test's alone: no other test run on the
machine can bind one between the setup that chose it and the ``cordon start`` that binds it.
Loopback only; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cordon_testing.namespaces import PrivateNetwork

TIMEOUT = 30.0
CORDON = Path(sys.executable).parent / "cordon"


def cordon(*args: str, cwd: Path, env: Mapping[str, str], check: bool = True, timeout: float = TIMEOUT,
           input: str | None = None, network: PrivateNetwork | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``cordon`` with ``args`` in ``cwd`` (inside ``network`` when given); ``check`` fails
    with its stderr when it exits non-0."""
    argv = [str(CORDON), *args]
    done = subprocess.run(network.argv(argv) if network else argv, cwd=cwd, env=dict(env), capture_output=True, text=True,
                          timeout=timeout, input=input, stdin=None if input is not None else subprocess.DEVNULL)
    if check and done.returncode != 0:
        raise AssertionError(f"cordon {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done


class Project:
    """A project directory set up with the real ``cordon`` (no integration unless asked); with ``network`` its
    commands and its proxy run inside that private network namespace."""

    def __init__(self, directory: Path, env: Mapping[str, str] | None = None, *,
                 network: PrivateNetwork | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        base = dict(os.environ if env is None else env)
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy",
                     "NO_PROXY", "no_proxy"):
            base.pop(name, None)
        self.env = base
        self.network = network
        self.proc: subprocess.Popen[bytes] | None = None

    def run(self, *args: str, check: bool = True, cwd: Path | None = None,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``cordon ARGS`` in the project (or ``cwd``)."""
        return cordon(*args, cwd=cwd or self.dir, env={**self.env, **(env or {})}, check=check,
                      network=self.network)

    def setup(self, *args: str) -> Project:
        self.run("setup", *args)
        return self

    @property
    def config(self) -> Path:
        return self.dir / "cordon.toml"

    @property
    def port(self) -> int:
        return int(tomllib.loads(self.config.read_text(encoding="utf-8"))["listen"])

    def route_localhost(self, name: str, var: str, *, upstream_ca: Path, header: str = "Authorization",
                        scheme: str | None = "Bearer") -> None:
        """A route for ``localhost`` (any port) with the secret from ``$var``; the upstream's CA trusted."""
        argv = ["route", "add", "--name", name, "--host", "localhost", "--header-name", header, "--source", "env",
                "--var", var]
        if scheme:
            argv += ["--scheme", scheme]
        self.run(*argv)
        self.run("config", "set", "tls.upstream_ca_file", str(upstream_ca))

    def contract(self, token: str = "default") -> dict[str, str]:
        """What ``cordon env --json`` prints (the env contract a client gets)."""
        return dict(json.loads(self.run("env", "--json", "--token", token).stdout))

    def client_env(self, token: str = "default") -> dict[str, str]:
        """The environment of a client started after ``eval "$(cordon env)"``."""
        return {**self.env, **self.contract(token)}

    def start(self, *args: str, secrets: Mapping[str, str] | None = None) -> Project:
        """``cordon start ARGS`` in the background; returns once its port answers."""
        env = {**self.env, **(secrets or {})}
        argv = [str(CORDON), "start", *args]
        self.proc = subprocess.Popen(self.network.argv(argv) if self.network else argv, cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"cordon start exited {self.proc.returncode}:\n{self.stop()}")
            if _answers(self.port, self.network):
                return self
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"cordon start did not answer on {self.port} within {TIMEOUT} s")

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Stop the proxy this project started; its output."""
        proc, self.proc = self.proc, None
        if proc is None:
            return ""
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(TIMEOUT)
        if proc.stdout is None:
            return ""
        with proc.stdout:
            return proc.stdout.read().decode(errors="replace")

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answers(port: int, network: PrivateNetwork | None = None) -> bool:
    import socket

    def connect() -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            return sock.connect_ex(("127.0.0.1", port)) == 0

    return network.call(connect) if network else connect()


def run_client(argv: Sequence[str], env: Mapping[str, str], *, network: PrivateNetwork | None = None,
               **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """A client process with exactly ``env`` (bounded), inside ``network`` when given."""
    argv = network.argv(argv) if network else list(argv)
    return subprocess.run(argv, env=dict(env), capture_output=True, text=True, timeout=TIMEOUT, **kwargs)
