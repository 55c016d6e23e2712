"""The core is sans-IO: no module under cordon_proxy/core imports asyncio, socket, ssl, time, os or select."""

from __future__ import annotations

import ast
from pathlib import Path

import cordon_proxy.core

BANNED = {"asyncio", "socket", "ssl", "time", "os", "select", "selectors", "subprocess", "threading", "uvloop"}


def test_core_modules_import_no_io() -> None:
    core = Path(cordon_proxy.core.__file__).parent
    modules = sorted(core.glob("*.py"))
    assert len(modules) >= 8
    for path in modules:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in BANNED, f"{path.name} imports {name}"
