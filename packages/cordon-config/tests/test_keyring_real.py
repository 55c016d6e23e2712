"""The keyring source against a real Secret Service: gnome-keyring under dbus-run-session, throwaway HOME.

Never touches the user's keyring: the D-Bus session bus is private to dbus-run-session and HOME,
XDG_DATA_HOME and XDG_RUNTIME_DIR point into tmp_path. Skipped where gnome-keyring is not installed.
"""

from __future__ import annotations

import base64
import os
import secrets as pysecrets
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cordon_testing.config import approve_config, route_block, write_config

pytestmark = pytest.mark.keyring

MISSING = [tool for tool in ("gnome-keyring-daemon", "dbus-run-session", "dbus-send") if shutil.which(tool) is None]


@pytest.mark.skipif(bool(MISSING), reason=f"needs {' and '.join(MISSING)} (apt-get install gnome-keyring dbus)")
def test_keyring_routes_against_gnome_keyring(tmp_path: Path) -> None:
    canary = "canary-" + pysecrets.token_hex(12)
    go_value = "gho_" + pysecrets.token_hex(8)
    project = tmp_path / "proj"
    project.mkdir()
    config = write_config(project, route_block("openai", "api.openai.com", 'source = "keyring"\naccount = "openai"')
                          + route_block("gh", "api.github.test",
                                        'source = "keyring"\nservice = "gh:github.com"\naccount = "me"\n'
                                        'decode = "go-keyring"'))
    home = tmp_path / "kr-home"
    runtime = tmp_path / "kr-run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    python = sys.executable
    go_entry = "go-keyring-base64:" + base64.b64encode(go_value.encode()).decode()
    check = textwrap.dedent(f"""
        import keyring
        from cordon_config import load_config
        from cordon_config.secrets import fetch_secret, SecretUnavailable
        print("backend", type(keyring.get_keyring()).__module__)
        config = load_config({str(config)!r})
        keyring.set_password("gh:github.com", "me", {go_entry!r})
        openai, gh = config.routes
        print("openai", fetch_secret(openai, config=config).reveal() == {canary!r})
        print("gh", fetch_secret(gh, config=config).reveal() == {go_value!r})
    """)
    after_delete = textwrap.dedent(f"""
        from cordon_config import load_config
        from cordon_config.secrets import fetch_secret, SecretUnavailable
        config = load_config({str(config)!r})
        try:
            fetch_secret(config.routes[0], config=config)
        except SecretUnavailable as exc:
            print("gone", exc.reason)
    """)
    (tmp_path / "check.py").write_text(check)
    (tmp_path / "after_delete.py").write_text(after_delete)
    script = tmp_path / "session.sh"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        set -e
        printf %s throwaway-password | gnome-keyring-daemon --unlock --components=secrets >/dev/null
        {python} -c 'from cordon_testing.config import wait_for_secret_service; wait_for_secret_service()'
        printf '%s\\n' {canary!r} | {python} -m cordon_config secret set openai -c {config}
        {python} -m cordon_config secret check openai -c {config}
        {python} {tmp_path / 'check.py'}
        {python} -m cordon_config secret delete openai -c {config}
        {python} {tmp_path / 'after_delete.py'}
    """))
    script.chmod(0o700)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"), "XDG_RUNTIME_DIR": str(runtime),
        "LANG": "C.UTF-8",
    }
    approve_config(config, env=env)
    result = subprocess.run(["dbus-run-session", "--", str(script)], capture_output=True, text=True, env=env,
                            timeout=90, cwd=project)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "stored the secret for route openai" in result.stdout
    assert "ok      openai" in result.stdout
    assert "backend keyring.backends.SecretService" in result.stdout
    assert "openai True" in result.stdout and "gh True" in result.stdout
    assert "deleted the secret of route openai" in result.stdout
    assert "gone no keyring entry for service 'cordon' account 'openai'" in result.stdout
    assert canary not in output and go_value not in output
    assert (home / ".local" / "share" / "keyrings").is_dir()
