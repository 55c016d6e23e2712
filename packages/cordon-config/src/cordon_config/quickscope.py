"""Where a scope's files are, from ``os`` alone: config discovery and the paths of each scope.

The one implementation of finding the project's cordon.toml upwards (like git finds ``.git``):
:func:`cordon_config.scope.resolve_scope` uses :func:`find_project`, and the fast paths that must start in a
few milliseconds (``cordon env``'s cache) use :func:`resolve`, which gives the same paths as strings (tests
compare the two). Imports nothing beyond what every Python start has loaded (no ``typing``, ``re``,
``pathlib`` or ``hashlib``).
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

CONFIG_NAME = "cordon.toml"


def find_project(cwd: str, home: str) -> str:
    """The directory of the nearest ``cordon.toml`` at or above ``cwd`` (normalised), else ``cwd`` itself.

    The working directory itself always counts. Above it the search stops (without looking there) at ``home``,
    at another filesystem and at a directory other users may write (``/tmp``), and ends at a ``cordon.toml``
    owned by another user (not used: anyone could have planted it). Reads only ``stat`` on the way.
    """
    start = os.path.normpath(cwd)
    if os.path.isfile(os.path.join(start, CONFIG_NAME)):
        return start
    try:
        device = os.stat(start).st_dev
    except OSError:
        return start
    ceiling = os.path.normpath(home) if home else ""
    uid = os.geteuid()
    here = start
    while True:
        parent = os.path.dirname(here)
        if parent in (here, ceiling):
            return start
        try:
            info = os.stat(parent)
        except OSError:
            return start
        if info.st_dev != device or info.st_mode & stat.S_IWOTH:
            return start
        try:
            found = os.stat(os.path.join(parent, CONFIG_NAME))
        except OSError:
            here = parent
            continue
        if stat.S_ISREG(found.st_mode) and found.st_uid == uid:
            return parent
        return start


def home_of(environ: Mapping[str, str]) -> str:
    """``$HOME`` as discovery's ceiling (the password database's idea of it when unset)."""
    return environ.get("HOME") or os.path.expanduser("~")


def resolve(scope: str | None, config: str | None, environ: Mapping[str, str], cwd: str) -> tuple[str, str]:
    """(config path, state dir) as ``str`` of :func:`cordon_config.scope.resolve_scope`'s paths (POSIX)."""
    xdg = environ.get("XDG_CONFIG_HOME", "")
    if xdg and os.path.isabs(xdg):
        home = xdg
    else:
        home = os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".config")
    base = os.path.join(home, "cordon")
    if config is not None:
        path = _pure(os.path.normpath(os.path.join(cwd, config)))
        project = _parent(path)
    elif scope == "user":
        return _pure(os.path.join(base, "cordon.toml")), _pure(os.path.join(base, "user"))
    else:
        project = _pure(find_project(cwd, home_of(environ)))
        path = _pure(os.path.join(project, "cordon.toml"))
    name = project.rstrip("/").rpartition("/")[2] or "root"
    namespace = f"{name}-{_sha256(project.encode('utf-8')).hexdigest()[:8]}"
    return path, _pure(os.path.join(base, "projects", namespace))



def plain_options(args: Sequence[str], valued: Mapping[str, str],
                  flags: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The options of a fast path's plain forms (``--opt VALUE``, ``--opt=VALUE``, and the bare ``flags``),
    each at most once, by key (a flag's value is ``"1"``); None for anything the full parser must see. A
    ``--scope`` other than project/user, or beside ``--config``, is the full parser's too."""
    found: dict[str, str] = {}
    flags = flags or {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in flags:
            if flags[arg] in found:
                return None
            found[flags[arg]] = "1"
            i += 1
            continue
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        key = valued.get(name)
        if key is None or key in found:
            return None
        if not eq:
            if i + 1 >= len(args):
                return None
            value = args[i + 1]
            i += 1
        if not value or value.startswith("-"):
            return None
        found[key] = value
        i += 1
    if "scope" in found and ("config" in found or found["scope"] not in ("project", "user")):
        return None
    return found


def file_identity(path: str) -> str:
    """``device inode size mtime ctime mode uid`` of ``path``, or ``absent``: any replacement, edit or chmod
    changes it (what a fast path's cache is keyed on)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "absent"
    return f"{st.st_dev} {st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {st.st_mode:o} {st.st_uid}"


def changed_at(identity: str) -> float | None:
    """When the file of this :func:`file_identity` last changed (seconds since the epoch), None when absent.

    A cache must not trust a file changed very recently: a second edit within the same timestamp tick keeps
    its identity (git's "racily clean" problem)."""
    if identity == "absent":
        return None
    fields = identity.split()
    return max(int(fields[3]), int(fields[4])) / 1e9


def quote(text: str) -> str:
    """``shlex.quote`` without importing ``shlex`` (and the ``re`` it loads)."""
    safe = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_"
    if text and all(ch in safe for ch in text):
        return text
    return "'" + text.replace("'", "'\"'\"'") + "'"


def _pure(path: str) -> str:
    """``str(PurePosixPath(path))``: no empty or ``.`` parts; exactly two leading slashes stay two."""
    root = ""
    if path.startswith("/"):
        root = "//" if path.startswith("//") and not path.startswith("///") else "/"
    return root + "/".join(part for part in path.split("/") if part and part != ".") or "."


def _parent(path: str) -> str:
    """``str(PurePosixPath(path).parent)`` of a :func:`_pure` path."""
    head, sep, _ = path.rpartition("/")
    if not sep:
        return "."
    if head.strip("/") == "":
        return path[: len(head) + 1] if head else "/"
    return head


if TYPE_CHECKING:
    from hashlib import sha256 as _sha256
else:  # the built-in module, not hashlib: hashlib loads OpenSSL (~3 ms)
    try:
        from _sha256 import sha256 as _sha256  # Python 3.11
    except ImportError:
        try:
            from _sha2 import sha256 as _sha256  # Python 3.12+
        except ImportError:
            from hashlib import sha256 as _sha256
