"""A bounded LRU cache of ready server-side ``ssl.SSLContext`` objects, one per host, renewed before expiry."""

from __future__ import annotations

import os
import shutil
import ssl
import stat
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cordon_config.files import write_new_file

from cordon_ca.authority import CertificateAuthority, IssuedLeaf
from cordon_ca.errors import HostNotAllowed
from cordon_ca.hostnames import normalize_host

RENEW_WHEN_LEFT = 0.25  # re-issue a cached leaf once less than this fraction of its lifetime remains


@dataclass(slots=True)
class _Entry:
    context: ssl.SSLContext
    renew_at: float
    not_after: float


#: TLS 1.2 suites a leaf accepts: forward-secret AEAD only (Mozilla's "intermediate" profile for an ECDSA key).
#: OpenSSL's default list also allows the CBC-SHA256/384 suites (an sslyze scan flagged them:
#: scripts/tls_scan.py). TLS 1.3 suites are all AEAD and stay OpenSSL's.
TLS12_CIPHERS = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305"


def _new_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return ctx


def _load_into(ctx: ssl.SSLContext, directory: Path, cert_pem: bytes, key_pem: bytes) -> None:
    path = write_new_file(directory, cert_pem + key_pem, mode=0o600, prefix="leaf", durable=False)
    try:
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)


def scratch_root() -> str | None:
    """Where leaf PEMs briefly live: ``$XDG_RUNTIME_DIR`` if private and ours, else ``/dev/shm`` (tmpfs,
    never on disk), else the default temp dir (None)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        try:
            info = os.stat(runtime)
        except OSError:
            info = None
        if info is not None and stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o077:
            return runtime
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return None


def server_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A TLS ≥ 1.2 server context with ALPN http/1.1 serving this certificate and key.

    ``load_cert_chain`` only takes paths: the PEMs go into one 0600 file inside a fresh 0700 directory
    (see :func:`scratch_root`), both removed as soon as the context has loaded them.
    """
    ctx = _new_context()
    directory = tempfile.mkdtemp(prefix="cordon-leaf-", dir=scratch_root())  # mkdtemp: mode 0700
    try:
        _load_into(ctx, Path(directory), cert_pem, key_pem)
    finally:
        os.rmdir(directory)
    return ctx


class LeafContextCache:
    """Ready server contexts per host, issued by ``ca``; bounded LRU; thread-safe.

    ``allowed_hosts`` restricts which hosts get a leaf (the route set); others raise
    :class:`~cordon_ca.errors.HostNotAllowed`. It is required, so no caller forgets it: ``None`` (any host the
    CA may sign) must be said explicitly (tests, benchmarks). A hit costs a dict lookup; a miss issues a new leaf (P-256 key,
    signature, context). Entries are renewed when less than a quarter of their lifetime remains.
    """

    def __init__(
        self,
        ca: CertificateAuthority,
        maxsize: int = 256,
        *,
        allowed_hosts: Iterable[str] | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.ca = ca
        self.maxsize = maxsize
        self.allowed_hosts = (
            None if allowed_hosts is None else frozenset(normalize_host(h) for h in allowed_hosts)
        )
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._scratch: Path | None = None  # private 0700 dir, created on first miss, removed with the cache
        self._finalizer: weakref.finalize[..., LeafContextCache] | None = None
        self.hits = 0
        self.misses = 0

    def get(self, host: str) -> ssl.SSLContext:
        """The server context for ``host`` (issued on first use or when near expiry)."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(host)
            if entry is not None and now < entry.renew_at:
                self._entries.move_to_end(host)
                self.hits += 1
                return entry.context
        name = normalize_host(host)
        if self.allowed_hosts is not None and name not in self.allowed_hosts:
            raise HostNotAllowed(f"no leaf for {name}: not one of the routed hosts")
        if name != host:
            with self._lock:
                entry = self._entries.get(name)
                if entry is not None and now < entry.renew_at:
                    self._entries.move_to_end(name)
                    self.hits += 1
                    return entry.context
        leaf = self.ca.issue(name, key_format="traditional")
        entry = self._entry_for(leaf)
        with self._lock:
            self.misses += 1
            self._entries[name] = entry
            self._entries.move_to_end(name)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
        return entry.context

    def _scratch_dir(self) -> Path:
        with self._lock:
            if self._scratch is None or not self._scratch.is_dir():
                if self._finalizer is not None:
                    self._finalizer()
                self._scratch = Path(tempfile.mkdtemp(prefix="cordon-leaves-", dir=scratch_root()))
                self._finalizer = weakref.finalize(self, shutil.rmtree, self._scratch, True)
            return self._scratch

    def _entry_for(self, leaf: IssuedLeaf) -> _Entry:
        ctx = _new_context()
        try:
            _load_into(ctx, self._scratch_dir(), leaf.cert_pem, leaf.key_pem)
        except FileNotFoundError:  # the scratch dir was removed under us (tmp cleaner): make a new one
            self._scratch = None
            _load_into(ctx, self._scratch_dir(), leaf.cert_pem, leaf.key_pem)
        start, end = leaf.not_before.timestamp(), leaf.not_after.timestamp()
        return _Entry(ctx, end - (end - start) * RENEW_WHEN_LEFT, end)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, host: object) -> bool:
        return host in self._entries

    def clear(self) -> None:
        """Drop every cached context."""
        with self._lock:
            self._entries.clear()

    def close(self) -> None:
        """Drop every cached context and remove the scratch directory (also done when garbage-collected)."""
        self.clear()
        if self._finalizer is not None:
            self._finalizer()
        self._scratch = None


