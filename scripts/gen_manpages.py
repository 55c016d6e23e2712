"""Generate the man pages of `cordon` and every `cordon-<tool>` from the installed parsers.

Run: `uv run python scripts/gen_manpages.py` (writes) or `--check` (exit 1 when a committed page is stale).
Pages go to `<package>/data/share/man/man1/`, which uv_build ships as wheel data (`share/man/man1/`); after
`uv tool install` they are in `$(uv tool dir)/cordon/share/man/man1/` (README: how `man` finds them).

Every command page comes from scripts/cli_pages.py (the `cordon.commands` entry points and every argparse
subcommand inside them), so a new command or option appears here without being listed. `cordon.1` documents
every command; each tool's page documents the commands that tool provides. The sections are the usual ones:
NAME (with a one-line description, for whatis/apropos), SYNOPSIS, DESCRIPTION, COMMANDS (each with its usage,
options and examples, the examples kept verbatim), FILES, ENVIRONMENT, EXIT STATUS, SEE ALSO.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATE = "2026"  # fixed, so the pages are reproducible and the staleness check is stable

_spec = importlib.util.spec_from_file_location("cordon_cli_pages", ROOT / "scripts" / "cli_pages.py")
assert _spec is not None and _spec.loader is not None
cli_pages = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("cordon_cli_pages", cli_pages)
_spec.loader.exec_module(cli_pages)

# (prog, distribution, one-line description for NAME, project directory)
PAGES: tuple[tuple[str, str, str, Path], ...] = (
    ("cordon", "cordon", "inject real API credentials into AI agents' HTTPS requests; the agent holds a dummy key",
     ROOT),
    ("cordon-ca", "cordon-ca", "cordon's local certificate authority: create, show, bundle and trust it",
     ROOT / "packages" / "cordon-ca"),
    ("cordon-config", "cordon-config", "cordon.toml routes and settings, route secrets, proxy tokens and scopes",
     ROOT / "packages" / "cordon-config"),
    ("cordon-proxy", "cordon-proxy", "the cordon credential-injecting proxy: start, status, wait, logs",
     ROOT / "packages" / "cordon-proxy"),
    ("cordon-setup", "cordon-setup", "wire AI agents up to cordon: setup, integration, env, run, service",
     ROOT / "packages" / "cordon-setup"),
    ("cordon-doctor", "cordon-doctor", "diagnose a cordon setup, and the self-contained demo",
     ROOT / "packages" / "cordon-doctor"),
    ("cordon-pg", "cordon-pg", "cordon's PostgreSQL credential listeners: check their ports and upstream servers",
     ROOT / "packages" / "cordon-pg"),
)

FILES = (
    ("cordon.toml", "The project's configuration: the nearest one in the working directory or above it "
     "(like git; not above the home directory, another filesystem or a directory others may write). "
     "\\-\\-config PATH names one; \\-\\-scope user uses $XDG_CONFIG_HOME/cordon/cordon.toml."),
    ("$XDG_CONFIG_HOME/cordon/projects/NAMESPACE/", "The state directory of a project scope (NAMESPACE is "
     "the project directory's name and 8 hex digits of its path's SHA-256); $XDG_CONFIG_HOME/cordon/user/ for the "
     "user scope. It holds the files below."),
    ("certs/ca-cert.pem, certs/ca-key.pem", "The scope's local CA (the key is 0600)."),
    ("certs/combined-ca.pem", "The system's trusted roots plus the cordon CA: what SSL_CERT_FILE and the other "
     "CA variables of the env contract point at."),
    ("tokens.toml", "The proxy tokens (0600); cordon token lists, rotates and revokes them."),
    ("scope.json", "Which cordon.toml the state directory belongs to (and where its proxy logs); cordon scopes "
     "lists them, and setup gives each scope its own port."),
    ("proxy.log", "The proxy log of the service and of cordon run's proxy (0600, appended; cordon logs shows "
     "it, wherever cordon start \\-\\-log\\-file put it)."),
    ("integrations/NAME.json", "What cordon setup NAME wrote, so cordon integration disable can undo exactly "
     "that."),
    ("env-cache", "The last answer of cordon env, reused while cordon.toml and tokens.toml are unchanged."),
)

ENVIRONMENT = (
    ("XDG_CONFIG_HOME", "Where the state directories and the user scope live (default ~/.config)."),
    ("HOME", "The user's home directory; config discovery stops below it."),
    ("NO_COLOR", "When set, no colour on a terminal."),
    ("HTTPS_PROXY, HTTP_PROXY, https_proxy, http_proxy", "Set by the env contract (cordon env, cordon run, "
     "the agents' files): http://NAMESPACE:TOKEN@127.0.0.1:PORT, the user part percent-encoded."),
    ("NO_PROXY, no_proxy", "Set by the env contract to localhost,127.0.0.1,::1 without the hosts that have a "
     "route; cordon route add and cordon doctor warn when the calling environment's value bypasses a route."),
    ("SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, GIT_SSL_CAINFO", "Set by the env contract to the "
     "combined CA bundle."),
    ("NODE_EXTRA_CA_CERTS, NODE_USE_ENV_PROXY", "Set by the env contract: the cordon CA alone, and 1 (Node's "
     "own fetch honours the proxy)."),
    ("CODEX_HOME", "Where the codex integration writes in the user scope (default ~/.codex)."),
)

EXIT_STATUS = (
    ("0", "Success (cordon status: the proxy is running)."),
    ("1", "Failure (cordon status: not running; cordon doctor: a check failed)."),
    ("2", "Bad input: an unknown command or option, a missing argument (one line on stderr, with a "
     "suggestion)."),
    ("3", "The cordon tool that provides the command is not installed (cordon only)."),
    ("130", "Interrupted (Ctrl\\-C)."),
)
RUN_STATUS = "cordon run exits with the wrapped command's status (127 when it is not found)."

DOCS = "docs/ in the cordon source tree: getting-started.md, configuration.md, secrets.md, troubleshooting.md."


def page_path(prog: str, project: Path) -> Path:
    """Where the committed page of ``prog`` lives."""
    return project / "data" / "share" / "man" / "man1" / f"{prog}.1"


def esc(text: str) -> str:
    """Text for roff: backslashes escaped, ASCII hyphens kept (``\\-``), no line starting as a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in text.split("\n"))


