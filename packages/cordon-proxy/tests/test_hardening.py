"""Process hardening, checked in a fresh subprocess (it changes process-wide state irreversibly)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = """
import json, resource
from cordon_proxy.hardening import get_dumpable, harden_process
before = {"dumpable": get_dumpable(), "core": resource.getrlimit(resource.RLIMIT_CORE),
          "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)}
done = harden_process()
after = {"dumpable": get_dumpable(), "core": resource.getrlimit(resource.RLIMIT_CORE),
         "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)}
print(json.dumps({"before": before, "done": done, "after": after, "again": harden_process()}))
"""


def _run() -> dict:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=30, check=True
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux-only")
def test_harden_process_linux() -> None:
    result = _run()
    assert result["before"]["dumpable"] == 1, "a fresh interpreter should start dumpable"
    assert result["after"]["dumpable"] == 0
    assert result["after"]["core"] == [0, 0]
    soft, hard = result["after"]["nofile"]
    assert soft == hard
    assert result["done"] == {"dumpable": 0, "core_limit": [0, 0], "nofile": [soft, hard]}
    assert result["again"] == result["done"], "idempotent"


def test_harden_process_never_raises_in_process_shape() -> None:
    """The return value has the documented keys (run in a subprocess: hardening is irreversible)."""
    code = "from cordon_proxy.hardening import harden_process; print(sorted(harden_process()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == "['core_limit', 'dumpable', 'nofile']"


TRIM_SCRIPT = """
import json
from cordon_proxy.hardening import release_startup_memory
def rss_anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
garbage = [bytearray(16000) for _ in range(2500)]  # 40 MB of malloc blocks, as start-up leaves behind
del garbage[::2]  # holes in the middle of the heap: only a trim gives them back
before = rss_anon()
trimmed = release_startup_memory()
print(json.dumps({"trimmed": trimmed, "freed_kib": before - rss_anon()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's (Linux)")
def test_release_startup_memory_gives_freed_heap_back_to_the_system() -> None:
    out = subprocess.run([sys.executable, "-c", TRIM_SCRIPT], capture_output=True, text=True, timeout=30, check=True)
    result = json.loads(out.stdout)
    assert result["trimmed"] is True
    assert result["freed_kib"] > 10_000  # the 20 MB of holes went back (RSS), not only marked free
