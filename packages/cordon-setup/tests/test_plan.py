from pathlib import Path

from cordon_setup.plan import FileChange, render_diff, render_plan, sha256


def test_diff_of_create_update_delete():
    p = Path("/p/.env")
    created = render_diff(FileChange(p, None, b"A=1\n"))
    assert created.startswith("--- /dev/null\n+++ b/p/.env\n") and "+A=1\n" in created
    updated = render_diff(FileChange(p, b"A=1\n", b"A=2"))
    assert "-A=1\n+A=2\n\\ No newline at end of file\n" in updated
    assert "+++ /dev/null" in render_diff(FileChange(p, b"A=1\n", None))
    assert render_diff(FileChange(p, b"x", b"x")) == ""


def test_tokens_are_masked_and_summary_changes_are_one_line():
    change = FileChange(Path("/e"), None, b"HTTPS_PROXY=http://ns:SECRETTOKEN@127.0.0.1:1\n")
    text = render_plan(
        [change, FileChange(Path("/b.pem"), None, b"x" * 10, summary=True)], {"SECRETTOKEN": "<tok>"}
    )
    assert "SECRETTOKEN" not in text and "ns:<tok>@" in text
    assert "create /b.pem (10 bytes)\n" in text
    assert sha256(None) is None and len(sha256(b"") or "") == 64
