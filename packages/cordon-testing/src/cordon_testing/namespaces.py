"""Where test names resolve and unrouted test upstreams live: Linux namespaces, never a product switch.

The shipped proxy reads nothing from its environment that changes DNS or the SSRF policy, so tests arrange
the world around it instead:

* **Names.** A test proxy runs in its own mount namespace (``unshare -m``) where a hosts file the test wrote
  is bind-mounted over ``/etc/hosts``: ``api.test`` → 127.0.0.1 through the ordinary resolver. As root
  (CI) that is a plain mount namespace; elsewhere an unprivileged user namespace (``unshare -rm``) where the
  kernel allows one. The host's real ``/etc/hosts`` is never touched.
* **Unrouted upstreams.** The SSRF denylist refuses loopback, private and documentation addresses, so a test
  that must tunnel somewhere *allowed* makes a private network namespace (:class:`PrivateNetwork`): loopback
  up plus :data:`UNROUTED_ADDRESS` (a global unicast address) on ``lo``, and no other interface, so no packet
  can leave it. The proxy runs inside it (``nsenter --net``); the test creates its own sockets there from a
  thread that joined it (network namespaces are per thread), and runs client programs under ``nsenter``.

Where a namespace cannot be made (not Linux, no ``unshare``, no user namespaces), :func:`unavailable` says why
and the tests that need one skip with that reason. Imported only by tests and the benchmark.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = [
    "UNROUTED_ADDRESS",
    "PrivateNetwork",
    "hosts_argv",
    "hosts_text",
    "private_argv",
    "require",
    "rewrite_hosts",
    "unavailable",
]

#: Global unicast (just above the carrier-grade NAT block), so the SSRF denylist lets it through. It exists only
#: on the loopback interface of a :class:`PrivateNetwork`, which has no route anywhere else.
UNROUTED_ADDRESS = "100.128.0.1"
CLONE_NEWNET = 0x40000000
_MOUNT_HOSTS = 'mount --bind "$0" /etc/hosts && exec "$@"'
T = TypeVar("T")


def _works(argv: Sequence[str]) -> bool:
    try:
        return subprocess.run(list(argv), capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.cache
def _mount_prefix() -> tuple[tuple[str, ...] | None, str]:
    """The ``unshare`` prefix that gives a process a private mount namespace, or (None, why not)."""
    if not sys.platform.startswith("linux"):
        return None, f"mount namespaces are Linux-only (this is {sys.platform})"
    unshare = shutil.which("unshare")
    if unshare is None:
        return None, "unshare (util-linux) is not installed"
    candidates: list[tuple[str, ...]] = [(unshare, "-m", "--propagation", "private")] if os.geteuid() == 0 else []
    candidates.append((unshare, "-r", "-m", "--propagation", "private"))
    for prefix in candidates:
        if _works([*prefix, "sh", "-c", "mount --bind /dev/null /dev/null"]):
            return prefix, ""
    return None, "cannot make a mount namespace here (not root, and user namespaces are not allowed)"


@functools.cache
def _network_support() -> str:
    """'' when :class:`PrivateNetwork` can be made here, else why not."""
    prefix, why = _mount_prefix()
    if prefix is None:
        return why
    if os.geteuid() != 0:
        return "a private network namespace that this process can join needs root (CI runs as root)"
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (util-linux / iproute2)"
    return ""


def unavailable(*, network: bool = False) -> str:
    """Why the namespaces a test needs cannot be made here ('' when they can)."""
    return _network_support() if network else _mount_prefix()[1]


def require(*, network: bool = False) -> None:
    """Skip the calling test (under pytest) or raise RuntimeError when the namespaces cannot be made."""
    why = unavailable(network=network)
    if not why:
        return
    if "pytest" in sys.modules:
        import pytest

        pytest.skip(why)
    raise RuntimeError(why)


def hosts_text(names: Mapping[str, str]) -> str:
    """A hosts file: ``name → address`` for each of ``names``, plus localhost unless ``names`` maps it."""
    lines = [] if "localhost" in names else ["127.0.0.1 localhost", "::1 localhost ip6-localhost"]
    lines += [f"{address} {name}" for name, address in names.items()]
    return "\n".join(lines) + "\n"


def rewrite_hosts(hosts_file: Path, names: Mapping[str, str]) -> None:
    """Point ``names`` elsewhere in a hosts file already bind-mounted over a namespace's ``/etc/hosts``.

    Written in place (same inode), never replaced by a rename: the mount holds the inode, and glibc reads the
    file on every lookup (no nscd here), so the processes inside resolve the new addresses from their next lookup.
    """
    with open(hosts_file, "r+", encoding="utf-8") as file:
        file.truncate(0)
        file.write(hosts_text(names))


def hosts_argv(argv: Sequence[str], names: Mapping[str, str], hosts_file: Path) -> list[str]:
    """``argv`` run in a private mount namespace whose ``/etc/hosts`` is ``hosts_file`` (written here)."""
    require()
    prefix, _ = _mount_prefix()
    assert prefix is not None
    hosts_file.write_text(hosts_text(names), encoding="utf-8")
    return [*prefix, "sh", "-c", _MOUNT_HOSTS, str(hosts_file), *argv]


@functools.cache
def _private_prefix() -> tuple[tuple[str, ...] | None, str]:
    """The ``unshare`` prefix for a private network + mount namespace (root, else a user namespace)."""
    prefix, why = _mount_prefix()
    if prefix is None:
        return None, why
    if shutil.which("ip") is None:
        return None, "ip (iproute2) is not installed"
    candidates: list[tuple[str, ...]] = (
        [("unshare", "-n", "-m", "--propagation", "private")] if os.geteuid() == 0 else []
    )
    candidates.append(("unshare", "-r", "-n", "-m", "--propagation", "private"))
    for candidate in candidates:
        if _works([*candidate, "sh", "-c", f"ip link set lo up && ip addr add {UNROUTED_ADDRESS}/32 dev lo"]):
            return candidate, ""
    return None, "cannot make a private network namespace here (not root, and user namespaces are not allowed)"


def private_argv(argv: Sequence[str], names: Mapping[str, str], hosts_file: Path) -> list[str]:
    """``argv`` (and everything it starts) in a private network namespace, loopback up plus
    :data:`UNROUTED_ADDRESS` on ``lo``, with ``hosts_file`` (written here from ``names``) as ``/etc/hosts``.
    Raises RuntimeError saying why when that cannot be made here."""
    prefix, why = _private_prefix()
    if prefix is None:
        raise RuntimeError(why)
    hosts_file.write_text(hosts_text(names), encoding="utf-8")
    script = f'ip link set lo up && ip addr add {UNROUTED_ADDRESS}/32 dev lo && {_MOUNT_HOSTS}'
    return [*prefix, "sh", "-c", script, str(hosts_file), *argv]


_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class PrivateNetwork:
    """A network namespace of the test's own: ``lo`` up with 127.0.0.1 and :data:`UNROUTED_ADDRESS`, nothing else.

    A holder process (``sleep``) keeps it alive until :meth:`close`. :meth:`call` runs a function on a thread
    that joined it, so the sockets it creates live there; :meth:`argv` prefixes a command with ``nsenter``.
    """

    def __init__(self) -> None:
        require(network=True)
        script = f"ip link set lo up && ip addr add {UNROUTED_ADDRESS}/32 dev lo && echo ready && exec sleep 100000"
        self._holder = subprocess.Popen(
            ["unshare", "-n", "--", "sh", "-c", script], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self._holder.stdout is not None
        if self._holder.stdout.readline().strip() != b"ready":
            self._holder.kill()
            err = self._holder.communicate(timeout=10)[1].decode(errors="replace").strip()
            raise RuntimeError(f"cannot set up a private network namespace: {err}")
        self.path = f"/proc/{self._holder.pid}/ns/net"

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this namespace."""
        return ["nsenter", f"--net={self.path}", "--", *argv]

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` on a thread inside this namespace (sockets it creates stay there); its result or exception."""
        value: list[T] = []
        error: list[BaseException] = []

        def run() -> None:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    assert _libc is not None
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns: {os.strerror(err)}")
                finally:
                    os.close(fd)
                value.append(fn())
            except BaseException as exc:  # handed to the caller's thread
                error.append(exc)

        thread = threading.Thread(target=run, name="private-network", daemon=True)
        thread.start()
        thread.join()
        if error:
            raise error[0]
        return value[0]

    def create_connection(self, address: tuple[str, int], timeout: float | None = None) -> socket.socket:
        """``socket.create_connection`` from inside this namespace."""
        return self.call(lambda: socket.create_connection(address, timeout=timeout))

    def close(self) -> None:
        if self._holder.poll() is None:
            self._holder.kill()
        self._holder.wait(10)
        for stream in (self._holder.stdout, self._holder.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> PrivateNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
