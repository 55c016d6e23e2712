"""The test keyring backends: usable when chosen explicitly, never chosen automatically."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cordon_config.edit import scaffold_config
from cordon_testing.config import FileKeyring, MemoryKeyring, approve_config
from keyring.backend import get_all_keyring


def test_test_backends_are_never_viable() -> None:
    assert not MemoryKeyring.viable and not FileKeyring.viable
    assert not any(isinstance(k, MemoryKeyring | FileKeyring) for k in get_all_keyring())
    assert "test only" in str(MemoryKeyring())


def test_file_keyring_selected_by_environment_in_a_subprocess(tmp_path: Path) -> None:
    config = tmp_path / "cordon.toml"
    scaffold_config(config, listen=6790, ca_cert_path="/c", ca_key_path="/k")
    store = tmp_path / "keyring.json"
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "cordon_testing.config.FileKeyring",
           "CORDON_TEST_KEYRING_FILE": str(store)}
    approve_config(config, env=env)
    common = [sys.executable, "-m", "cordon_config"]
    subprocess.run([*common, "route", "add", "-c", str(config), "--name", "a", "--host", "a.test",
                    "--header-name", "x-k"], check=True, env=env, timeout=60, capture_output=True)
    result = subprocess.run([*common, "secret", "set", "a", "-c", str(config)], input="s3cret\n", text=True,
                            env=env, timeout=60, capture_output=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(store.read_text()) == {"cordon\0a": "s3cret"}
    assert (store.stat().st_mode & 0o777) == 0o600
    check = subprocess.run([*common, "secret", "check", "-c", str(config)], env=env, timeout=60,
                           capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.startswith("ok") and "s3cret" not in check.stdout
