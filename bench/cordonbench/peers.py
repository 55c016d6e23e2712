"""Start the targets: cordon, mitmdump (addon) and proxy.py (plugin), each pinned to the proxy core."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cordon_config.proxyproc import proxy_argv
from cordon_testing.config import approve_config

from cordonbench.certs import CertFiles, make_ca
from cordonbench.clients import Target
from cordonbench.procs import pinned, wait_port

PROXYPY_WORKERS = ["--num-workers", "1", "--num-acceptors", "1"]
ADDONS = Path(__file__).resolve().parent.parent / "addons"
ROUTED = "bench.test"
UNROUTED = "other.test"


@dataclass
class Peer:
    """A running proxy under test."""

    name: str
    proc: subprocess.Popen
    port: int
    ca_file: str
    version: str
    notes: list[str] = field(default_factory=list)
    proxy_authorization: str | None = None

    def target(self) -> Target:
        """The client's view of this peer."""
        return Target(self.name, ("127.0.0.1", self.port), self.ca_file, self.proxy_authorization)


def unseen_hosts(n: int) -> list[str]:
    """Route names for first-request measurements: bench1.test … benchN.test."""
    return [f"bench{i}.test" for i in range(1, n + 1)]


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as fh:
        return subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def cordon_toml(port: int, ca_dir: Path, upstream_ca: Path, hosts: list[str], *, policy: bool = True) -> str:
    """cordon.toml with one header route per host (all taking the secret from CORDON_BENCH_SECRET); ``policy``
    False switches response scrubbing and the audit log off (the cordon-bare target: their cost)."""
    lines = [
        f"listen = {port}",
        "",
        "[tls]",
        "enabled = true",
        f'ca_cert_path = "{ca_dir / "ca-cert.pem"}"',
        f'ca_key_path = "{ca_dir / "ca-key.pem"}"',
        f'upstream_ca_file = "{upstream_ca}"',
    ]
    if not policy:
        lines += ["", "[audit]", "enabled = false"]
    for host in hosts:
        lines += [
            "",
            "[[routes]]",
            f'name = "{host.removesuffix(".test")}"',
            *([] if policy else ["scrub_responses = false"]),
            "[routes.match]",
            f'host = "{host}"',
            "[routes.auth]",
            'type = "header"',
            'header_name = "Authorization"',
            'scheme = "Bearer"',
            "[routes.auth.secret]",
            'source = "env"',
            'var = "CORDON_BENCH_SECRET"',
        ]
    return "\n".join(lines) + "\n"


