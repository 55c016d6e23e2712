"""The commands every cordon installation is expected to have, and the distribution that owns each.

Discovery (``discover.py``) finds what is installed; this table is what lets ``cordon --help`` name the
package to install when a command's owner is missing. It is data only: nothing here imports a tool.
"""

from __future__ import annotations


class KnownCommand:
    """A top-level command, the distribution that provides it and a one-line summary.

    A plain slotted class, not a dataclass: `dataclasses` (and the `inspect` it imports) would cost more
    start-up time than the rest of `cordon --help` together.
    """

    __slots__ = ("dist", "name", "summary")

    def __init__(self, name: str, dist: str, summary: str) -> None:
        self.name = name
        self.dist = dist
        self.summary = summary

    def __repr__(self) -> str:
        return f"KnownCommand({self.name!r}, {self.dist!r}, {self.summary!r})"


# Order is the order of `cordon --help`: grouped by tool, in the order a user meets them.
KNOWN_COMMANDS: tuple[KnownCommand, ...] = (
    KnownCommand("setup", "cordon-setup", "create the CA, cordon.toml, bundle and tokens; wire up an agent"),
    KnownCommand("integration", "cordon-setup", "disable an agent integration, removing exactly what setup wrote"),
    KnownCommand("env", "cordon-setup", "print the proxy and CA environment variables for any tool"),
    KnownCommand("run", "cordon-setup", "run a command with the env contract (starting a proxy if needed)"),
    KnownCommand("service", "cordon-setup", "install/uninstall/inspect the background service"),
    KnownCommand("route", "cordon-config", "add, edit, list, show and remove routes in cordon.toml"),
    KnownCommand("listener", "cordon-config", "add, edit, list, show and remove PostgreSQL listeners"),
    KnownCommand("secret", "cordon-config", "store, delete and check the secret behind a route or listener"),
    KnownCommand("token", "cordon-config", "list, rotate and revoke proxy tokens"),
    KnownCommand("config", "cordon-config", "show or change cordon.toml settings; migrate legacy forms"),
    KnownCommand("scopes", "cordon-config", "list cordon's scopes; prune those whose project is gone"),
    KnownCommand("start", "cordon-proxy", "run the proxy in the foreground"),
    KnownCommand("status", "cordon-proxy", "is this scope's proxy running (proven by its identity key)?"),
    KnownCommand("wait", "cordon-proxy", "wait until this scope's proxy answers"),
    KnownCommand("stop", "cordon-proxy", "stop this scope's running proxy"),
    KnownCommand("restart", "cordon-proxy", "stop this scope's proxy and start it in the background"),
    KnownCommand("reload", "cordon-proxy", "make the running proxy re-read cordon.toml (also: SIGHUP)"),
    KnownCommand("logs", "cordon-proxy", "show (or follow) this scope's proxy log"),
    KnownCommand("ca", "cordon-ca", "generate, show and bundle the local CA"),
    KnownCommand("trust", "cordon-ca", "add the cordon CA to the OS trust store"),
    KnownCommand("untrust", "cordon-ca", "remove the cordon CA from the OS trust store"),
    KnownCommand("pg", "cordon-pg", "check the PostgreSQL listeners' ports and upstream servers"),
    KnownCommand("doctor", "cordon-doctor", "diagnose the setup, each failure with its fix"),
    KnownCommand("demo", "cordon-doctor", "self-contained end-to-end demonstration (no account, no network)"),
)

TOOL_DISTS: tuple[str, ...] = ("cordon-setup", "cordon-config", "cordon-proxy", "cordon-pg", "cordon-ca",
                               "cordon-doctor")
