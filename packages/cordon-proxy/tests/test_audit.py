"""The audit log: the proxy's writer (batched, rotated with the chain carried across files, resumed after a
restart) and verification, which names every edited, deleted, inserted or reordered line."""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
from itertools import pairwise
from pathlib import Path

import pytest
from cordon_config.audit import AuditFiles, log_files, read_entries, verify
from cordon_config.model import AuditConfig
from cordon_proxy.audit import AuditLog
from cordon_proxy.core.commands import RequestRecord
from cordon_proxy.logs import Logger


def record(n: int, decision: str = "injected") -> RequestRecord:
    r = RequestRecord("POST", "api.test", f"/v1/item/{n}", route="api", token="default", status=200, bytes=10,
                      decision=decision, bytes_up=5)
    return r


def write(state: Path, count: int, config: AuditConfig | None = None) -> AuditLog:
    log = AuditLog(state, "proj-1234", config or AuditConfig(), Logger(stream=io.StringIO()))
    for n in range(count):
        log.request(record(n), 0.0123)
    return log


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_lines_are_sealed_chained_private_and_hold_no_secret(tmp_path: Path) -> None:
    write(tmp_path, 3).close()
    files = AuditFiles(tmp_path)
    entries = list(read_entries(files))
    assert [e["kind"] for e in entries] == ["file", "request", "request", "request"]
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert entries[0]["prev"] == "" and all(e["prev"] == p["mac"] for p, e in pairwise(entries))
    first = entries[1]
    assert {k: first[k] for k in ("route", "token", "method", "host", "path", "status", "bytes_up", "bytes_down",
                                  "duration_ms", "decision", "scope")} == {
        "route": "api", "token": "default", "method": "POST", "host": "api.test", "path": "/v1/item/0",
        "status": 200, "bytes_up": 5, "bytes_down": 10, "duration_ms": 12.3, "decision": "injected",
        "scope": "proj-1234"}
    for path in (files.log, files.key, files.head):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    report = verify(files)
    assert report.ok and (report.first_seq, report.last_seq, report.lines) == (1, 4, 4)


def test_writes_are_batched(tmp_path: Path) -> None:
    """Lines go out together FLUSH_EVERY seconds after the first of them (one write for many requests), or at
    once when MAX_PENDING of them wait."""
    from cordon_proxy import audit

    async def main() -> tuple[bool, int, int]:
        log = AuditLog(tmp_path, "s", AuditConfig(), Logger(stream=io.StringIO()))
        log.batch_on(asyncio.get_running_loop())
        size = log.files.log.stat().st_size
        for n in range(50):
            log.request(record(n), 0.001)
        await asyncio.sleep(0)
        waiting = log.files.log.stat().st_size == size  # nothing written in this loop iteration
        await asyncio.sleep(audit.FLUSH_EVERY * 3)  # the flush timer is due before this sleep ends
        written = len(lines(log.files.log))
        flushed = log.files.log.stat().st_size
        n = 0
        while log.files.log.stat().st_size == flushed:
            log.request(record(n), 0.001)  # no await: only the MAX_PENDING threshold can write these
            n += 1
        log.close()
        return waiting, written, n

    waiting, written, at_once = asyncio.run(main())
    assert waiting and written == 51
    assert at_once == audit.MAX_PENDING


def _tamper(path: Path, index: int, change: str) -> None:
    content = lines(path)
    if change == "edit":
        entry = json.loads(content[index])
        content[index] = content[index].replace(f'"status":{entry["status"]}'.encode(), b'"status":201')
    elif change == "delete":
        del content[index]
    elif change == "insert":
        fake = json.loads(content[index])
        fake["path"] = "/v1/forged"
        content.insert(index, json.dumps(fake, separators=(",", ":")).encode() + b"\n")
    elif change == "swap":
        content[index], content[index + 1] = content[index + 1], content[index]
    elif change == "duplicate":
        content.insert(index + 2, content[index])
    elif change == "truncate":
        content = content[:index]
    path.write_bytes(b"".join(content))


@pytest.mark.parametrize(("change", "kind", "where"), [
    ("edit", "edited", "audit.log line 4 (seq 4)"),
    ("delete", "deleted", "audit.log line 4 (seq 5)"),
    ("insert", "inserted", "audit.log line 4 (seq 4)"),
    ("swap", "reordered", "audit.log line 5 (seq 4)"),
    ("duplicate", "reordered", "audit.log line 6 (seq 4)"),
    ("truncate", "deleted", "audit.log"),
])
def test_verify_names_each_kind_of_tampering(tmp_path: Path, change: str, kind: str, where: str) -> None:
    write(tmp_path, 8).close()
    files = AuditFiles(tmp_path)
    _tamper(files.log, 3, change)
    report = verify(files)
    assert not report.ok
    assert (report.problems[0].kind, report.problems[0].where) == (kind, where), report.problems
    if change == "truncate":
        assert "6 line(s) (seq 4–9) were deleted at the end of audit.log" in report.problems[0].message


