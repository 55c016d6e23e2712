"""Scan cordon's client-facing TLS (the MITM endpoint behind `CONNECT api.test:PORT`) with sslyze.

Run from the repo root: `uv run python scripts/tls_scan.py` (`--keep-json DIR` keeps sslyze's JSON output).

What it does, all on 127.0.0.1:
1. Ensures a throwaway sslyze venv at bench/.work/sslyze-venv (git-ignored), outside the project's
   dependencies: created with `uv venv` and `uv pip install 'sslyze>=6,<7'` when missing. Only this step
   sees the caller's environment unchanged (SSL_CERT_FILE etc. for a TLS-intercepting package mirror).
2. Starts a real proxy against a TLS upstream with `cordon_testing.proxy.running_stack`, both inside a
   private network namespace of the scan's own (`cordon_testing.namespaces.PrivateNetwork`: loopback plus one
   address the SSRF policy allows, nothing else), where sslyze and the probes run too (`api.test` is routed;
   `other.test`, unrouted, resolves to that allowed address through the proxy's hosts file).
3. Runs the sslyze CLI in that venv, tunnelled through the proxy (`--https_tunnel`), against
   `api.test:<upstream port>`: SSL 2/3 and TLS 1.0-1.3 cipher suites, certificate info against the cordon CA
   (`--certinfo_ca_file`), compression, renegotiation, Heartbleed, ROBOT, CCS injection, fallback SCSV,
   elliptic curves, session resumption, TLS 1.3 early data, extended master secret.
4. Checks with sslyze that a host that is not routed (`other.test`) is only tunnelled (its certificate comes
   from the upstream's CA, not cordon's), and with Python's ssl that the MITM endpoint refuses a ClientHello
   without SNI or with an SNI other than the CONNECT host.

Prints a summary and flags anything weak (TLS < 1.2, CBC / SHA-1 MAC / RSA key exchange / non forward-secret
suites, compression, insecure renegotiation, known vulnerabilities, a certificate that does not validate).
Exit status: 0 nothing weak, 1 something weak or an expectation failed, 2 the scan itself could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cordon_testing.namespaces import PrivateNetwork
from cordon_testing.proxy import Stack, running_stack

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "bench" / ".work" / "sslyze-venv"
VENV_PYTHON = VENV / "bin" / "python"
SSLYZE_REQUIREMENT = "sslyze>=6,<7"  # the JSON layout parsed below is sslyze 6's
INSTALL_TIMEOUT = 600.0
SCAN_TIMEOUT = 300.0
PROBE_TIMEOUT = 10.0
ROUTED = "api.test"
NOT_ROUTED = "other.test"  # resolved to 127.0.0.1 by the test proxy, served by the upstream, not routed

#: variables that must not reach the scan (a mirror's CA bundle, proxies): kept for the install only
_SCAN_ENV_DROP = {
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PIP_CERT", "NODE_EXTRA_CA_CERTS",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
}

PROTOCOLS = (
    ("ssl_2_0_cipher_suites", "SSL 2.0", "--sslv2"),
    ("ssl_3_0_cipher_suites", "SSL 3.0", "--sslv3"),
    ("tls_1_0_cipher_suites", "TLS 1.0", "--tlsv1"),
    ("tls_1_1_cipher_suites", "TLS 1.1", "--tlsv1_1"),
    ("tls_1_2_cipher_suites", "TLS 1.2", "--tlsv1_2"),
    ("tls_1_3_cipher_suites", "TLS 1.3", "--tlsv1_3"),
)
OTHER_COMMANDS = (
    "--certinfo", "--compression", "--reneg", "--heartbleed", "--robot", "--openssl_ccs", "--fallback",
    "--elliptic_curves", "--resum", "--early_data", "--ems",
)


class ScanError(Exception):
    """The scan could not run (install, proxy, sslyze connectivity or a scan command failed)."""


def _log(message: str) -> None:
    print(f"[tls_scan] {message}", flush=True)


def _scan_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.upper() not in _SCAN_ENV_DROP}


def _uv() -> list[str]:
    found = os.environ.get("UV") or shutil.which("uv")
    if found:
        return [found]
    return [sys.executable, "-m", "uv"]


def _sslyze_version() -> str | None:
    if not VENV_PYTHON.exists():
        return None
    try:
        done = subprocess.run(
            [str(VENV_PYTHON), "-c", "from importlib.metadata import version; print(version('sslyze'))"],
            capture_output=True, text=True, timeout=60, env=_scan_env(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def ensure_sslyze() -> str:
    """The sslyze version in the throwaway venv, creating the venv and installing sslyze when missing."""
    version = _sslyze_version()
    if version is not None:
        _log(f"sslyze {version} already installed in {VENV.relative_to(ROOT)}")
        return version
    steps = []
    if not VENV_PYTHON.exists():
        steps.append([*_uv(), "venv", str(VENV)])
    steps.append([*_uv(), "pip", "install", "--python", str(VENV_PYTHON), SSLYZE_REQUIREMENT])
    for step in steps:
        _log("running: " + " ".join(step))
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)  # full env
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ScanError(f"sslyze install step failed: {exc}") from exc
        if done.returncode != 0:
            raise ScanError(f"sslyze install step exited {done.returncode}:\n{done.stderr[-3000:]}")
    version = _sslyze_version()
    if version is None:
        raise ScanError(f"sslyze still not importable from {VENV_PYTHON}")
    _log(f"installed sslyze {version}")
    return version


def run_sslyze(target: str, stack: Stack, ca_file: Path, commands: list[str], out: Path) -> dict[str, Any]:
    """Run the sslyze CLI through the proxy (where the stack lives); the one server result of its JSON output."""
    argv = [
        str(VENV_PYTHON), "-m", "sslyze", "--quiet", f"--json_out={out}", "--mozilla_config=disable",
        f"--https_tunnel=http://127.0.0.1:{stack.proxy.port}", f"--certinfo_ca_file={ca_file}", *commands, target,
    ]
    if stack.network is not None:
        argv = stack.network.argv(argv)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=SCAN_TIMEOUT, env=_scan_env())
    except subprocess.TimeoutExpired as exc:
        raise ScanError(f"sslyze did not finish within {SCAN_TIMEOUT:.0f} s ({target})") from exc
    if done.returncode != 0 or not out.exists():
        raise ScanError(f"sslyze exited {done.returncode} ({target}):\n{(done.stdout + done.stderr)[-3000:]}")
    results = json.loads(out.read_text(encoding="utf-8"))["server_scan_results"]
    if len(results) != 1 or results[0]["connectivity_status"] != "COMPLETED":
        trace = results[0].get("connectivity_error_trace") if results else None
        raise ScanError(f"sslyze could not reach {target} through the proxy: {trace}")
    server = results[0]
    for name, attempt in server["scan_result"].items():
        if attempt is not None and attempt["status"] not in ("COMPLETED", "NOT_SCHEDULED"):
            raise ScanError(f"sslyze {name} on {target}: {attempt['status']} {attempt.get('error_reason')}\n"
                            f"{(attempt.get('error_trace') or '')[-2000:]}")
    return server


# -- judging ------------------------------------------------------------------------------------------------


def suite_weaknesses(name: str) -> list[str]:
    """Why a cipher suite (IANA name) is weak; empty when it is fine."""
    if name.startswith("TLS_") and "_WITH_" not in name:  # TLS 1.3 suites: AEAD only, key exchange separate
        return ["CCM_8 (short tag)"] if name.endswith("CCM_8_SHA256") else []
    why = []
    kx = name.split("_WITH_", 1)[0]
    if kx.startswith("TLS_RSA") or kx.startswith("SSL_CK"):
        why.append("RSA key exchange")
    if not (kx.startswith("TLS_ECDHE_") or kx.startswith("TLS_DHE_")):
        why.append("not forward-secret")
    if "_anon_" in name or "_NULL_" in name or name.endswith("_NULL"):
        why.append("anonymous/NULL")
    if "_CBC_" in name:
        why.append("CBC")
    if name.endswith("_SHA") or name.endswith("_MD5"):
        why.append("SHA-1/MD5 MAC")
    for bad in ("RC4", "3DES", "_DES_", "EXPORT", "IDEA", "SEED", "RC2"):
        if bad in name:
            why.append(bad.strip("_"))
    return why


def _ok(flag: bool) -> str:
    return "OK  " if flag else "WEAK"


class Report:
    def __init__(self) -> None:
        self.weak: list[str] = []
        self.lines: list[str] = []

    def line(self, text: str = "") -> None:
        self.lines.append(text)

    def check(self, label: str, good: bool, detail: str) -> None:
        self.line(f"  {_ok(good)} {label:<26} {detail}")
        if not good:
            self.weak.append(f"{label}: {detail}")


def judge_main(server: dict[str, Any], cordon_ca: bytes, report: Report) -> None:
    result = server["scan_result"]
    accepted_versions = []
    for key, label, _flag in PROTOCOLS:
        if result[key]["result"]["is_tls_version_supported"]:
            accepted_versions.append(label)
    report.line("Protocols accepted: " + (", ".join(accepted_versions) or "none"))
    report.line("Protocols rejected: " + ", ".join(
        label for key, label, _ in PROTOCOLS if label not in accepted_versions))
    for _key, label, _flag in PROTOCOLS[:4]:
        if label in accepted_versions:
            report.weak.append(f"{label} accepted")
    for key, label, _flag in PROTOCOLS:
        suites = result[key]["result"]["accepted_cipher_suites"]
        if not suites:
            continue
        report.line(f"{label} cipher suites accepted ({len(suites)}):")
        for accepted in suites:
            name = accepted["cipher_suite"]["name"]
            key_info = accepted.get("ephemeral_key") or {}
            kx = key_info.get("curve_name") or (f"DH {key_info.get('size')}" if key_info else "no ephemeral key")
            why = suite_weaknesses(name)
            report.line(f"  {_ok(not why)} {name:<48} {kx}{'  <- ' + ', '.join(why) if why else ''}")
            if why:
                report.weak.append(f"{label} {name}: {', '.join(why)}")

    curves = result["elliptic_curves"]["result"]
    names = [c["name"] for c in curves["supported_curves"] or []]
    report.line("Curves accepted: " + (", ".join(names) or "none"))
    small = [n for n in names if any(n.startswith(p) for p in ("secp160", "secp192", "secp224", "sect1", "sect2"))]
    if small:
        report.weak.append(f"small curves accepted: {', '.join(small)}")

    _judge_certificate(result["certificate_info"]["result"], cordon_ca, report)

    report.line("Checks:")
    comp = result["tls_compression"]["result"]["supports_compression"]
    report.check("TLS compression (CRIME)", not comp, "supported" if comp else "disabled")
    reneg = result["session_renegotiation"]["result"]
    report.check("secure renegotiation", reneg["supports_secure_renegotiation"],
                 "supported (RFC 5746)" if reneg["supports_secure_renegotiation"] else "NOT supported")
    dos = reneg["is_vulnerable_to_client_renegotiation_dos"]
    report.check("client-initiated reneg.", not dos,
                 f"{'accepted' if dos else 'refused'} ({reneg['client_renegotiations_success_count']} accepted)")
    hb = result["heartbleed"]["result"]["is_vulnerable_to_heartbleed"]
    report.check("Heartbleed", not hb, "VULNERABLE" if hb else "not vulnerable")
    robot = result["robot"]["result"]["robot_result"]
    report.check("ROBOT", robot.startswith("NOT_VULNERABLE"), robot)
    ccs = result["openssl_ccs_injection"]["result"]["is_vulnerable_to_ccs_injection"]
    report.check("OpenSSL CCS injection", not ccs, "VULNERABLE" if ccs else "not vulnerable")
    scsv = result["tls_fallback_scsv"]["result"]["supports_fallback_scsv"]
    report.check("TLS_FALLBACK_SCSV", scsv, "supported" if scsv else "NOT supported")
    early = result["tls_1_3_early_data"]["result"]["supports_early_data"]
    report.check("TLS 1.3 early data (0-RTT)", not early, "accepted (replayable)" if early else "not accepted")
    ems = result["tls_extended_master_secret"]["result"]["supports_ems_extension"]
    report.check("extended master secret", ems, "supported" if ems else "NOT supported")
    resum = result["session_resumption"]["result"]
    report.line(
        f"  info session resumption         IDs {resum['session_id_resumption_result']} "
        f"({resum['session_id_successful_resumptions_count']}/{resum['session_id_attempted_resumptions_count']}), "
        f"tickets {resum['tls_ticket_resumption_result']} "
        f"({resum['tls_ticket_successful_resumptions_count']}/{resum['tls_ticket_attempted_resumptions_count']})"
    )


def _host_matches(dns_names: list[str], host: str) -> bool:
    for name in dns_names:
        name = name.lower()
        if name == host or (name.startswith("*.") and host.split(".", 1)[-1] == name[2:] and host.count(".") >= 2):
            return True
    return False


LEADING_DOT_EXCLUSION = "malformed DNS name constraint: ."


def openssl_verify(chain: list[dict[str, Any]], ca_pem: bytes, host: str) -> tuple[bool, str]:
    """``openssl verify`` of the received chain against the CA ``ca_pem`` for ``host`` (path, hostname,
    name constraints)."""
    with tempfile.TemporaryDirectory(prefix="cordon-tls-verify-") as tmp:
        leaf, untrusted, ca = Path(tmp) / "leaf.pem", Path(tmp) / "chain.pem", Path(tmp) / "ca.pem"
        ca.write_bytes(ca_pem)
        leaf.write_text(chain[0]["as_pem"])
        untrusted.write_text("".join(c["as_pem"] for c in chain[1:]))
        args = ["openssl", "verify", "-CAfile", str(ca), "-verify_hostname", host, "-x509_strict"]
        if len(chain) > 1:
            args += ["-untrusted", str(untrusted)]
        try:
            done = subprocess.run([*args, str(leaf)], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"openssl verify could not run: {exc}"
    out = (done.stdout + done.stderr).strip().replace("\n", " ")
    return done.returncode == 0 and out.endswith(": OK"), out


def _judge_certificate(info: dict[str, Any], cordon_ca: bytes, report: Report) -> None:
    deployments = info["certificate_deployments"]
    report.line(f"Certificate (SNI {info['hostname_used_for_server_name_indication']}, {len(deployments)} chain(s), "
                f"chain without SNI: {'none, refused' if info['certificate_deployment_with_sni_disabled'] is None else 'served'}):")
    for dep in deployments:
        leaf = dep["received_certificate_chain"][0]
        key = leaf["public_key"]
        dns = leaf["subject_alternative_name"]["dns_names"]
        report.line(f"  leaf {leaf['subject']['rfc4514_string']}  SAN {dns}  issuer {leaf['issuer']['rfc4514_string']}")
        report.line(f"  key {key['algorithm']} {key.get('ec_curve_name') or ''} {key['key_size']} bits, "
                    f"signature {leaf['signature_algorithm_oid']['name']}, "
                    f"valid {leaf['not_valid_before']} .. {leaf['not_valid_after']}, "
                    f"{len(dep['received_certificate_chain'])} cert(s) sent")
        supplied = [p for p in dep["path_validation_results"] if p["trust_store"]["name"] == "Supplied CA file"]
        trusted = bool(supplied) and supplied[0]["was_validation_successful"]
        error = supplied[0]["validation_error"] if supplied else "no custom CA result"
        how = "path + hostname, cryptography's RFC 5280 verifier"
        if not trusted and error and LEADING_DOT_EXCLUSION in error:
            # cryptography's verifier refuses the excluded ".host" subtree that keeps subdomains out of the
            # CA's reach (docs/tls-and-trust.md); verify path, hostname and name constraints with OpenSSL.
            trusted, error = openssl_verify(dep["received_certificate_chain"], cordon_ca, ROUTED)
            how = "path + hostname + name constraints, OpenSSL (cryptography rejects the .host exclusion)"
        report.check("chain valid (cordon CA)", trusted, f"yes ({how})" if trusted else f"NO: {error}")
        report.check("hostname match (SAN)", _host_matches(dns, ROUTED), f"{ROUTED} in {dns}")
        report.check("SHA-1 in verified chain", not dep["verified_chain_has_sha1_signature"],
                     "yes" if dep["verified_chain_has_sha1_signature"] else "no")
        strong_key = key["key_size"] >= (256 if key["algorithm"] == "ECPublicKey" else 2048)
        report.check("leaf key size", strong_key, f"{key['key_size']} bits")
        report.check("chain order", dep["received_chain_has_valid_order"] is not False,
                     "valid" if dep["received_chain_has_valid_order"] else "INVALID")


def judge_not_routed(server: dict[str, Any], cordon_ca: Path, upstream_ca: Path, report: Report) -> None:
    """The leaf sslyze got for the unrouted host must be the upstream's own (signed by its CA), not cordon's.

    Checked by signature (``verify_directly_issued_by``), not by sslyze's path validation: the test upstream's
    trustme leaf has a critical SAN with a non-empty subject, which cryptography's strict RFC 5280 verifier
    (used by sslyze) rejects whoever serves it.
    """
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    dep = server["scan_result"]["certificate_info"]["result"]["certificate_deployments"][0]
    leaf = x509.load_pem_x509_certificate(dep["received_certificate_chain"][0]["as_pem"].encode())

    def signed_by(ca_path: Path) -> bool:
        try:
            leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_path.read_bytes()))
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    by_upstream, by_cordon = signed_by(upstream_ca), signed_by(cordon_ca)
    issuer = leaf.issuer.rfc4514_string()
    tunnelled = by_upstream and not by_cordon
    report.check(f"not routed ({NOT_ROUTED}), sslyze", tunnelled,
                 f"tunnelled: upstream's own leaf (issuer {issuer})" if tunnelled
                 else f"NOT a plain tunnel: issuer {issuer}, signed by upstream CA {by_upstream}, by cordon CA {by_cordon}")


# -- SNI probes with Python's ssl ---------------------------------------------------------------------------


def _handshake(stack: Stack, connect_host: str, upstream_port: int, sni: str | None, ca: Path) -> str:
    """CONNECT through the proxy, then a TLS handshake with ``sni``; 'ok <version> <cipher>' or the error."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = sni is not None
    with stack.connect(PROBE_TIMEOUT) as raw:
        raw.sendall(f"CONNECT {connect_host}:{upstream_port} HTTP/1.1\r\n"
                    f"Host: {connect_host}:{upstream_port}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = raw.recv(4096)
            if not chunk:
                return "proxy closed before answering CONNECT"
            head += chunk
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        if " 200 " not in status_line + " ":
            return f"CONNECT answered {status_line}"
        try:
            with ctx.wrap_socket(raw, server_hostname=sni) as tls:
                return f"ok {tls.version()} {tls.cipher()[0]}"
        except (ssl.SSLError, OSError) as exc:
            return f"refused: {getattr(exc, 'reason', None) or exc}"


def probe_sni(stack: Stack, upstream_port: int, ca: Path, report: Report) -> None:
    good = _handshake(stack, ROUTED, upstream_port, ROUTED, ca)
    report.check("Python ssl, SNI = host", good.startswith("ok "), good)
    missing = _handshake(stack, ROUTED, upstream_port, None, ca)
    report.check("no SNI", missing.startswith("refused"), missing)
    other = _handshake(stack, ROUTED, upstream_port, NOT_ROUTED, ca)
    report.check(f"SNI {NOT_ROUTED} != CONNECT", other.startswith("refused"), other)


def probe_tunnel(stack: Stack, upstream_port: int, upstream_ca: Path, report: Report) -> None:
    got = _handshake(stack, NOT_ROUTED, upstream_port, NOT_ROUTED, upstream_ca)
    report.check(f"{NOT_ROUTED} vs upstream CA", got.startswith("ok "), got + " (verified against the upstream's CA)")


# -- main ---------------------------------------------------------------------------------------------------


def scan(keep_json: Path | None) -> int:
    started = time.monotonic()
    version = ensure_sslyze()
    report = Report()
    probes = Report()
    with tempfile.TemporaryDirectory(prefix="cordon-tls-scan-") as tmp:
        work = Path(tmp)
        _log("starting cordon proxy + loopback TLS upstream")
        with PrivateNetwork() as network, running_stack(work, env=_scan_env(), network=network) as stack:
            proxy_port, upstream_port = stack.proxy.port, stack.upstream.port
            target = f"{ROUTED}:{upstream_port}"
            _log(f"proxy 127.0.0.1:{proxy_port}, upstream 127.0.0.1:{upstream_port}; scanning {target} via CONNECT")
            t0 = time.monotonic()
            main = run_sslyze(target, stack, stack.cordon_ca,
                              [flag for _, _, flag in PROTOCOLS] + list(OTHER_COMMANDS), work / "main.json")
            main_took = time.monotonic() - t0
            _log(f"checking that {NOT_ROUTED} (not routed) is only tunnelled")
            other = run_sslyze(f"{NOT_ROUTED}:{upstream_port}", stack, stack.upstream_ca, ["--certinfo"],
                               work / "other.json")
            _log("tunnel and SNI probes with Python ssl")
            judge_not_routed(other, stack.cordon_ca, stack.upstream_ca, probes)
            probe_tunnel(stack, upstream_port, stack.upstream_ca, probes)
            probe_sni(stack, upstream_port, stack.cordon_ca, probes)
            cordon_ca_pem = stack.cordon_ca.read_bytes()
        if keep_json is not None:
            keep_json.mkdir(parents=True, exist_ok=True)
            for name in ("main.json", "other.json"):
                shutil.copy(work / name, keep_json / name)
    _log("proxy stopped")

    report.line(f"sslyze {version} -> {target} through cordon's CONNECT proxy 127.0.0.1:{proxy_port} "
                f"(sslyze scan {main_took:.1f} s)")
    judge_main(main, cordon_ca_pem, report)
    report.line("Tunnel and SNI behaviour:")
    report.lines.extend(probes.lines)
    report.weak.extend(probes.weak)

    print()
    print("\n".join(report.lines))
    print()
    if report.weak:
        print(f"WEAK / FAILED ({len(report.weak)}):")
        for item in report.weak:
            print(f"  - {item}")
    else:
        print("Nothing weak accepted.")
    print(f"Total time {time.monotonic() - started:.1f} s")
    return 1 if report.weak else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-json", type=Path, metavar="DIR", help="copy sslyze's JSON output into DIR")
    args = parser.parse_args(argv)
    try:
        return scan(args.keep_json)
    except ScanError as exc:
        print(f"tls_scan: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
