"""Every error cordon can print, read from the sources, and which of them docs/troubleshooting.md lacks.

Run: `uv run python scripts/error_catalogue.py` (lists what is missing; exit 1 if anything is) or `--all`
(every message with its source line). `tests/test_docs.py` uses the same functions.

What counts as an error message (found with `ast`, never by importing the tools):
- the `X-Cordon-Error` codes: the keys of `CODES` in cordon_proxy/core/errors.py, plus any other code string
  the proxy passes to its error helpers;
- the message argument of every call that builds a user-facing error: exception classes named `...Error`,
  `...Unavailable`, `...Failed`, `...Failure`, `...Exists`, `...NotFound`, `...Insecure`, `...Invalid`,
  `...NotAllowed`, `...Problem` (built-in exceptions only where listed in VALUE_ERROR_FILES), the CLI helpers
  `_err`/`_fail`/`fail`/`error` (not cordon-doctor's `fail(check, message, fix)` findings, which carry
  their fix), the proxy's `_answer`/`_upstream_broken`, the cordon.toml validator's
  `self.add`, and `sys.stderr.write("cordon: ...")`.
The message argument is the first string argument that is not an `X-Cordon-Error` code (the second for
`StepFailed(step, message)`). A message is documented when its longest fixed fragment (the text between
the `{...}` fields of an f-string, trimmed of punctuation) appears in troubleshooting.md, case-insensitively
and with whitespace collapsed. Messages with no fragment of MIN_FRAGMENT characters (`f"{path}: {exc}"`)
only pass another message through and are skipped.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"
PROXY_ERRORS = ROOT / "packages" / "cordon-proxy" / "src" / "cordon_proxy" / "core" / "errors.py"
MIN_FRAGMENT = 8

_CLASS_RE = re.compile(
    r"[A-Z]\w*(Error|Unavailable|Failed|Failure|Exists|NotFound|Insecure|Invalid|NotAllowed|Problem)$|_Usage$"
)
_HELPERS = {"_err", "_fail", "fail", "error", "_answer", "_upstream_broken"}
#: built-in exceptions are programmer errors, except in these modules where they reach the user
VALUE_ERROR_FILES = {"cordon_config/hosts.py"}
_BUILTINS = {name for name, value in vars(builtins).items()
             if isinstance(value, type) and issubclass(value, BaseException)}
#: programmer errors and internal signals a user cannot meet (fragments as computed below)
IGNORE = {
    "Secret values cannot be pickled",
    "Secret holds a str",
    "permitted_hosts must be a collection of host names, not a string",
    "maxsize must be at least",
    "unknown event",
    "unknown status",
    "has a rate limit but the edge gave no clock",
}
_TRIM = " \t\n:;,.'\"`()[]{}…"


@dataclass(frozen=True)
class Message:
    """One error message template as written in the source."""

    file: str
    line: int
    template: str  # fixed text with "…" for each field
    fragment: str  # the longest fixed fragment: what the docs must contain


def _source_files() -> list[Path]:
    files = sorted((ROOT / "packages").glob("*/src/*/**/*.py")) + sorted((ROOT / "src").glob("*/**/*.py"))
    return [f for f in files if "cordon_testing" not in f.parts and "/tests/" not in f.as_posix()]


def proxy_codes() -> set[str]:
    """Every X-Cordon-Error code: the CODES table of the proxy."""
    tree = ast.parse(PROXY_ERRORS.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id == "CODES" and isinstance(node.value, ast.Dict):
            return {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    raise LookupError(f"no CODES table in {PROXY_ERRORS}")


def _pieces(node: ast.AST) -> list[str] | None:
    """The fixed text of a str constant / f-string / concatenation, "\\0" marking each field."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        out: list[str] = []
        for value in node.values:
            out.append(value.value if isinstance(value, ast.Constant) else "\0")
        return out
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _pieces(node.left), _pieces(node.right)
        if left is None and right is None:
            return None
        return (left or ["\0"]) + (right or ["\0"])
    return None


def _func_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _is_stderr_write(call: ast.Call) -> bool:
    func = call.func
    return (isinstance(func, ast.Attribute) and func.attr == "write"
            and ast.unparse(func.value) in {"sys.stderr", "stderr", "err"})


def _message_arg(call: ast.Call, name: str, codes: set[str]) -> list[str] | None:
    args = list(call.args)
    if name == "StepFailed":
        args = args[1:2]
    for arg in args:
        pieces = _pieces(arg)
        if pieces is None:
            continue
        if len(pieces) == 1 and pieces[0] in codes:
            continue
        return pieces
    return None


def _fragment(pieces: list[str]) -> str:
    text = "".join(pieces).replace("\0", "\x00")
    text = text.removeprefix("cordon: ")
    parts = [" ".join(p.split()).strip(_TRIM) for p in text.split("\x00")]
    return max(parts, key=len) if parts else ""


def messages() -> list[Message]:
    """Every error message template in the tools' sources (see the module docstring)."""
    codes = proxy_codes()
    found: list[Message] = []
    for path in _source_files():
        rel = path.relative_to(ROOT).as_posix()
        module_key = "/".join(path.parts[-2:])
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _func_name(node)
            if _is_stderr_write(node):
                pieces = _pieces(node.args[0]) if node.args else None
                if not pieces or not "".join(pieces).startswith("cordon: "):
                    continue
            elif name in _BUILTINS:
                if name != "ValueError" or module_key not in VALUE_ERROR_FILES:
                    continue
                pieces = _message_arg(node, name, codes)
            elif name == "fail" and "cordon_doctor" in rel:
                continue  # a doctor finding: printed with its own fix, not an error
            elif _CLASS_RE.match(name) or name in _HELPERS or (name == "add" and path.name == "parse.py"):
                pieces = _message_arg(node, name, codes)
            else:
                continue
            if not pieces:
                continue
            fragment = _fragment(pieces)
            if len(fragment) < MIN_FRAGMENT or fragment in IGNORE:
                continue
            template = "".join(p if p != "\0" else "…" for p in pieces).strip()
            found.append(Message(rel, node.lineno, template.removeprefix("cordon: "), fragment))
    return found


def normalise(text: str) -> str:
    """Lower-case with whitespace collapsed: how fragments are looked up in the docs."""
    return " ".join(text.split()).lower()


def missing(doc_text: str | None = None) -> tuple[list[str], list[Message]]:
    """(codes, messages) that troubleshooting.md does not mention."""
    text = TROUBLESHOOTING.read_text(encoding="utf-8") if doc_text is None else doc_text
    codes = sorted(code for code in proxy_codes() if f"`{code}`" not in text)
    doc = normalise(text)
    msgs = [m for m in messages() if normalise(m.fragment) not in doc]
    return codes, msgs


def main(argv: list[str] | None = None) -> int:
    """Print what troubleshooting.md lacks (or, with --all, every message)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--all", action="store_true", help="list every message, documented or not")
    args = ap.parse_args(argv)
    if args.all:
        for code in sorted(proxy_codes()):
            print(f"X-Cordon-Error: {code}")
        for m in messages():
            print(f"{m.file}:{m.line}: {m.template}")
        return 0
    codes, msgs = missing() if TROUBLESHOOTING.exists() else (sorted(proxy_codes()), messages())
    for code in codes:
        print(f"missing X-Cordon-Error code: `{code}`")
    for m in msgs:
        print(f"missing: {m.file}:{m.line}: {m.template}    [needs: {m.fragment}]")
    return 1 if (codes or msgs) else 0


if __name__ == "__main__":
    sys.exit(main())
