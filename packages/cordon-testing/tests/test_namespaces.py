"""The hosts file of a private mount namespace: what the test writes is what a process inside resolves, and a
rewrite while the process runs is seen at its next lookup."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cordon_testing.namespaces import hosts_argv, hosts_text, require, rewrite_hosts


def test_hosts_text_lets_names_map_localhost() -> None:
    assert hosts_text({"db.test": "127.0.0.2"}).splitlines() == [
        "127.0.0.1 localhost", "::1 localhost ip6-localhost", "127.0.0.2 db.test"]
    assert hosts_text({"localhost": "127.0.0.2"}).splitlines() == ["127.0.0.2 localhost"]


def test_a_running_process_sees_the_rewritten_hosts_file(tmp_path: Path) -> None:
    require()
    if shutil.which("getent") is None:
        pytest.skip("getent (libc-bin) is not installed")
    hosts = tmp_path / "hosts"
    script = "getent ahostsv4 db.test | head -n1; read line; getent ahostsv4 db.test | head -n1"
    proc = subprocess.Popen(hosts_argv(["sh", "-c", script], {"db.test": "127.0.0.1"}, hosts),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        before = proc.stdout.readline()
        inode = hosts.stat().st_ino
        rewrite_hosts(hosts, {"db.test": "127.0.0.2"})
        assert hosts.stat().st_ino == inode  # the bind mount holds this inode: a rename would go unseen
        out, err = proc.communicate("\n", timeout=20)
    finally:
        proc.kill()
    assert before.split()[0] == "127.0.0.1", err
    assert out.split()[0] == "127.0.0.2", err
