import os
import stat

import pytest
from cordon_setup.apply import ConflictError, apply_changes, remove_empty_dirs
from cordon_setup.plan import FileChange


def test_backup_once_atomic_write_and_modes(tmp_path):
    target = tmp_path / "a" / "b" / ".env"
    old_umask = os.umask(0)
    try:
        [done] = apply_changes([FileChange(target, None, b"one\n", mode=0o600, backup=True)])
    finally:
        os.umask(old_umask)
    assert done.backup is None and stat.S_IMODE(target.stat().st_mode) == 0o600
    [done] = apply_changes([FileChange(target, b"one\n", b"two\n", backup=True)])
    assert done.backup == target.with_name(".env.cordon.bak") and done.backup.read_bytes() == b"one\n"
    [done] = apply_changes([FileChange(target, b"two\n", b"three\n", backup=True)])
    assert done.backup is None and target.with_name(".env.cordon.bak").read_bytes() == b"one\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_conflict_and_delete_and_noop(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"x")
    with pytest.raises(ConflictError):
        apply_changes([FileChange(target, b"y", b"z")])
    assert apply_changes([FileChange(target, b"x", b"x")]) == []
    apply_changes([FileChange(target, b"x", None)])
    assert not target.exists()
    (tmp_path / "d1" / "d2").mkdir(parents=True)
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "f").write_text("x")
    remove_empty_dirs([tmp_path / "d1", tmp_path / "d1" / "d2", tmp_path / "keep"])
    assert not (tmp_path / "d1").exists() and (tmp_path / "keep" / "f").exists()
