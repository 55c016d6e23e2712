"""What several agent targets share: the dummy key of their provider and the next-step lines for its route."""

from __future__ import annotations

from cordon_config.providers import DUMMY_KEY, Provider, by_name

from cordon_setup.context import SetupContext


def provider(name: str) -> Provider:
    """The provider called ``name`` in cordon-config's table (a KeyError is a bug in the target)."""
    found = by_name(name)
    if found is None:
        raise KeyError(name)
    return found


def dummy_key(name: str) -> dict[str, str]:
    """``{<the provider's usual key variable>: <the dummy>}``: what makes the agent pick that provider."""
    return {provider(name).key_vars[0]: DUMMY_KEY}


def scope_suffix(ctx: SetupContext) -> str:
    """`` --scope user`` / `` --config PATH`` for follow-up commands; empty where a plain command finds the
    config (project scope, run from the project directory)."""
    return "" if ctx.paths.scope == "project" and ctx.default_config else f" {ctx.scope_flag}"


def route_steps(ctx: SetupContext, name: str) -> list[str]:
    """The ``cordon route add`` and ``cordon secret set`` lines for provider ``name``, or a note that
    cordon.toml already routes its host."""
    found = provider(name)
    existing = ctx.routes.get(found.host)
    if existing:
        return [f"(cordon.toml already routes {found.host}: route '{existing}')"]
    scope = scope_suffix(ctx)
    return [
        f"cordon route add{scope} {found.route_flags()} --source keyring --account {found.name}",
        f"cordon secret set{scope} {found.name}    # the real {found.name} API key, stored in your keyring",
    ]


def start_step(ctx: SetupContext) -> str:
    """How to start this scope's proxy."""
    scope = scope_suffix(ctx)
    return f"cordon start{scope}    # or run it in the background: cordon service install{scope}"
