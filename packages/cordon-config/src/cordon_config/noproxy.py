"""Which hosts a client's ``NO_PROXY`` sends around the proxy (pure, stdlib only).

A host with a route must reach cordon: the env contract leaves routed hosts out of its ``NO_PROXY``, and
``cordon route add`` and ``cordon doctor`` warn when the environment a client starts from would still bypass
one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

NAMES = ("NO_PROXY", "no_proxy")


def bypasses(no_proxy: str, host: str) -> bool:
    """True when a client honouring ``NO_PROXY=no_proxy`` would connect to ``host`` directly.

    The rule curl, Python (urllib, requests, httpx), Node and git share: ``*`` matches every host; an entry
    matches the host itself and its subdomains (a leading ``.`` or ``*.`` changes nothing); ``:port`` is
    ignored (curl ignores it; the others differ, so assume the worst).
    """
    host = host.lower().strip("[]").rstrip(".")
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if entry.startswith("["):
            entry = entry[1:].split("]", 1)[0]
        elif entry.count(":") == 1:
            entry = entry.split(":", 1)[0]
        entry = entry.removeprefix("*").lstrip(".").rstrip(".")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


def bypassing(environ: Mapping[str, str], hosts: Iterable[str]) -> list[tuple[str, str, str]]:
    """``(variable, value, host)`` for each routed host that ``NO_PROXY``/``no_proxy`` in ``environ`` sends
    direct (curl prefers ``no_proxy``, Python and Node read either: both are checked)."""
    found = []
    for name in NAMES:
        value = environ.get(name)
        if value:
            found += [(name, value, host) for host in hosts if bypasses(value, host)]
    return found
