"""Private key files appear whole (linked into place), and where the filesystem has no hard links they are
still created, 0600, never through a symlink."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from cordon_config.files import KEY_BYTES, PrivateFileError, ensure_key_file, read_key_file


def test_a_new_key_is_private_and_left_alone_once_made(tmp_path: Path) -> None:
    path = tmp_path / "state" / "identity.key"
    key = ensure_key_file(path, read_key_file)
    assert len(key) == KEY_BYTES and path.read_bytes() == key
    assert path.stat().st_mode & 0o777 == 0o600
    assert ensure_key_file(path, read_key_file) == key
    assert [p.name for p in path.parent.iterdir()] == ["identity.key"]  # no temporary file left behind


@pytest.mark.parametrize("code", [errno.EPERM, errno.EOPNOTSUPP])
def test_without_hard_links_the_key_is_created_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         code: int) -> None:
    def no_links(src: object, dst: object, **_: object) -> None:  # as on exFAT, some FUSE and SMB mounts
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "state" / "approval.key"
    key = ensure_key_file(path, read_key_file)
    assert path.read_bytes() == key and path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["approval.key"]


def test_without_hard_links_a_planted_symlink_is_not_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "link", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EPERM, "no links")))
    target = tmp_path / "elsewhere"
    (tmp_path / "audit.key").symlink_to(target)
    with pytest.raises(PrivateFileError, match="symlink"):  # read first: a symlink is refused, not followed
        ensure_key_file(tmp_path / "audit.key", read_key_file)
    assert not target.exists()
