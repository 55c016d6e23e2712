"""``cordon doctor --runtimes``: one real request from each runtime found, through a temporary proxy.

A throwaway sandbox (see :mod:`cordon_doctor.sandbox`) runs the real proxy and a local TLS echo upstream on
``localhost``. Each runtime then requests ``https://localhost:<port>/probe/<name>`` with a dummy key and the
env contract applied, and the upstream says what happened:

- it received the request with the real secret → **proxied and injected**;
- it saw a TLS handshake fail (the runtime came straight to it and did not trust its private CA) →
  **ignored the proxy**;
- it saw nothing and the runtime reported a certificate error → **rejected the cordon CA**.

The probe's upstream lives on localhost, which has a route in the sandbox, so the env contract's ``NO_PROXY``
leaves it out as it does for every routed host. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from cordon_config.providers import DUMMY_KEY

from cordon_doctor.finding import Finding, fail, ok, skip, warn
from cordon_doctor.sandbox import ROUTE_HOST, Sandbox, StepFailed, StepResult

PROBE_TIMEOUT = 30.0
CONTRACT_ONLY = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
    "NODE_USE_ENV_PROXY", "NODE_OPTIONS", "GIT_SSL_CAINFO", "GIT_SSL_NO_VERIFY", "NODE_TLS_REJECT_UNAUTHORIZED",
)
_CERT_ERROR = re.compile(
    r"certificate|CERT_|self[- ]signed|local issuer|unable to verify|SSL certificate problem|issuer", re.IGNORECASE
)
NODE_FETCH_MIN = "22.21 (22.x) or 24.0+"
NODE_HTTPS_MIN = "22.21 (22.x) or 24.5+"

PY_URLLIB = """\
import sys, urllib.request
req = urllib.request.Request(sys.argv[1], headers={"Authorization": "Bearer @DUMMY@"})
try:
    with urllib.request.urlopen(req, timeout=20) as r:
        r.read(); print(r.status)
except Exception as e:
    print(f"{type(e).__name__}: {e}", file=sys.stderr); sys.exit(1)
""".replace("@DUMMY@", DUMMY_KEY)
PY_REQUESTS = """\
import sys, requests
try:
    r = requests.get(sys.argv[1], headers={"Authorization": "Bearer @DUMMY@"}, timeout=20); print(r.status_code)
    sys.exit(0 if r.status_code == 200 else 1)
except Exception as e:
    print(f"{type(e).__name__}: {e}", file=sys.stderr); sys.exit(1)
""".replace("@DUMMY@", DUMMY_KEY)
PY_HTTPX = """\
import sys, httpx
try:
    r = httpx.get(sys.argv[1], headers={"Authorization": "Bearer @DUMMY@"}, timeout=20); print(r.status_code)
    sys.exit(0 if r.status_code == 200 else 1)
except Exception as e:
    print(f"{type(e).__name__}: {e}", file=sys.stderr); sys.exit(1)
""".replace("@DUMMY@", DUMMY_KEY)
NODE_FETCH = """\
if (typeof fetch !== 'function') { console.error('NO_FETCH'); process.exit(3); }
fetch(process.argv[1], {headers: {Authorization: 'Bearer @DUMMY@'}, signal: AbortSignal.timeout(20000)})
  .then(async (r) => { await r.text(); console.log(r.status); process.exit(r.status === 200 ? 0 : 1); })
  .catch((e) => { console.error(String(e && e.cause ? (e.cause.code || '') + ' ' + e.cause.message : e)); process.exit(1); });
