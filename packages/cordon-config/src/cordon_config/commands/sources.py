"""The secret-source flags and wizard questions that ``cordon route`` and ``cordon listener`` share."""

from __future__ import annotations

import argparse
import json
import os
import shlex
from collections.abc import Callable
from typing import Any, TypeVar

from cordon_config.commands.common import SOURCES, UsageError
from cordon_config.model import SecretRef

_Choice = TypeVar("_Choice", bound=str)  # one of a question's allowed answers (a Literal type)

SOURCE_FLAGS = ("source", "account", "service", "decode", "vault", "item", "field", "var", "path", "argv")


def add_source_arguments(parser: argparse.ArgumentParser, owner: str) -> None:
    """The ``secret source`` flag group (``owner``: "route" or "listener", for the help text)."""
    source = parser.add_argument_group("secret source")
    source.add_argument("--source", choices=SOURCES, help="where the secret lives (default: keyring)")
    source.add_argument("--account", metavar="NAME",
                        help=f"keyring account (default: the {owner} name) or 1Password account")
    source.add_argument("--service", metavar="NAME", help='keyring service (default: "cordon")')
    source.add_argument("--decode", choices=("go-keyring",), help="decode entries written by Go tools (gh)")
    source.add_argument("--vault", metavar="VAULT", help="1Password vault")
    source.add_argument("--item", metavar="ITEM", help="1Password item")
    source.add_argument("--field", metavar="FIELD", help="1Password field")
    source.add_argument("--var", metavar="NAME", help="environment variable (source env)")
    source.add_argument("--path", metavar="FILE", help="file holding the secret, mode 0600 (source file)")
    source.add_argument("--argv", metavar="CMD", help='command printing the secret, e.g. "gh auth token" or a JSON '
                        "array (source command; run without a shell)")


def given(args: argparse.Namespace, *names: str) -> list[str]:
    return [name for name in names if getattr(args, name, None) is not None]


def parse_argv(text: str) -> tuple[str, ...]:
    text = text.strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--argv is not a valid JSON array: {exc.msg}") from None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise UsageError("--argv JSON must be an array of strings")
        argv = tuple(value)
    else:
        try:
            argv = tuple(shlex.split(text))
        except ValueError as exc:
            raise UsageError(f"--argv cannot be split: {exc}") from None
    if not argv or not argv[0]:
        raise UsageError("--argv is empty", 'e.g. --argv "gh auth token"')
    return argv


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def secret_from_args(args: argparse.Namespace, route_name: str, base: SecretRef | None) -> SecretRef | None:
    """The secret reference the ``--source ...`` flags describe (``base`` filled in on edit; None when the flags
    leave ``base`` as it is). The keyring account defaults to the item's name."""
    source = args.source or (base.source if base else "keyring")
    per_source = {
        "keyring": ("account", "service", "decode"),
        "1password": ("vault", "item", "field", "account"),
        "env": ("var",),
        "file": ("path",),
        "command": ("argv",),
    }
    allowed = per_source[source]
    stray = [name for name in given(args, "account", "service", "decode", "vault", "item", "field", "var",
                                     "path", "argv") if name not in allowed]
    if stray:
        owners = [name for name, flags in per_source.items() if stray[0] in flags]
        hint = ("flags for this source: " + " ".join(flag(name) for name in allowed)) if args.source or \
            len(owners) != 1 else f"add --source {owners[0]}"
        raise UsageError(f"{flag(stray[0])} does not apply to --source {source}", hint)
    if base is not None and args.source in (None, base.source) and not given(args, *allowed):
        return None
    fields: dict[str, Any] = dict(base.fields) if base is not None and base.source == source else {}
    for name in allowed:
        value = getattr(args, name)
        if value is None:
            continue
        if name == "argv":
            fields["argv"] = parse_argv(value)
        elif name == "path":
            fields["path"] = os.path.abspath(value)
        else:
            fields[name] = value
    if source == "keyring":
        fields.setdefault("account", route_name)
        fields.setdefault("service", "cordon")
    required = {"1password": ("vault", "item", "field"), "env": ("var",), "file": ("path",),
                "command": ("argv",)}.get(source, ())
    missing = [name for name in required if name not in fields]
    if missing:
        raise UsageError(f"--source {source} needs " + " ".join(flag(name) for name in missing))
    return SecretRef(source, fields)


def ask(prompt: str, default: str | None = None, check: Callable[[str], str | None] | None = None) -> str:
    suffix = f" [{default}]" if default else ""
    while True:
        answer = input(f"{prompt}{suffix}: ").strip() or (default or "")
        if not answer:
            print("  a value is required")
            continue
        problem = check(answer) if check else None
        if problem:
            print(f"  {problem}")
            continue
        return answer


def ask_choice(prompt: str, allowed: tuple[_Choice, ...], default: _Choice) -> _Choice:
    """``ask`` for one of ``allowed``, which the prompt lists."""
    answer = ask(f"{prompt} (" + ", ".join(allowed) + ")", default,
                 lambda v: None if v in allowed else "one of: " + ", ".join(allowed))
    return allowed[allowed.index(answer)]  # the element itself, typed as one of the allowed values


def ask_secret(name: str, env_suffix: str) -> SecretRef:
    """The wizard's questions for a secret source; ``env_suffix`` ends the suggested variable name."""
    source = ask_choice("secret source", SOURCES, "keyring")
    fields: dict[str, Any] = {}
    if source == "keyring":
        fields["account"] = ask("keyring account", name)
        fields["service"] = ask("keyring service", "cordon")
    elif source == "1password":
        for key in ("vault", "item", "field"):
            fields[key] = ask(f"1Password {key}", "credential" if key == "field" else None)
        account = input("1Password account (empty for the default): ").strip()
        if account:
            fields["account"] = account
    elif source == "env":
        fields["var"] = ask("environment variable", name.upper().replace("-", "_").replace(".", "_") + env_suffix)
    elif source == "file":
        fields["path"] = os.path.abspath(ask("file holding the secret (mode 0600)"))
    else:
        fields["argv"] = parse_argv(ask("command printing the secret (e.g. gh auth token)"))
    return SecretRef(source, fields)
