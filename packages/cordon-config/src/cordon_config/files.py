"""The one place cordon writes files: atomic replacement, a one-time backup, private files and directories, and
the lock around a read-modify-write; never through a symlink. Stdlib only (cordon-ca writes through it too).

cordon-config, cordon-setup (agent files) and cordon-ca (the CA, the bundle, trust anchors) use these, so every
file cordon writes gets the same rules: a symlink at the file or at its backup path stops the command (one line
naming the link and its target; nothing written), temporary and backup files are created
``O_CREAT|O_EXCL|O_NOFOLLOW`` with their final mode, a rename is made durable by an fsync of its directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


class NotWritableError(PermissionError):
    """``path`` cannot be written because its directory cannot be (read-only, or not ours). Nothing was written.

    ``str()`` names the file the user knows (never a temporary file); ``hint`` says what to do.
    """

    def __init__(self, path: Path, directory: Path, code: int = errno.EACCES) -> None:
        super().__init__(code, os.strerror(code), str(path))
        self.path, self.directory = Path(path), Path(directory)
        self.hint = f"nothing was changed; make {self.directory} writable, or keep cordon's files elsewhere " \
                    "(--config PATH, or --scope user)"

    def __str__(self) -> str:
        return f"cannot write {self.path}: {self.directory} is not writable ({self.strerror})"


def os_error_message(exc: OSError) -> tuple[str, str | None]:
    """``(message, hint)`` for a failed file operation: the file the user knows, what went wrong, the fix."""
    if isinstance(exc, NotWritableError):
        return str(exc), exc.hint
    where = f"{exc.filename}: " if exc.filename else ""
    hint = None
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and exc.filename:
        hint = f"check the permissions of {exc.filename} and its directory"
    return f"{where}{exc.strerror or exc}", hint


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(path: Path) -> None:
    """Raise :class:`NotWritableError` unless a file can be created or replaced at ``path`` (its directory, or
    the nearest existing ancestor it would be created in, is writable). ``access(2)`` also sees read-only
    mounts, where even root cannot write."""
    directory = existing_ancestor(Path(path).parent)
    if not os.access(directory, os.W_OK | os.X_OK):
        code = errno.EROFS if _read_only_mount(directory) else errno.EACCES
        raise NotWritableError(Path(path), directory, code)


def _read_only_mount(directory: Path) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


class SymlinkRefused(OSError):
    """A file cordon would read or write (or its backup) is a symlink: cordon never follows it."""

    def __init__(self, path: Path, target: str) -> None:
        super().__init__(errno.ELOOP, f"{path} is a symlink to {target}; cordon does not read or write through "
                         "symlinks there, so nothing was written", str(path))
        self.path = Path(path)
        self.target = target
        self.hint = f"if {path} should be that file, replace the link with a copy of it (or remove the link), " \
                    "then run the command again"

    def __str__(self) -> str:
        return str(self.strerror)


def refuse_symlink(path: Path) -> None:
    """Raise :class:`SymlinkRefused` when ``path`` is a symlink (dangling or not)."""
    try:
        target = os.readlink(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # exists and is not a link
            return
        raise
    raise SymlinkRefused(Path(path), target)


def _open_no_follow(path: Path) -> int | None:
    """A read-only descriptor of ``path``, None when absent: never through a symlink (ELOOP), never waiting on a
    FIFO planted there (O_NONBLOCK)."""
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None


def refuse_symlinked_dirs(path: Path, root: Path) -> None:
    """Raise :class:`SymlinkRefused` when a directory between ``root`` (not itself) and ``path`` (its parent
    included) is a symlink, dangling or not: a file under it would be read or written through the link. Nothing
    is checked for a ``path`` outside ``root``."""
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    try:
        parts = path.parent.relative_to(root).parts
    except ValueError:
        return
    directory = root
    for part in parts:
        directory = directory / part
        try:
            refuse_symlink(directory)
        except SymlinkRefused as exc:
            exc.hint = f"{directory} must be a real directory, not a link: use the directory it points to " \
                       f"({exc.target}) in its place (move it there, or point the agent at it), then run the " \
                       "command again"
            raise


def read_no_follow(path: Path) -> bytes | None:
    """The bytes of the regular file at ``path`` (None when absent), never through a symlink
    (:class:`SymlinkRefused`); a FIFO or device planted there is refused too, without blocking on it."""
    try:
        fd = _open_no_follow(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_symlink(Path(path))
        raise
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file; cordon only edits regular files", str(path))
        return handle.read()


_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and any missing parents) with mode 0700; existing directories are left as they are."""
    missing: list[Path] = []
    current = Path(path)
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue
        os.chmod(directory, 0o700)  # umask may have cleared owner bits; never add group/other ones


def fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename into it is durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(tmp: Path) -> None:
    """Remove a temporary file a failed write leaves (gone already is fine)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


def write_new_file(directory: Path, data: bytes, *, mode: int, prefix: str, durable: bool = True) -> Path:
    """Write ``data`` into a fresh file in ``directory`` created ``O_CREAT|O_EXCL|O_NOFOLLOW`` with ``mode``
    (exactly: the umask does not apply); its path. ``durable`` fsyncs it (skip it for short-lived scratch files)."""
    while True:
        tmp = Path(directory) / f".{prefix}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(tmp, _CREATE_FLAGS, mode)
        except FileExistsError:
            continue
        break
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
    except BaseException:
        _discard(tmp)
        raise
    return tmp


def atomic_write(path: Path, data: str | bytes, *, mode: int | None = None, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically: a new file in the same dir (:func:`write_new_file`), fsync,
    rename, fsync the dir. ``durable=False`` skips both fsyncs (a file rewritten often, from an event loop,
    whose last version may be lost in a crash).

    The file keeps its current mode unless ``mode`` is given; a new file gets ``mode`` (default 0644, 0600 for
    secrets). A symlink at ``path`` is refused (:class:`SymlinkRefused`), never replaced or followed; a
    directory that cannot be written raises :class:`NotWritableError` naming ``path`` before anything is
    written.
    """
    path = Path(path)
    check_writable(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    refuse_symlink(path)
    if path.exists():
        final_mode = stat.S_IMODE(path.stat().st_mode) if mode is None else mode
    else:
        final_mode = 0o644 if mode is None else mode
    directory = path.parent
    try:
        tmp = write_new_file(directory, payload, mode=final_mode, prefix=path.name, durable=durable)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise NotWritableError(path, directory, exc.errno) from None
        raise
    try:
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise
    if durable:
        fsync_dir(directory)


def backup_once(path: Path, suffix: str = ".bak", *, to: Path | None = None) -> Path | None:
    """Copy ``path`` to ``path + suffix`` (or to ``to``) unless that backup exists already; None if there is no
    source or the backup exists. The backup is created ``O_CREAT|O_EXCL|O_NOFOLLOW``, mode 0600; a symlink at
    either path is refused (:class:`SymlinkRefused`)."""
    path = Path(path)
    content = read_no_follow(path)
    if content is None:
        return None
    backup = Path(to) if to is not None else path.with_name(path.name + suffix)
    check_writable(backup if to is not None else path)  # beside it: name the file the user knows
    refuse_symlink(backup)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(backup, flags, 0o600)
    except FileExistsError:
        refuse_symlink(backup)  # planted between the check and the open
        return None
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    return backup


class PrivateFileError(ValueError):
    """A file that must be private to this user is not: ``kind`` says why (``symlink``, ``unreadable``,
    ``not-regular``, ``not-owner``, ``loose``, ``damaged``: a key of the wrong size), with ``uid``, ``mode``,
    ``size`` or ``strerror`` where they apply. ``str()`` is one line naming ``what`` it is; callers with their own
    wording build it from the fields."""

    def __init__(self, path: Path, kind: str, *, what: str = "", uid: int | None = None, mode: int | None = None,
                 strerror: str | None = None, size: int | None = None) -> None:
        self.path, self.kind, self.what, self.uid, self.mode, self.strerror = Path(path), kind, what, uid, mode, strerror
        self.size = size
        name = f"{what} {path}" if what else str(path)
        messages = {
            "symlink": f"{name} is a symlink",
            "unreadable": f"cannot read {name}: {strerror}",
            "not-regular": f"{name} is not a regular file",
            "not-owner": f"{name} is owned by uid {uid}, not by you",
            "loose": f"{name} is accessible by group or others (mode {mode or 0:04o})",
            "damaged": f"{name} is damaged ({size} bytes, not {KEY_BYTES})",
        }
        super().__init__(messages[kind])


def read_private(path: Path, what: str = "", *, owner: bool = True, tighten: bool = False) -> bytes | None:
    """The bytes of a private file (None when absent): a regular file, never opened through a symlink (nor a FIFO
    waited on), owned by this user unless ``owner`` is False, readable by nobody else: a looser mode raises,
    or with ``tighten`` is set back to 0600 when the file is ours. Raises :class:`PrivateFileError`."""
    try:
        fd = _open_no_follow(path)
    except OSError as exc:
        kind = "symlink" if os.path.islink(path) else "unreadable"
        raise PrivateFileError(path, kind, what=what, strerror=exc.strerror) from None
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PrivateFileError(path, kind="not-regular", what=what)
        ours = info.st_uid == os.geteuid()
        if owner and not ours:
            raise PrivateFileError(path, kind="not-owner", what=what, uid=info.st_uid)
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077 and not tighten:
            raise PrivateFileError(path, kind="loose", what=what, mode=mode)
        if mode & 0o077 and ours:
            os.fchmod(fd, 0o600)
        return handle.read()


def ensure_private_file(path: Path, make: Callable[[], bytes], read: Callable[[Path], bytes | None]) -> bytes:
    """What ``read(path)`` gives, or a new private file holding ``make()``: written and fsynced in a temporary
    file created ``O_CREAT|O_EXCL|O_NOFOLLOW`` 0600 beside it (its directory 0700 when missing), then linked
    into place, so a reader never sees it empty or half written. When another process creates it first, its
    content. Raises FileNotFoundError when it vanished in between, OSError when it cannot be created."""
    existing = read(path)
    if existing is not None:
        return existing
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = make()
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, _CREATE_FLAGS, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)  # fails on anything already there, a symlink included
        except FileExistsError:
            theirs = read(path)
            if theirs is None:
                raise FileNotFoundError(errno.ENOENT, "vanished while it was being created", str(path)) from None
            return theirs
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                raise
            return _create_directly(path, data, read)  # a filesystem without hard links
    finally:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
    return data