def test_an_edit_is_reported_once_and_the_chain_goes_on(tmp_path: Path) -> None:
    write(tmp_path, 8).close()
    files = AuditFiles(tmp_path)
    _tamper(files.log, 3, "edit")
    assert len(verify(files).problems) == 1


def test_deleting_lines_then_restarting_still_shows(tmp_path: Path) -> None:
    write(tmp_path, 5).close()
    files = AuditFiles(tmp_path)
    _tamper(files.log, 3, "truncate")  # the last lines go while the proxy is stopped ...
    write(tmp_path, 2).close()  # ... and it starts again: it goes on from the head it wrote
    report = verify(files)
    assert [p.kind for p in report.problems] == ["deleted"]
    assert "3 line(s) (seq 4–6) were deleted before audit.log line 4 (seq 7)" in report.problems[0].message


def test_a_forged_head_or_a_missing_key_is_reported(tmp_path: Path) -> None:
    write(tmp_path, 2).close()
    files = AuditFiles(tmp_path)
    head = json.loads(files.head.read_text())
    head["seq"] = 1
    files.head.write_text(json.dumps(head))
    assert [p.kind for p in verify(files).problems] == ["head"]
    files.key.unlink()
    assert "is missing" in verify(files).problems[0].message


def test_a_deleted_head_fails_verification(tmp_path: Path) -> None:
    """Deleting the last lines and ``audit.head`` together must not pass: the tail cannot be checked."""
    write(tmp_path, 5).close()
    files = AuditFiles(tmp_path)
    _tamper(files.log, 3, "truncate")
    files.head.unlink()
    report = verify(files)
    assert not report.ok
    assert [(p.kind, p.message) for p in report.problems] == [
        ("head", f"{files.head} is missing (deleted?), so lines deleted at the end of audit.log cannot be ruled out")]


def test_cordon_audit_verify_exits_non_zero_without_the_head(tmp_path: Path, capsys) -> None:
    from cordon_config.cli import audit_main

    config = tmp_path / "cordon.toml"
    config.write_text('listen = 8787\n')
    from cordon_config.scope import resolve_scope

    state = resolve_scope(None, config, env=os.environ, cwd=tmp_path).state_dir
    write(state, 3).close()
    assert audit_main(["verify", "--config", str(config)]) == 0
    AuditFiles(state).head.unlink()
    capsys.readouterr()
    assert audit_main(["verify", "--config", str(config)]) != 0
    err = capsys.readouterr().err
    assert "audit.head is missing (deleted?), so lines deleted at the end of audit.log cannot be ruled out" in err


def test_rotation_by_size_carries_the_chain_across_files(tmp_path: Path) -> None:
    config = AuditConfig(max_file_bytes=64 * 1024, keep_files=3)
    write(tmp_path, 1500, config).close()
    files = AuditFiles(tmp_path)
    names = [path.name for path in log_files(files)]
    assert names == ["audit.log.2", "audit.log.1", "audit.log"]
    for path in log_files(files):
        assert path.stat().st_size <= 64 * 1024 + 1024
        first = json.loads(lines(path)[0])
        assert first["kind"] == "file" and stat.S_IMODE(path.stat().st_mode) == 0o600
    report = verify(files)
    assert report.ok, report.problems
    assert report.first_seq > 1 and any("rotated away" in note for note in report.notes)
    seqs = [entry["seq"] for entry in read_entries(files)]
    assert seqs == list(range(report.first_seq, report.last_seq + 1))
    assert json.loads(files.head.read_text())["seq"] == report.last_seq


def test_deleting_the_head_of_the_oldest_file_is_not_taken_for_rotation(tmp_path: Path) -> None:
    write(tmp_path, 1500, AuditConfig(max_file_bytes=64 * 1024, keep_files=2)).close()
    files = AuditFiles(tmp_path)
    oldest = log_files(files)[0]
    _tamper(oldest, 0, "delete")
    report = verify(files)
    assert report.problems and report.problems[0].kind == "deleted"


def test_a_line_cut_short_by_a_crash_is_reported_and_the_log_goes_on(tmp_path: Path) -> None:
    write(tmp_path, 2).close()
    files = AuditFiles(tmp_path)
    files.log.write_bytes(files.log.read_bytes()[:-20])  # the last line half written
    write(tmp_path, 1).close()
    report = verify(files)
    assert [p.kind for p in report.problems] == ["damaged"]
    assert json.loads(lines(files.log)[-1])["kind"] == "request"


def test_an_insecure_key_is_refused(tmp_path: Path) -> None:
    from cordon_config.audit import AuditError

    write(tmp_path, 1).close()
    os.chmod(AuditFiles(tmp_path).key, 0o644)
    with pytest.raises(AuditError, match="accessible by group or others"):
        write(tmp_path, 1)
