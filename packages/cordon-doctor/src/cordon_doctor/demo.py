"""``cordon demo``: credential injection end to end in a throwaway scope, with no account and no network.

Steps (each printed as it completes, with its time): temporary scope → cordon CA → local TLS echo upstream
(its own CA, which the proxy verifies) → cordon.toml with one route whose secret is a random ``sk-demo-…``
value in the proxy's environment only → the real proxy subprocess, /health → one HTTPS request through the
proxy with a dummy key, the client trusting only the cordon CA → verification: the upstream received the real
secret and not the dummy, and the secret never came back to the client.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from cordon_config.providers import DUMMY_KEY

from cordon_doctor.mask import SENSITIVE_HEADERS, mask_header_value, mask_secret
from cordon_doctor.report import paint, use_colour
from cordon_doctor.sandbox import ROUTE_HOST, ROUTE_NAME, Sandbox, StepFailed, StepResult

DEMO_SCHEMA = "cordon.demo/1"
REQUEST_PATH = "/v1/demo"
REQUEST_TIMEOUT = 20.0
TOTAL_STEPS = 7
STEP_TITLES = {
    "scope": "temporary scope",
    "ca": "cordon CA",
    "upstream": "local upstream",
    "config": "route + secret",
    "proxy": "proxy",
    "request": "request",
    "verify": "verify",
}


@dataclass
class ClientExchange:
    """What the demo client sent and what came back (no secret in here unless it leaked)."""

    sent: list[tuple[str, str]] = field(default_factory=list)
    status: int = 0
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def proxy_authorization(namespace: str, token: str) -> str:
    """``Basic base64(<namespace>:<token>)``: the proxy token as ``Proxy-Authorization`` carries it."""
    return "Basic " + base64.b64encode(f"{namespace}:{token}".encode()).decode()


def send_request(box: Sandbox) -> ClientExchange:
    """One GET through the proxy (explicit CONNECT, not via env: NO_PROXY would skip localhost)."""
    assert box.paths is not None and box.echo is not None
    ctx = ssl.create_default_context(cafile=str(box.paths.ca_cert))  # trusts the cordon CA and nothing else
    tunnel_headers = {}
    if box.token:
        tunnel_headers["Proxy-Authorization"] = proxy_authorization(box.paths.namespace, box.token)
    conn = http.client.HTTPSConnection("127.0.0.1", box.port, context=ctx, timeout=REQUEST_TIMEOUT)
    conn.set_tunnel(ROUTE_HOST, box.echo.port, headers=tunnel_headers)
    headers = {"Authorization": f"Bearer {DUMMY_KEY}", "User-Agent": "cordon-demo", "Accept": "application/json"}
    exchange = ClientExchange(sent=[("Host", f"{ROUTE_HOST}:{box.echo.port}"), *headers.items()])
    try:
        conn.request("GET", REQUEST_PATH, headers=headers)
        resp = conn.getresponse()
        exchange.status, exchange.reason = resp.status, resp.reason
        exchange.headers = list(resp.getheaders())
        exchange.body = resp.read(1 << 20)
    finally:
        conn.close()
    return exchange


def _request_log_lines(box: Sandbox, wait: float = 1.0) -> list[str]:
    """The proxy's log lines for the demo route (it writes the request line just after answering)."""
    if box.proxy is None:
        return []
    deadline = time.monotonic() + wait
    while True:
        lines = [ln.strip() for ln in box.proxy.log_tail(40).splitlines() if f"route={ROUTE_NAME}" in ln]
        if any(REQUEST_PATH in ln for ln in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def _display_header(name: str, value: str) -> str:
    return f"{name}: {mask_header_value(value) if name.lower() in SENSITIVE_HEADERS else value}"


class DemoPrinter:
    """Step-by-step text output (symbols and colour only on a TTY)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = use_colour(out)
        self.n = 0

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def step(self, title: str, detail: str, seconds: float | None, *, ok: bool = True) -> None:
        self.n += 1
        mark = paint("✓" if ok else "✗", "32" if ok else "31", True) if self.tty else f"{'ok' if ok else 'FAIL':<4}"
        took = f"{seconds * 1000:>6.0f} ms" if seconds is not None else " " * 9
        self.line(f"[{self.n}/{TOTAL_STEPS}] {mark} {title:<16} {took}  {detail}")

    def sub(self, text: str) -> None:
        self.line(f"{'':>6}{text}")


class Demo:
    """Runs the demo; :meth:`run` returns the exit code (0 ok, 1 a step failed)."""

    def __init__(self, out: TextIO, *, as_json: bool = False, keep: bool = False) -> None:
        self.as_json = as_json
        self.printer = DemoPrinter(out)
        self.out = out
        self.keep = keep
        self.steps: list[dict[str, Any]] = []
        self.exchange: ClientExchange | None = None
        self.upstream: dict[str, Any] | None = None
        self.proxy_log: list[str] = []
        self._current = "scope"

    def _on_step(self, result: StepResult) -> None:
        self.steps.append(
            {"step": result.step, "ok": True, "ms": round(result.seconds * 1000, 1), "detail": result.detail}
        )
        if not self.as_json:
            self.printer.step(STEP_TITLES.get(result.step, result.title), result.detail, result.seconds)

    def run(self) -> int:
        """Every step in order, then cleanup (always)."""
        if not self.as_json:
            self.printer.line("cordon demo: credential injection end to end (temporary scope, no account, no network)")
            self.printer.line()
        box = Sandbox(self._on_step, keep=self.keep)
        failure: StepFailed | None = None
        cleanup: list[str] = []
        try:
            box.start()
            self._request_step(box)
            self._verify_step(box)
        except StepFailed as exc:
            failure = exc
        except Exception as exc:  # an unexpected error still names its step, never a traceback
            failure = StepFailed(self._current, f"{type(exc).__name__}: {exc}")
        finally:
            cleanup = box.close()
        kept = str(box.root) if self.keep and box.root is not None else None
        if self.as_json:
            self._write_json(failure, cleanup, kept)
        else:
            self._write_end(failure, cleanup, box)
        return 1 if failure else 0

    # -- the request and its verification --------------------------------------------------------------
    def _request_step(self, box: Sandbox) -> None:
        self._current = "request"
        assert box.echo is not None
        start = time.perf_counter()
        try:
            exchange = send_request(box)
        except ssl.SSLError as exc:
            raise StepFailed(
                "request", f"TLS through the proxy failed: {exc}", hint="the client trusts only the demo's cordon CA"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise StepFailed("request", f"the request through the proxy failed: {exc}",
                             log_tail=box.proxy.log_tail() if box.proxy else "") from exc
        self.exchange = exchange
        self.proxy_log = _request_log_lines(box)
        received = box.echo.requests
        self.upstream = received[-1].describe() if received else None
        seconds = time.perf_counter() - start
        detail = f"GET https://{ROUTE_HOST}:{box.echo.port}{REQUEST_PATH} via 127.0.0.1:{box.port}"
        self.steps.append({"step": "request", "ok": True, "ms": round(seconds * 1000, 1), "detail": detail})
        if self.as_json:
            return
        p = self.printer
        p.step(STEP_TITLES["request"], detail, seconds)
        p.sub("client sent:")
        for name, value in exchange.sent:
            p.sub(f"  {name}: {value}")
        p.sub("upstream received:")
        if received:
            for name, value in received[-1].headers:
                if name.lower() in ("authorization", "proxy-authorization", "x-api-key") or name == "Host":
                    p.sub(f"  {_display_header(name, value)}")
        else:
            p.sub("  (nothing)")
        p.sub(f"client got back: {exchange.status} {exchange.reason}, {len(exchange.body)} bytes of JSON")
        if self.proxy_log:
            p.sub("proxy log (route and token name, never header values):")
            for line in self.proxy_log:
                p.sub(f"  {line}")

    def _verify_step(self, box: Sandbox) -> None:
        self._current = "verify"
        assert box.echo is not None and self.exchange is not None
        start = time.perf_counter()
        exchange, secret = self.exchange, box.secret
        received = [r for r in box.echo.requests if r.path == REQUEST_PATH]
        if exchange.status != 200:
            raise StepFailed("verify", f"the proxy answered {exchange.status} {exchange.reason}: "
                             f"{exchange.body[:200].decode(errors='replace').strip()}",
                             log_tail=box.proxy.log_tail() if box.proxy else "")
        if len(received) != 1:
            raise StepFailed("verify", f"the upstream received {len(received)} requests, expected 1")
        got = received[0]
        auth = got.header_values("Authorization")
        if any(DUMMY_KEY in v for _, v in got.headers):
            raise StepFailed("verify", "the upstream received the dummy key: cordon did not replace it")
        if auth != [f"Bearer {secret}"]:
            raise StepFailed("verify", "the upstream did not receive the injected secret in Authorization "
                             f"(got {[mask_header_value(v) for v in auth]})")
        if got.header("Proxy-Authorization") is not None:
            raise StepFailed("verify", "Proxy-Authorization was forwarded to the upstream")
        blob = exchange.body + "".join(f"{k}: {v}\n" for k, v in exchange.headers).encode()
        if secret.encode() in blob:
            raise StepFailed("verify", "the real secret came back to the client")
        if box.proxy is not None and secret in box.proxy.log_tail(100000):
            raise StepFailed("verify", "the proxy wrote the real secret to its log")
        seconds = time.perf_counter() - start
        detail = f"upstream got Bearer {mask_secret(secret)}, not the dummy; the client never saw it"
        self.steps.append({"step": "verify", "ok": True, "ms": round(seconds * 1000, 1), "detail": detail})
        if not self.as_json:
            self.printer.step(STEP_TITLES["verify"], "injection checked", seconds)
            self.printer.sub("the upstream received the real secret, not the dummy key")
            self.printer.sub("Proxy-Authorization stayed between the client and cordon")
            self.printer.sub("the real secret never reached the client (not in the response headers or body)")
            self.printer.sub("the real secret is not in the proxy's log")

    # -- endings ----------------------------------------------------------------------------------------
    def _write_end(self, failure: StepFailed | None, cleanup: list[str], box: Sandbox) -> None:
        p = self.printer
        if failure is not None:
            p.n = len(self.steps)
            p.step(STEP_TITLES.get(failure.step, failure.step), str(failure), None, ok=False)
            if failure.hint:
                p.sub(f"hint: {failure.hint}")
            if failure.log_tail:
                p.sub("proxy output (last lines):")
                for line in failure.log_tail.splitlines():
                    p.sub(f"  | {line}")
        p.line()
        p.line(f"cleanup: {', '.join(cleanup) or 'nothing to clean'}")
        if failure is None:
            p.line("The real secret stayed with cordon: the client only ever held the dummy key.")
        else:
            p.line(f"cordon demo FAILED at step '{failure.step}'.")
            sys.stderr.write(f"cordon: demo failed at step '{failure.step}': {failure}\n")

    def _write_json(self, failure: StepFailed | None, cleanup: list[str], kept: str | None) -> None:
        doc: dict[str, Any] = {
            "schema": DEMO_SCHEMA,
            "ok": failure is None,
            "failed_step": failure.step if failure else None,
            "error": str(failure) if failure else None,
            "steps": self.steps + ([{"step": failure.step, "ok": False, "ms": None, "detail": str(failure)}]
                                   if failure else []),
            "client_sent": dict(self.exchange.sent) if self.exchange else None,
            "upstream_received": self.upstream,
            "proxy_log": self.proxy_log,
            "client_received": (
                {"status": self.exchange.status, "body_bytes": len(self.exchange.body)} if self.exchange else None
            ),
            "cleanup": cleanup,
            "kept_dir": kept,
        }
        self.out.write(json.dumps(doc, indent=2) + "\n")


def run_demo(*, as_json: bool = False, keep: bool = False, out: TextIO | None = None) -> int:
    """Run ``cordon demo``; 0 when every step passed, 1 otherwise."""
    return Demo(out or sys.stdout, as_json=as_json, keep=keep).run()
