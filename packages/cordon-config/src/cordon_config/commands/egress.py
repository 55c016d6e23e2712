"""`cordon egress allow|deny|list|mode`: the ``[egress]`` table of cordon.toml."""

from __future__ import annotations

import argparse

from cordon_config.commands.common import OK, RESTART, UsageError, load, print_json
from cordon_config.errors import ConfigError
from cordon_config.model import Egress

TUNNEL_NOTE = ('unrouted = "tunnel": every host without a route passes anyway; '
               "`cordon egress mode deny` refuses those not allowed")


def describe_egress(egress: Egress) -> list[str]:
    """What ``[egress]`` means, line by line (``egress list``, doctor)."""
    if egress.unrouted == "tunnel":
        lines = ["hosts without a route: tunnelled untouched (unrouted = \"tunnel\")"]
        if egress.allow:
            lines.append("allow list (used once unrouted = \"deny\"): " + ", ".join(egress.allow))
        return lines
    lines = ["hosts without a route: refused unless allowed (unrouted = \"deny\")"]
    lines.append("allowed: " + (", ".join(egress.allow) if egress.allow else "none (only routed hosts)"))
    return lines


def run_egress(args: argparse.Namespace) -> int:
    from cordon_config.edit import edit_egress

    paths, config = load(args)
    action = args.action
    if action == "list":
        if args.json:
            print_json({"unrouted": config.egress.unrouted, "allow": list(config.egress.allow),
                        "config": str(config.path)})
            return OK
        for line in describe_egress(config.egress):
            print(line)
        return OK
    try:
        if action == "allow":
            before, after = edit_egress(paths.config_path, allow=args.hosts)
        elif action == "deny":
            before, after = edit_egress(paths.config_path, disallow=args.hosts)
        else:
            before, after = edit_egress(paths.config_path, unrouted=args.mode)
    except ValueError as exc:
        raise UsageError(str(exc), 'an entry is a host name, an IP address, or "*." and a domain') from None
    except ConfigError as exc:
        raise UsageError(exc.first_line) from None
    if before == after:
        print(f"[egress] unchanged in {paths.config_path}")
        for line in describe_egress(after):
            print(f"  {line}")
        return OK
    from cordon_config.approvals import egress_item
    from cordon_config.commands.approve import record

    record(paths, config, egress_item(before), egress_item(after))  # a person ran this: the change is approved
    added = [entry for entry in after.allow if entry not in before.allow]
    removed = [entry for entry in before.allow if entry not in after.allow]
    if added:
        print("allowed: " + ", ".join(added))
    if removed:
        print("no longer allowed: " + ", ".join(removed))
    if before.unrouted != after.unrouted:
        print(f'unrouted: "{before.unrouted}" -> "{after.unrouted}"')
    print(f"  in {paths.config_path}")
    if after.unrouted == "tunnel" and action in ("allow", "deny"):
        print(f"note: {TUNNEL_NOTE}")
    print(RESTART)
    return OK