def _raw(text: str) -> str:
    """Text already holding roff escapes (our own tables): only guard the line starts."""
    return "\n".join(("\\&" + line) if line.startswith((".", "'")) else line for line in text.split("\n"))


def _verbatim(text: str) -> list[str]:
    """Lines shown exactly as written (examples, usage): no filling, no adjusting."""
    return [".RS 4", ".nf", *(esc(line) if line.strip() else "" for line in text.rstrip("\n").split("\n")), ".fi",
            ".RE"]


def _option_label(action: argparse.Action) -> str:
    if action.option_strings:
        flags = ", ".join(f"\\fB{esc(flag)}\\fR" for flag in action.option_strings)
        if action.nargs == 0:
            return flags
        metavar = action.metavar or action.dest.upper()
        if isinstance(metavar, tuple):
            metavar = " ".join(metavar)
        return f"{flags} \\fI{esc(str(metavar))}\\fR"
    metavar = action.metavar or action.dest
    return f"\\fI{esc(str(metavar))}\\fR"


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser._get_formatter()
    text = formatter._expand_help(action) if action.help else ""
    if action.choices and not isinstance(action, argparse._SubParsersAction) and "{" not in _option_label(action):
        choices = ", ".join(str(c) for c in action.choices)
        if choices not in text:
            text = f"{text} (one of: {choices})" if text else f"one of: {choices}"
    return " ".join(text.split())


def _options(parser: argparse.ArgumentParser) -> list[str]:
    lines: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction | argparse._VersionAction):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        lines += [".TP", _option_label(action), esc(_help(parser, action)) or "\\&"]
    return lines


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            found += [(name, helps.get(name) or "") for name in action.choices]
    return found


def _blocks(epilog: str) -> list[tuple[str | None, str]]:
    """An epilog split at its ``label:`` lines (``examples:``, ``keys:``): (label, body) pairs."""
    blocks: list[tuple[str | None, list[str]]] = [(None, [])]
    for line in epilog.rstrip("\n").split("\n"):
        match = re.fullmatch(r"([A-Za-z][A-Za-z ]*):\s*", line)
        if match:
            blocks.append((match.group(1), []))
        else:
            blocks[-1][1].append(line)
    return [(label, "\n".join(body).strip("\n")) for label, body in blocks if "\n".join(body).strip()]


def _usage(parser: argparse.ArgumentParser) -> str:
    return re.sub(r"^usage: ", "", parser.format_usage().strip())


def command_section(page: object) -> list[str]:
    """One command (or subcommand): its usage, description, subcommands, options and examples."""
    parser: argparse.ArgumentParser = page.parser  # type: ignore[attr-defined]
    lines = [f'.SS "{esc(page.id)}"']  # type: ignore[attr-defined]
    lines += _verbatim(_usage(parser))
    if parser.description:
        lines += [".PP", esc(" ".join(parser.description.split()))]
    subs = _subcommands(parser)
    if subs:
        lines += [".PP", "Actions:"]
        for name, summary in subs:
            lines += [".TP", f"\\fB{esc(name)}\\fR", esc(summary) or "\\&"]
    options = _options(parser)
    if options:
        lines += [".PP", "Options:", *options]
    if parser.epilog and not subs:
        for label, body in _blocks(parser.epilog):
            lines += [".PP", f"{esc(label[0].upper() + label[1:])}:" if label else "\\&", *_verbatim(body)]
    return lines


