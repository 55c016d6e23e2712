"""The running proxy imports only what it uses: every module costs idle memory (docs/performance.md).

tomlkit (config fallback for invalid files only), http.client (``cordon status``/``wait`` only) and difflib
("did you mean" hints for invalid files only) must stay out of a proxy that started from a valid config and
served a routed request. ``PYTHONPROFILEIMPORTTIME`` makes the real subprocess list every module it imports.
"""

from __future__ import annotations

import http.client
import os
import re
import ssl
from pathlib import Path

import pytest
from cordon_testing.proxy import TIMEOUT, running_stack

pytestmark = pytest.mark.e2e

MUST_STAY_OUT = ("tomlkit", "http.client", "difflib")
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| ( *)(\S+)\s*$", re.MULTILINE)


def imported_modules(logs: str) -> set[str]:
    return {match.group(2) for match in IMPORT_LINE.finditer(logs)}


def test_running_proxy_never_imports_tools_it_does_not_use(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    with running_stack(tmp_path, env=env) as s:
        ctx = ssl.create_default_context(cafile=str(s.cordon_ca))
        conn = http.client.HTTPSConnection("127.0.0.1", s.proxy.port, context=ctx, timeout=TIMEOUT)
        conn.set_tunnel("api.test", s.upstream.port)
        try:
            conn.request("GET", "/imports", headers={"Authorization": "Bearer dummy"})
            response = conn.getresponse()
            assert response.status == 200, response.read()
            response.read()
        finally:
            conn.close()
        (seen,) = s.upstream.requests
        assert seen.header("Authorization") == [f"Bearer {s.secrets['CORDON_TEST_SECRET']}"]  # routed, injected
        logs = s.proxy.logs()
    modules = imported_modules(logs)
    # the listing is real (modules loaded by importlib.import_module, e.g. cordon_config.parse, are not listed)
    assert {"cordon_proxy.cli", "cordon_config.locate", "tomllib", "cordon_proxy.server"} <= modules, logs[-2000:]
    unwanted = {m for m in modules if m.split(".")[0] in ("tomlkit", "difflib") or m in MUST_STAY_OUT}
    assert not unwanted, f"the proxy imported {sorted(unwanted)}; import them lazily where they are needed"