""".replace("@DUMMY@", DUMMY_KEY)
NODE_HTTPS = """\
const https = require('https');
const req = https.get(process.argv[1], {headers: {Authorization: 'Bearer @DUMMY@'}, timeout: 20000}, (res) => {
  res.resume(); res.on('end', () => { console.log(res.statusCode); process.exit(res.statusCode === 200 ? 0 : 1); });
});
req.on('timeout', () => req.destroy(new Error('timeout')));
req.on('error', (e) => { console.error((e.code || '') + ' ' + e.message); process.exit(1); });
""".replace("@DUMMY@", DUMMY_KEY)


@dataclass
class Probe:
    """One runtime to try: how to run it and what to tell the user when it does not go through cordon."""

    name: str
    argv: list[str]
    ca_var: str
    env_drop: tuple[str, ...] = ()
    expect_proxy: bool = True
    proxy_fix: str = "export HTTPS_PROXY and https_proxy as `cordon env` prints them"
    version: str = ""


@dataclass
class ProbeReport:
    """The findings (one per runtime) and a JSON-able detail per runtime."""

    findings: list[Finding] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)


def _version(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (result.stdout or result.stderr).strip().splitlines()[0] if (result.stdout or result.stderr) else ""


def node_version_tuple(text: str) -> tuple[int, int] | None:
    """``v20.20.2`` → (20, 20)."""
    m = re.match(r"v?(\d+)\.(\d+)", text.strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def node_honours_env_proxy(version: tuple[int, int] | None, *, https_module: bool) -> bool:
    """Whether this Node reads HTTPS_PROXY under NODE_USE_ENV_PROXY=1 (fetch: 22.21+/24.0+; https: 22.21+/24.5+)."""
    if version is None:
        return False
    if version[0] == 22:
        return version[1] >= 21
    if version[0] == 24 and https_module:
        return version[1] >= 5
    return version[0] >= 24


def no_env_proxy_fix(honours: bool, version: str) -> str:
    """The fix for Node's fetch without NODE_USE_ENV_PROXY: set it, when this Node honours it; else setting it
    (the env contract does already) changes nothing, and only another Node or a proxy agent helps."""
    if honours:
        return (f"set NODE_USE_ENV_PROXY=1 (part of `cordon env`): Node's fetch ignores HTTPS_PROXY without it "
                f"(needs Node {NODE_FETCH_MIN})")
    return (f"NODE_USE_ENV_PROXY=1 (set by `cordon env`) is not enough: this is Node {version}, and only Node "
            f"{NODE_FETCH_MIN} honours it; upgrade Node, or route the app through a proxy agent (undici "
            "EnvHttpProxyAgent / global-agent)")


def _python_has(module: str) -> bool:
    try:
        result = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, timeout=20,
                                check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


NODE_HTTPS_OWN_AGENT = NODE_HTTPS.replace(
    "{headers:", "{agent: new https.Agent({keepAlive: true}), headers:"
)  # a library's own agent, as axios, got and SDKs pass one


def node_probes(node: str, version: str) -> list[Probe]:
    """Node with the whole env contract (its ``NODE_OPTIONS`` loads cordon's register hook, which must route
    fetch, https and a library's own agent on any Node), then fetch and https without the hook (whether this
    Node would manage alone: ``NODE_USE_ENV_PROXY``)."""
    vt = node_version_tuple(version)
    hook = "NODE_OPTIONS (part of `cordon env`) must load cordon's register hook; run `cordon setup` to restore it"
    alone = ("without cordon's register hook, Node {need} is needed for NODE_USE_ENV_PROXY=1; this is Node {have}: "
             "keep NODE_OPTIONS as `cordon env` prints it")
    return [
        Probe("node-fetch", [node, "-e", NODE_FETCH], "NODE_EXTRA_CA_CERTS", proxy_fix=hook, version=version),
        Probe("node-https", [node, "-e", NODE_HTTPS], "NODE_EXTRA_CA_CERTS", proxy_fix=hook, version=version),
        Probe("node-https-own-agent", [node, "-e", NODE_HTTPS_OWN_AGENT], "NODE_EXTRA_CA_CERTS", proxy_fix=hook,
              version=version),
        Probe("node-fetch-without-hook", [node, "-e", NODE_FETCH], "NODE_EXTRA_CA_CERTS", env_drop=("NODE_OPTIONS",),
              expect_proxy=node_honours_env_proxy(vt, https_module=False),
              proxy_fix=alone.format(need=NODE_FETCH_MIN, have=version), version=version),
        Probe("node-https-without-hook", [node, "-e", NODE_HTTPS], "NODE_EXTRA_CA_CERTS", env_drop=("NODE_OPTIONS",),
              expect_proxy=node_honours_env_proxy(vt, https_module=True),
              proxy_fix=alone.format(need=NODE_HTTPS_MIN, have=version), version=version),
    ]


def discover(which: Callable[[str], str | None] = shutil.which) -> tuple[list[Probe], list[Finding]]:
    """The probes for every runtime found, and a skip finding for each one that is not installed."""
    probes: list[Probe] = []
    missing: list[Finding] = []
    curl = which("curl")
    if curl:
        probes.append(Probe("curl", [curl, "-sS", "--fail", "--max-time", "20", "-o", "/dev/null", "-w",
                                     "%{http_code}", "-H", f"Authorization: Bearer {DUMMY_KEY}"], "CURL_CA_BUNDLE",
                            version=" ".join(_version([curl, "--version"]).split()[:2])))
    else:
        missing.append(skip("runtime.curl", "curl not found on PATH"))
    py = sys.executable
    pyver = f"Python {sys.version.split()[0]}"
    probes.append(Probe("python-urllib", [py, "-c", PY_URLLIB], "SSL_CERT_FILE", version=pyver))
    for module, script, var in (("requests", PY_REQUESTS, "REQUESTS_CA_BUNDLE"), ("httpx", PY_HTTPX, "SSL_CERT_FILE")):
        if _python_has(module):
            probes.append(Probe(f"python-{module}", [py, "-c", script], var, version=pyver))
        else:
            missing.append(skip(f"runtime.python-{module}", f"{module} is not importable in {py}"))
    system_py = which("python3")
    if system_py and os.path.realpath(system_py) != os.path.realpath(py):
        version = _version([system_py, "--version"])
        probes.append(Probe("python3-path-urllib", [system_py, "-c", PY_URLLIB], "SSL_CERT_FILE", version=version))
    node = which("node")
    if node:
        probes += node_probes(node, _version([node, "--version"]))
    else:
        missing.append(skip("runtime.node", "node not found on PATH"))
    git = which("git")
    if git:
        probes.append(Probe("git", [git, "-c", f"http.extraHeader=Authorization: Bearer {DUMMY_KEY}",
                                    "ls-remote"], "GIT_SSL_CAINFO", version=_version([git, "--version"])))
    else:
        missing.append(skip("runtime.git", "git not found on PATH"))
    return probes, missing


def probe_environment(base: Mapping[str, str], contract: Mapping[str, str]) -> dict[str, str]:
    """``base`` without any proxy/CA variable, plus the env contract (whose NO_PROXY leaves out the routed
    probe host, as for any routed host)."""
    env = {k: v for k, v in base.items() if k not in CONTRACT_ONLY}
    env.update(contract)
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def _url(box: Sandbox, name: str) -> str:
    assert box.echo is not None
    path = f"/probe/{name}" + ("/repo.git" if name == "git" else "")
    return f"https://{ROUTE_HOST}:{box.echo.port}{path}"


def run_probe(box: Sandbox, probe: Probe, env: Mapping[str, str]) -> tuple[Finding, dict[str, Any]]:
    """Run one runtime against the sandbox and classify what happened."""
    assert box.echo is not None
    box.echo.reset()
    env = {k: v for k, v in env.items() if k not in probe.env_drop}
    check = f"runtime.{probe.name}"
    start = time.perf_counter()
    try:
        result = subprocess.run([*probe.argv, _url(box, probe.name)], capture_output=True, text=True,
                                timeout=PROBE_TIMEOUT, env=env, stdin=subprocess.DEVNULL, check=False)
        code, stderr = result.returncode, result.stderr.strip()
    except subprocess.TimeoutExpired:
        code, stderr = -1, f"no answer within {PROBE_TIMEOUT:.0f} s"
    except OSError as exc:
        code, stderr = -1, f"cannot run: {exc.strerror}"
    seconds = time.perf_counter() - start
    if code == 3 and stderr == "NO_FETCH":
        return skip(check, f"this Node has no global fetch ({probe.version}; fetch needs Node 18+)"), {
            "runtime": probe.name, "version": probe.version, "result": "not-available"}
    prefix = f"/probe/{probe.name}"
    got = [r for r in box.echo.requests if r.path.startswith(prefix)]
    if not got and code != 0:  # a refused handshake is recorded a moment after the client gives up
        deadline = time.monotonic() + 1.0
        while not box.echo.tls_failures and time.monotonic() < deadline:
            time.sleep(0.02)
    detail: dict[str, Any] = {"runtime": probe.name, "version": probe.version, "exit_code": code,
                              "ms": round(seconds * 1000, 1)}
    last = stderr.splitlines()[-1][:300] if stderr else ""
    secret_seen = any(v == f"Bearer {box.secret}" for r in got for v in r.header_values("Authorization"))
    dummy_seen = any(DUMMY_KEY in v for r in got for _, v in r.headers)
    bundle_fix = f"export {probe.ca_var}=<the path `cordon env` prints>"
    if got and secret_seen and not dummy_seen and code == 0:
        detail["result"] = "proxied-injected"
        return ok(check, f"proxied and injected ({probe.version})"), detail
    if got and dummy_seen:
        detail["result"] = "not-injected"
        return fail(check, "reached the upstream with the dummy key (not injected)", probe.proxy_fix), detail
    if got:
        detail["result"] = "error"
        return fail(check, f"went through cordon but failed: exit {code} {last}".strip(), bundle_fix), detail
    if box.echo.tls_failures:
        detail["result"] = "ignored-proxy"
        message = f"ignored the proxy (connected straight to the upstream) ({probe.version})"
        make = fail if probe.expect_proxy else warn
        return make(check, message, probe.proxy_fix), detail
    if _CERT_ERROR.search(stderr):
        detail["result"] = "rejected-ca"
        return fail(check, f"rejected the cordon CA: {last}", bundle_fix), detail
    detail["result"] = "error"
    return fail(check, f"failed: exit {code} {last}".strip(), "run it by hand under `cordon run -- ...` to see why"), detail


def probe_runtimes(out: TextIO | None = None) -> ProbeReport:
    """Start a sandbox, probe every runtime found, clean up; a failed sandbox is one fail finding."""
    from cordon_ca import write_combined_bundle
    from cordon_setup.envvars import env_contract
    from cordon_setup.nodehook import ensure_hook

    report = ProbeReport()

    def on_step(result: StepResult) -> None:
        if out is not None:
            out.write(f"  {result.title}: {result.detail} ({result.seconds * 1000:.0f} ms)\n")
            out.flush()

    probes, missing = discover()
    box = Sandbox(on_step)
    try:
        box.start()
        assert box.paths is not None and box.token is not None
        write_combined_bundle(box.paths.ca_cert, box.paths.combined_bundle)
        ensure_hook(box.paths)
        contract = env_contract(box.paths, box.port, box.token, routed_hosts=[ROUTE_HOST])
        env = probe_environment(os.environ, contract)
        report.findings.append(ok("runtime.env", f"the env contract with a route for {ROUTE_HOST} "
                                  f"(NO_PROXY={env.get('NO_PROXY', '')})"))
        for probe in probes:
            finding, detail = run_probe(box, probe, env)
            report.findings.append(finding)
            report.details.append(detail)
    except StepFailed as exc:
        report.findings.append(fail("runtime.proxy", f"the temporary proxy failed at step '{exc.step}': {exc}",
                                    exc.hint or "run: cordon demo   (it shows each step)"))
    except Exception as exc:  # e.g. no system CA bundle for the combined bundle: one line, not a traceback
        report.findings.append(fail("runtime.proxy", f"the runtime probe could not run: {type(exc).__name__}: {exc}",
                                    getattr(exc, "hint", None) or "run: cordon demo   (it shows each step)"))
    finally:
        box.close()
    report.findings.extend(missing)
    return report
