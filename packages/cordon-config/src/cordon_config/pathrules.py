"""Method and path rules of a route (``[routes.match] methods``, ``paths``): their grammar, the one
normalisation of a request path, and matching. Pure, stdlib only; the proxy core and the config validator
both call it, so a rule means the same thing where it is written and where it is enforced.

The normalisation of a request path (before comparing it with the rules):

1. the query (from the first ``?``) is not part of it; the path must start with ``/``;
2. every ``%XX`` must be two hex digits; an escape of an unreserved character (``A-Z a-z 0-9 - . _ ~``) is
   decoded (RFC 3986 §6.2.2.2, so ``/v1/%6Dodels`` is ``/v1/models``); any other escape is kept with its hex
   digits upper-cased;
3. what servers read in different ways is refused, never guessed (:class:`AmbiguousPath`): an encoded
   ``/``, ``\\`` or ``%`` (``%2F``, ``%5C``, ``%25``: a second decoding would change the path), an encoded
   control character, a literal ``\\`` or ``;`` (path parameters: ``..;`` is ``..`` to some servers), a dot
   segment (``.`` or ``..``, also spelled ``%2E``), an empty segment (``//``) and anything that is not
   visible ASCII.

Comparison is case-sensitive and byte for byte (a trailing ``/`` counts). A rule is a normalised path
(exactly that path) or a normalised path followed by ``*`` (every path that starts with the text before
the ``*``, as plain text: ``/v1/models*`` matches ``/v1/models``, ``/v1/models/x`` and ``/v1/modelsx``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = [
    "AmbiguousPath",
    "PathRules",
    "describe_rules",
    "method_problem",
    "normalise_path",
    "path_rule_problem",
]

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_REFUSED_ESCAPES = {0x2F: "an encoded slash (%2F)", 0x5C: "an encoded backslash (%5C)",
                    0x25: "an encoded percent sign (%25)"}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class AmbiguousPath(ValueError):
    """A request path servers may read in more than one way; the message names what (safe to show)."""


def normalise_path(path: str) -> str:
    """The normalised form of ``path`` (the request target without its query); raises :class:`AmbiguousPath`."""
    if not path.startswith("/"):
        raise AmbiguousPath("it does not start with /")
    if "%" not in path and "\\" not in path and ";" not in path and "/." not in path and "//" not in path \
            and path.isascii() and path.isprintable() and " " not in path:
        return path  # the common case: nothing to decode, nothing ambiguous
    out = bytearray()
    raw = path.encode("utf-8", "surrogateescape")
    i, n = 0, len(raw)
    while i < n:
        byte = raw[i]
        if byte == 0x25:  # %
            if i + 2 >= n or raw[i + 1] not in _HEX or raw[i + 2] not in _HEX:
                raise AmbiguousPath("a malformed percent-escape")
            value = int(raw[i + 1 : i + 3], 16)
            if value in _REFUSED_ESCAPES:
                raise AmbiguousPath(_REFUSED_ESCAPES[value])
            if value < 0x20 or value == 0x7F:
                raise AmbiguousPath("an encoded control character")
            if value in _UNRESERVED:
                out.append(value)
            else:
                out += b"%" + raw[i + 1 : i + 3].upper()
            i += 3
            continue
        if byte <= 0x20 or byte >= 0x7F:
            raise AmbiguousPath("a character that is not visible ASCII")
        if byte == 0x5C:
            raise AmbiguousPath("a backslash")
        if byte == 0x3B:
            raise AmbiguousPath("a semicolon (path parameter)")
        out.append(byte)
        i += 1
    text = out.decode("ascii")
    for segment in text.split("/")[1:-1]:
        if segment == "":
            raise AmbiguousPath("an empty segment (//)")
    for segment in text.split("/")[1:]:
        if segment in (".", ".."):
            raise AmbiguousPath("a dot segment")
    return text


def path_rule_problem(rule: str) -> str | None:
    """What is wrong with a ``paths`` rule as written in cordon.toml, or None when it is valid."""
    if not isinstance(rule, str) or not rule:
        return "a path rule must be a non-empty string"
    if not rule.startswith("/"):
        return f'path rule "{rule}" must start with "/"'
    body = rule[:-1] if rule.endswith("*") else rule
    if "*" in body:
        return f'path rule "{rule}": "*" may only end a rule (a prefix)'
    if "?" in body or "#" in body:
        return f'path rule "{rule}" must not contain "?" or "#" (rules match the path; the query is ignored)'
    try:
        normal = normalise_path(body)
    except AmbiguousPath as exc:
        return f'path rule "{rule}" contains {exc}'
    if normal != body:
        return f'path rule "{rule}" is not in normal form: write "{normal}{"*" if body != rule else ""}"'
    return None


def method_problem(method: str) -> str | None:
    """What is wrong with a ``methods`` entry, or None when it is valid."""
    if not isinstance(method, str) or not _TOKEN.fullmatch(method):
        return f'method "{method}" is not an HTTP method name'
    if method != method.upper():
        return f'method "{method}": methods are case-sensitive, write "{method.upper()}"'
    if method == "CONNECT":
        return 'method "CONNECT" opens the tunnel itself; rules apply to the requests inside it'
    return None


class PathRules:
    """Compiled ``paths`` rules: exact paths in a set, prefixes in a tuple."""

    __slots__ = ("exact", "prefixes", "rules")

    def __init__(self, rules: Iterable[str]) -> None:
        self.rules: tuple[str, ...] = tuple(rules)
        self.exact = frozenset(rule for rule in self.rules if not rule.endswith("*"))
        self.prefixes = tuple(rule[:-1] for rule in self.rules if rule.endswith("*"))

    def allows(self, normalised: str) -> bool:
        """Whether the normalised path matches a rule."""
        return normalised in self.exact or normalised.startswith(self.prefixes)


def describe_rules(methods: Sequence[str] | None, paths: Sequence[str] | None) -> str:
    """``POST, GET to /v1/responses, /v1/models*`` (what the messages and ``route show`` print)."""
    method_text = ", ".join(methods) if methods else "any method"
    path_text = ", ".join(paths) if paths else "any path"
    return f"{method_text} to {path_text}"