def _create_directly(path: Path, data: bytes, read: Callable[[Path], bytes | None]) -> bytes:
    """``ensure_private_file`` where hard links are not supported: created ``O_EXCL|O_NOFOLLOW`` 0600 in place
    (a reader racing the creator may see it short; the readers treat that as damaged, not as a key)."""
    try:
        fd = os.open(path, _CREATE_FLAGS, 0o600)
    except FileExistsError:
        theirs = read(path)
        if theirs is None:
            raise FileNotFoundError(errno.ENOENT, "vanished while it was being created", str(path)) from None
        return theirs
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return data


KEY_BYTES = 32  # every random key cordon keeps in a state dir (identity, approvals, audit): HMAC-SHA256 keys


def read_key_file(path: Path, what: str = "", *, owner: bool = True, tighten: bool = False) -> bytes | None:
    """A random key kept by :func:`ensure_key_file` (None when absent): :func:`read_private`, and a file that is not
    :data:`KEY_BYTES` long raises :class:`PrivateFileError` of kind ``damaged``."""
    key = read_private(path, what, owner=owner, tighten=tighten)
    if key is not None and len(key) != KEY_BYTES:
        raise PrivateFileError(path, "damaged", what=what, size=len(key))
    return key


def ensure_key_file(path: Path, read: Callable[[Path], bytes | None]) -> bytes:
    """The key ``read(path)`` gives (the caller's :func:`read_key_file` with its own wording), or a new private file of
    :data:`KEY_BYTES` random bytes (see :func:`ensure_private_file`)."""
    return ensure_private_file(path, lambda: secrets.token_bytes(KEY_BYTES), read)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock (``fcntl.flock``) for a read-modify-write of ``path``.

    The lock is taken on ``path``'s directory, so no lock file is left beside the user's files; every cordon
    writer in that directory is serialised for the few milliseconds an edit takes. The kernel releases the
    lock when the process dies, so a killed writer never blocks the next one. Do not nest two ``locked``
    calls on files of the same directory (flock would wait on itself).
    """
    import fcntl

    directory = Path(path).parent
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


LOG_ROTATE_BYTES = 10 * 1024 * 1024  # a log larger than this is moved to <name>.1 when it is opened again


def open_log_file(path: Path) -> int:
    """Open ``path`` for appending log lines, 0600, and return the descriptor.

    Refuses a symlink or anything but a regular file owned by this user (a planted link must not redirect the
    log); tightens a looser mode to 0600; creates missing directories (0700). A file over
    :data:`LOG_ROTATE_BYTES` is first moved to ``<path>.1`` (one old generation is kept).
    """
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_writable(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    if info is not None and stat.S_ISREG(info.st_mode) and info.st_size > LOG_ROTATE_BYTES:
        os.replace(path, path.with_name(path.name + ".1"))
    refuse_symlink(path)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_symlink(path)  # planted between the check and the open
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise OSError(errno.EPERM, "not a regular file of this user", str(path))
    os.set_blocking(fd, True)
    if stat.S_IMODE(info.st_mode) != 0o600:
        os.fchmod(fd, 0o600)
    return fd
