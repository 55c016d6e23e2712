"""The driver that runs the real agent CLIs refuses to do anything outside a private network namespace."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

DRIVER = Path(__file__).parent / "driver.py"


@pytest.mark.skipif(not [n for _, n in socket.if_nameindex() if n != "lo"],
                    reason="this machine has only loopback: the guard has nothing to refuse here")
def test_driver_refuses_the_host_network(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    spec = {"workdir": str(tmp_path), "hosts": ["api.openai.com"], "dummy": "d", "env": {},
            "steps": [{"name": "touch", "argv": ["touch", str(marker)]}]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, str(DRIVER), str(tmp_path / "spec.json")], capture_output=True,
                          text=True, timeout=60, env={"CORDON_AGENT_REAL_KEY": "sk-never-used"})
    assert done.returncode == 3
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["error"].startswith("refusing to run: not in a private network namespace (interfaces: ")
    assert result["steps"] == [] and not marker.exists()
    assert not (tmp_path / "hosts").exists()  # nothing prepared, nothing mounted
