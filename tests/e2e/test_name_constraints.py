"""A name-constrained CA (`[tls] name_constraints = true`) follows the routed hosts, with cordon's real commands.

`cordon route add|edit|remove` re-issue it through the `cordon.routes_changed` hook (cordon-config never
imports cordon-ca), `cordon setup` and `cordon start` when cordon.toml was edited by hand. Every step runs as
``python -m cordon ...`` in a subprocess, with HOME and XDG_CONFIG_HOME in a temporary directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomlkit

pytestmark = pytest.mark.e2e

TIMEOUT = 60


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "proj"
    path.mkdir()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "home" / ".config"),
               CORDON_NC_SECRET="sk-nc-0123456789")
    return path, env


def cordon(project: tuple[Path, dict[str, str]], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    cwd, env = project
    done = subprocess.run([sys.executable, "-m", "cordon", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    if ok:
        assert done.returncode == 0, done.stderr + done.stdout
    return done


def permitted(project: tuple[Path, dict[str, str]]) -> list[str] | None:
    info = json.loads(cordon(project, "ca", "show", "--json").stdout)
    return info["permitted_hosts"]


def set_constrained(project: tuple[Path, dict[str, str]]) -> None:
    config = project[0] / "cordon.toml"
    doc = tomlkit.parse(config.read_text())
    doc.setdefault("tls", tomlkit.table())["name_constraints"] = True
    config.write_text(tomlkit.dumps(doc))


def add_route_by_hand(project: tuple[Path, dict[str, str]], name: str, host: str) -> None:
    with open(project[0] / "cordon.toml", "a", encoding="utf-8") as handle:
        handle.write(f'\n[[routes]]\nname = "{name}"\n[routes.match]\nhost = "{host}"\n[routes.auth]\n'
                     'type = "header"\nheader_name = "Authorization"\nscheme = "Bearer"\n'
                     '[routes.auth.secret]\nsource = "env"\nvar = "CORDON_NC_SECRET"\n')


ROUTE_FLAGS = ["--auth-type", "header", "--header-name", "Authorization", "--scheme", "Bearer",
               "--source", "env", "--var", "CORDON_NC_SECRET"]


def test_route_commands_reissue_the_constrained_ca_and_rebuild_the_bundle(project) -> None:
    cordon(project, "setup")
    assert permitted(project) is None  # the default CA is unconstrained
    set_constrained(project)
    ca_paths = json.loads(cordon(project, "ca", "path", "--json").stdout)
    bundle = Path(ca_paths["bundle"])
    added = cordon(project, "route", "add", "--name", "openai", "--host", "api.openai.com", *ROUTE_FLAGS)
    assert "re-issued the name-constrained CA for api.openai.com" in added.stdout
    assert permitted(project) == ["api.openai.com"]
    ca_pem = Path(ca_paths["cert"]).read_bytes()
    assert ca_pem.strip() in bundle.read_bytes()  # clients that load the bundle trust the new CA
    edited = cordon(project, "route", "edit", "openai", "--host", "api.openai.test")
    assert "re-issued" in edited.stdout and permitted(project) == ["api.openai.test"]
    cordon(project, "route", "remove", "openai", "--yes")
    assert permitted(project) == []  # no route: the CA permits no host at all
    config = project[0] / "cordon.toml"
    config.write_text(config.read_text().replace("name_constraints = true", "name_constraints = false"))
    added = cordon(project, "route", "add", "--name", "b", "--host", "b.test", *ROUTE_FLAGS)
    assert "re-issued the CA without name constraints" in added.stdout
    assert permitted(project) is None  # b.test gets a leaf again


def test_setup_and_start_reissue_after_a_hand_edit(project) -> None:
    cordon(project, "setup")
    set_constrained(project)
    add_route_by_hand(project, "one", "one.test")
    assert "re-issued the name-constrained CA" in cordon(project, "setup").stdout
    assert permitted(project) == ["one.test"]
    add_route_by_hand(project, "two", "two.test")
    cwd, env = project
    proc = subprocess.Popen([sys.executable, "-m", "cordon", "start"], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        cordon(project, "wait", "--timeout", "30")
        assert permitted(project) == ["one.test", "two.test"]
    finally:
        proc.terminate()
        try:
            log = proc.communicate(timeout=TIMEOUT)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            log = proc.communicate()[0]
    assert "re-issued the name-constrained CA" in log
