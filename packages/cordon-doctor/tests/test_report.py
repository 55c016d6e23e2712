"""Report rendering: symbols and colour only on a TTY, plain words otherwise, JSON schema, exit codes."""

from __future__ import annotations

import io
import json

import pytest
from cordon_doctor.finding import Finding, fail, ok, warn
from cordon_doctor.mask import mask_header_value, mask_secret
from cordon_doctor.report import exit_code, render_text, to_json, use_colour

FINDINGS = [
    ok("config", "valid"),
    warn("tokens", "no tokens.toml", "cordon setup"),
    fail("ca.key", "mode 0644", "chmod 600 /k"),
]


def test_plain_text_has_words_and_fixes() -> None:
    text = render_text(FINDINGS, tty=False)
    assert text.splitlines() == [
        "ok   config: valid",
        "warn tokens: no tokens.toml",
        "     fix: cordon setup",
        "FAIL ca.key: mode 0644",
        "     fix: chmod 600 /k",
        "1 ok, 1 warning, 1 failure",
    ]
    assert "\x1b[" not in text


def test_tty_text_has_symbols_and_colour() -> None:
    text = render_text(FINDINGS, tty=True)
    assert "\x1b[32m✓\x1b[0m config: valid" in text
    assert "\x1b[31m✗\x1b[0m ca.key" in text and "\x1b[33m!\x1b[0m tokens" in text


def test_use_colour_only_on_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert not use_colour(io.StringIO())
    assert use_colour(Tty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Tty())


def test_exit_code_and_json() -> None:
    assert exit_code(FINDINGS) == 1
    assert exit_code(FINDINGS[:2]) == 0
    doc = json.loads(to_json(FINDINGS[:2], scope="user"))
    assert doc == {
        "schema": "cordon.doctor/1",
        "ok": True,
        "counts": {"ok": 1, "warn": 1, "fail": 0, "skip": 0},
        "checks": [
            {"check": "config", "status": "ok", "message": "valid", "fix": None},
            {"check": "tokens", "status": "warn", "message": "no tokens.toml", "fix": "cordon setup"},
        ],
        "scope": "user",
    }


def test_unknown_status_rejected() -> None:
    with pytest.raises(ValueError):
        Finding("x", "bad", "m")  # type: ignore[arg-type]


def test_masking_never_reveals_more_than_a_prefix() -> None:
    secret = "sk-demo-" + "x" * 28
    assert mask_secret(secret) == "sk-d…(36 chars)"
    assert mask_header_value(f"Bearer {secret}") == "Bearer sk-d…(36 chars)"
    assert mask_header_value("short") == "…(5 chars)"


def test_cli_usage_error_is_one_cordon_line(capsys: pytest.CaptureFixture[str]) -> None:
    from cordon_doctor.cli import demo_main, main

    with pytest.raises(SystemExit) as exc:
        demo_main(["--bogus"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines() == ["cordon: unrecognized arguments: --bogus (see cordon demo --help)"]
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "cordon-doctor demo --keep" in out and out.count("examples:") == 1
