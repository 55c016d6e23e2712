"""The docs say what the code does for least privilege: every provider's suggested rules are in
docs/configuration.md as the providers table has them, and every rule there is valid."""

from __future__ import annotations

from pathlib import Path

import pytest
from cordon_config.pathrules import method_problem, path_rule_problem
from cordon_config.providers import PROVIDERS

CONFIGURATION = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


@pytest.mark.parametrize("provider", PROVIDERS, ids=[p.name for p in PROVIDERS])
def test_suggested_rules_are_documented_and_valid(provider) -> None:  # type: ignore[no-untyped-def]
    text = CONFIGURATION.read_text(encoding="utf-8")
    row = next((line for line in text.splitlines() if line.startswith(f"| {provider.name} | `{provider.host}` |")),
               None)
    assert row is not None, f"docs/configuration.md has no suggested-rules row for {provider.name}"
    for method in provider.methods:
        assert method_problem(method) is None and f"`{method}`" in row
    for rule in provider.paths:
        assert path_rule_problem(rule) is None and f"`{rule}`" in row
