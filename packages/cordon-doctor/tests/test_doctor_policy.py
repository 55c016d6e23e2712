"""Doctor shows least privilege and evidence: each route's rules, limit and scrubbing, the egress policy, the
decoders and the audit log (whose chain it verifies)."""

from __future__ import annotations

import importlib.util
import json

from cordon_config.audit import AuditFiles, ensure_key, head_text, seal
from cordon_testing.doctor import doctor, line_and_fix

OPENAI = """[[routes]]
name = "openai"
[routes.match]
host = "api.openai.com"
[routes.auth]
type = "header"
header_name = "Authorization"
scheme = "Bearer"
[routes.auth.secret]
source = "env"
var = "OPENAI_API_KEY"
"""
RULED = """[[routes]]
name = "internal"
scrub_responses = {scrub}
[routes.match]
host = "api.internal.test"
methods = ["POST"]
paths = ["/v2/run"]
[routes.limits]
requests_per_minute = 30
[routes.auth]
type = "header"
header_name = "x-api-key"
[routes.auth.secret]
source = "env"
var = "INTERNAL_KEY"
"""


def test_routes_egress_decoders_and_audit_are_shown(project, route, capsys, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("INTERNAL_KEY", "k")
    route(project, OPENAI)
    route(project, RULED.format(scrub="true"))
    _, out = doctor(capsys)
    line, _ = line_and_fix(out, "policy.openai")
    assert line.startswith("ok") and "allows any method to any path" in line
    assert "suggested rules: cordon route edit openai --methods POST,GET --paths" in line
    line, _ = line_and_fix(out, "policy.internal")
    assert "allows POST to /v2/run; rate limit 30 requests per minute; the key is masked" in line
    assert "unrouted = \"tunnel\"" in line_and_fix(out, "policy.egress")[0]
    decoders, fix = line_and_fix(out, "policy.decoders")
    if all(importlib.util.find_spec(module) for module in ("brotli", "zstandard")):
        assert decoders.startswith("ok") and "gzip, deflate, br, zstd" in decoders
    else:  # cordon-doctor installed alone, without cordon-proxy's compression extra
        assert decoders.startswith("warn") and fix == "fix: pip install 'cordon-proxy[compression]' (brotli, zstandard)"
    line, _ = line_and_fix(out, "policy.audit")
    assert line.startswith("ok") and "nothing written yet" in line


def test_scrubbing_off_is_a_warning_with_the_fix(project, route, capsys, monkeypatch) -> None:
    monkeypatch.setenv("INTERNAL_KEY", "k")
    route(project, RULED.format(scrub="false"))
    _, out = doctor(capsys)
    line, fix = line_and_fix(out, "policy.internal")
    assert line.startswith("warn") and "does not scrub responses" in line
    assert fix == "fix: cordon route edit internal --scrub"


def test_egress_deny_and_audit_off(project, capsys) -> None:
    text = project.config_path.read_text()
    project.config_path.write_text(text + '\n[egress]\nunrouted = "deny"\nallow = ["github.com"]\n'
                                   "\n[audit]\nenabled = false\n")
    from cordon_config.approvals import approve
    from cordon_config.parse import load_config

    approve(project, load_config(project.config_path))
    _, out = doctor(capsys)
    egress = line_and_fix(out, "policy.egress")[0]
    assert "refused unless allowed" in egress and "allowed: github.com" in egress
    line, fix = line_and_fix(out, "policy.audit")
    assert line.startswith("warn") and "audit log is off" in line
    assert fix == f"fix: set enabled = true under [audit] in {project.config_path}"


def _write_log(project, count: int) -> AuditFiles:
    files = AuditFiles(project.state_dir)
    key = ensure_key(files)
    prev = ""
    data = b""
    for seq in range(1, count + 1):
        line, prev = seal(key, {"seq": seq, "time": "2026-01-01T00:00:00.000Z", "kind": "request",
                                "status": 200, "prev": prev})
        data += line
    files.log.write_bytes(data)
    files.log.chmod(0o600)
    files.head.write_text(head_text(key, count, prev))
    files.head.chmod(0o600)
    return files


def test_the_audit_chain_is_verified(project, capsys) -> None:
    files = _write_log(project, 5)
    code, out = doctor(capsys)
    line, _ = line_and_fix(out, "policy.audit")
    assert code == 0
    assert line.startswith("ok") and "5 lines in 1 file(s), chain intact" in line
    lines = files.log.read_bytes().splitlines(keepends=True)
    entry = json.loads(lines[2])
    lines[2] = lines[2].replace(b'"status":200', b'"status":404')
    assert entry["seq"] == 3
    files.log.write_bytes(b"".join(lines))
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "policy.audit")
    assert code == 1 and line.startswith("FAIL policy.audit: the audit log was changed outside cordon")
    assert "audit.log line 3 (seq 3) was edited" in line
    assert fix is not None and fix.startswith("fix: cordon audit verify lists every change")