def _definitions(title: str, items: tuple[tuple[str, str], ...], *, bold: bool) -> list[str]:
    lines = [f".SH {title}"]
    for term, text in items:
        lines += [".TP", (f"\\fB{_raw(term)}\\fR" if bold else _raw(term)), _raw(text)]
    return lines


def render(prog: str, dist: str, summary: str) -> str:
    """The man page text for one program."""
    version = metadata.version(dist)
    pages = cli_pages.pages()
    owned = pages if prog == "cordon" else [p for p in pages if _dist_of(p.words[0]) == dist]
    lines = [
        f'.TH "{prog.upper()}" "1" "{DATE}" "{dist} {version}" "cordon manual"',
        ".SH NAME",
        f"{esc(prog)} \\- {esc(summary)}",
        ".SH SYNOPSIS",
    ]
    tops = [p for p in owned if len(p.words) == 1]
    if prog == "cordon":
        lines += [".B cordon", "[\\fB\\-h\\fR] [\\fB\\-V\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR...]", ".br",
                  ".B cordon help", "\\fICOMMAND\\fR [\\fISUBCOMMAND\\fR]"]
    else:
        for top in tops:
            lines += [f".B {esc(prog)} {esc(top.words[0])}", "[\\fIARGS\\fR...]", ".br"]
        lines += [f".B {esc(prog)}", "\\fB\\-\\-help\\fR"]
    lines += [".SH DESCRIPTION", esc(_description(prog, dist))]
    if prog == "cordon":
        lines += [".PP", "Commands, by the tool that provides them:"]
        from cordon.catalogue import KNOWN_COMMANDS

        for known in KNOWN_COMMANDS:
            lines += [".TP", f"\\fB{esc(known.name)}\\fR", f"{esc(known.summary)} ({esc(known.dist)}(1))"]
    else:
        lines += [".PP", esc(f"Each command is also run as `cordon COMMAND` (the `cordon` umbrella) and as "
                             f"`{prog} COMMAND`; both take the same arguments.")]
    lines += [".SH COMMANDS"]
    for page in owned:
        lines += command_section(page)
    examples = _umbrella_examples() if prog == "cordon" else _tool_examples(prog)
    if examples:
        lines += [".SH EXAMPLES", *_verbatim(examples)]
    lines += _definitions("FILES", FILES, bold=False)
    lines += _definitions("ENVIRONMENT", ENVIRONMENT, bold=True)
    lines += _definitions("EXIT STATUS", EXIT_STATUS, bold=False)
    lines += [".PP", esc(RUN_STATUS)]
    others = [name for name, *_ in PAGES if name != prog]
    lines += [".SH SEE ALSO", ",\n".join(f"\\fB{esc(name)}\\fR(1)" for name in others), ".PP", esc(DOCS)]
    return "\n".join(lines) + "\n"


def _dist_of(command: str) -> str | None:
    from cordon.catalogue import KNOWN_COMMANDS

    for known in KNOWN_COMMANDS:
        if known.name == command:
            return known.dist
    for entry in metadata.entry_points(group=cli_pages.GROUP):
        if entry.name == command and entry.dist is not None:
            return entry.dist.name
    return None


def _description(prog: str, dist: str) -> str:
    if prog == "cordon":
        from cordon.cli import build_parser

        return str(build_parser(prog).description)
    return " ".join(metadata.metadata(dist)["Summary"].split())


def _umbrella_examples() -> str:
    from cordon.cli import EXAMPLES

    return EXAMPLES.split("\n", 1)[1]


def _tool_examples(prog: str) -> str:
    """The examples of ``<tool> --help`` (the standalone tool's own spelling)."""
    module = {"cordon-ca": "cordon_ca.cli", "cordon-config": "cordon_config.cli", "cordon-proxy": "cordon_proxy.cli",
              "cordon-setup": "cordon_setup.cli", "cordon-doctor": "cordon_doctor.cli", "cordon-pg": "cordon_pg.cli"}[prog]
    parser = importlib.import_module(module).build_parser(prog)
    for label, body in _blocks(parser.epilog or ""):
        if label and label.lower().startswith("example"):
            return body
    return ""


def main(argv: list[str] | None = None) -> int:
    """Write every page, or with --check report the stale ones."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if any page is stale")
    args = ap.parse_args(argv)
    stale = []
    for prog, dist, summary, project in PAGES:
        text = render(prog, dist, summary)
        path = page_path(prog, project)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path.relative_to(ROOT)}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