def start_cordon(work: Path, port: int, origin_ca: CertFiles, secret: str, hosts: list[str],
                 core: int | None, extra_env: dict[str, str], *, name: str = "cordon",
                 token: str | None = None, policy: bool = True) -> Peer:
    """``python -m cordon_proxy start -c cordon.toml`` from the workspace interpreter, in ``work/name``; with
    ``token``, proxy tokens are on and the peer's clients send that token (``Proxy-Authorization``);
    ``policy`` False: response scrubbing and the audit log off (the cordon-bare target)."""
    cdir = work / name
    if cdir.exists():
        shutil.rmtree(cdir)
    (cdir / "home").mkdir(parents=True)
    toml = cdir / "cordon.toml"
    toml.write_text(cordon_toml(port, cdir, origin_ca.cert, hosts, policy=policy))
    authorization = None
    if token is not None:
        import base64

        from cordon_config.scope import resolve_scope
        from cordon_config.tokens import TokenStore

        scope = resolve_scope(None, toml, env={"XDG_CONFIG_HOME": str(cdir / "home" / ".config")}, cwd=cdir)
        value = TokenStore.open(scope.tokens_path).ensure(token)
        authorization = "Basic " + base64.b64encode(f"{scope.namespace}:{value}".encode()).decode()
    env = {
        **os.environ,
        "HOME": str(cdir / "home"),
        "XDG_CONFIG_HOME": str(cdir / "home" / ".config"),
        "CORDON_BENCH_SECRET": secret,  # the names resolve through the bench namespace's hosts file
        **extra_env,
    }
    for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(var, None)
    approve_config(toml, env=env, cwd=cdir)  # as the person running the bench would: `cordon route approve --all`
    argv = pinned(proxy_argv(toml), core)
    proc = _spawn(argv, env, cdir / "cordon.log")
    wait_port(port, proc, 30, "cordon")
    from importlib.metadata import version

    loop = "uvloop" if _importable("uvloop") else "asyncio"
    what = "" if policy else ", response scrubbing and audit log off"
    return Peer(name, proc, port, str(cdir / "ca-cert.pem"),
                f"cordon-proxy {version('cordon-proxy')} (Python {sys.version.split()[0]}, {loop} available{what})",
                proxy_authorization=authorization)


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def start_mitmproxy(work: Path, python: Path, port: int, origin_ca: CertFiles, secret: str,
                    core: int | None) -> Peer:
    """mitmdump with the 10-line injecting addon; passes other.test through untouched (ignore_hosts)."""
    mdir = work / "mitmproxy"
    if mdir.exists():
        shutil.rmtree(mdir)
    mdir.mkdir()
    mitmdump = python.parent / "mitmdump"
    env = {**os.environ, "BENCH_SECRET": secret}
    argv = pinned([
        str(mitmdump), "--listen-host", "127.0.0.1", "--listen-port", str(port),
        "--set", f"confdir={mdir}", "--set", f"ssl_verify_upstream_trusted_ca={origin_ca.cert}",
        "--ignore-hosts", r"^other\.test:", "-s", str(ADDONS / "mitm_inject.py"),
    ], core)
    proc = _spawn(argv, env, mdir / "mitmdump.log")
    wait_port(port, proc, 60, "mitmdump")
    out = subprocess.run([str(mitmdump), "--version"], capture_output=True, text=True, timeout=60).stdout
    ver = out.splitlines()[0] if out else "mitmproxy ?"
    return Peer("mitmproxy", proc, port, str(mdir / "mitmproxy-ca-cert.pem"), ver,
                ["mitmdump defaults (flow log to a file), addon bench/addons/mitm_inject.py"])


def start_proxypy(work: Path, python: Path, port: int, origin_ca: CertFiles, secret: str,
                  core: int | None) -> Peer:
    """proxy.py with TLS interception (its default: RSA CA, openssl-made leaves) and the injecting plugin."""
    pdir = work / "proxypy"
    if pdir.exists():
        shutil.rmtree(pdir)
    (pdir / "certs").mkdir(parents=True)
    ca = make_ca(pdir, "proxypy", kind="rsa")
    signing = make_ca(pdir, "proxypy-signing", kind="rsa")  # only its key is used (leaf key)
    env = {**os.environ, "BENCH_SECRET": secret, "PYTHONPATH": str(ADDONS), "HOME": str(pdir)}
    argv = pinned([
        str(python), "-m", "proxy", "--hostname", "127.0.0.1", "--port", str(port),
        "--ca-key-file", str(ca.key), "--ca-cert-file", str(ca.cert),
        "--ca-signing-key-file", str(signing.key), "--ca-cert-dir", str(pdir / "certs"),
        "--ca-file", str(origin_ca.cert), "--plugins", "proxypy_inject.BenchInjectPlugin",
        *PROXYPY_WORKERS,
    ], core)
    proc = _spawn(argv, env, pdir / "proxypy.log")
    wait_port(port, proc, 60, "proxy.py")
    out = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('proxy.py'))"],
                         capture_output=True, text=True, timeout=60).stdout.strip()
    return Peer("proxy.py", proc, port, str(ca.cert), f"proxy.py {out or '?'}",
                ["--num-workers 1 --num-acceptors 1 (one core), plugin bench/addons/proxypy_inject.py"])
