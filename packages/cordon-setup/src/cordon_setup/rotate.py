"""Rewrite the files of the integrations using a token after it changed (``cordon token rotate``).

cordon-config must not import cordon-setup, so it reaches this through the ``cordon.token_rotated``
entry-point group (see this package's pyproject.toml): load every entry point of that group and call it
with ``(paths, token_name)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cordon_config.scope import ScopePaths

from cordon_setup.base import read_config_facts, token_value
from cordon_setup.context import home_dir
from cordon_setup.envvars import env_contract
from cordon_setup.integrations import installed, load_manifest, replan, rewrite
from cordon_setup.plan import FileChange


def rewrite_integrations(
    paths: ScopePaths,
    token_name: str | None,
    *,
    token: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[FileChange]:
    """Rewrite every integration of this scope whose client token is ``token_name`` (None: all of them)
    with the current proxy URL: ``token`` if given, else the value in tokens.toml; also picks up a changed
    port or CA path. Returns the changes applied (empty when nothing uses that token)."""
    env_map = os.environ if environ is None else environ
    facts = read_config_facts(paths)
    if facts is None:
        return []
    changes: list[FileChange] = []
    for name in installed(paths):
        manifest = load_manifest(paths, name)
        if manifest is None or (token_name is not None and manifest.get("token") != token_name):
            continue
        tok_name = manifest.get("token", name)
        value = token if token is not None and tok_name == token_name else token_value(paths, tok_name)
        if value is None:
            continue  # its token was revoked: doctor says so; a URL without a token would only get 407s
        env = env_contract(paths, facts.listen, value, ca_cert=facts.ca_cert, routed_hosts=facts.routes)
        changes += rewrite(paths, name, port=facts.listen, env=env, environ=env_map, home=home_dir(env_map))
    return changes


def on_token_rotated(paths: ScopePaths, token_name: str, token: str | None = None) -> list[str]:
    """Entry point for cordon-config: rewrite, and return one line per file changed (for its output).

    ``token``: the new value, when the caller rewrites the files *before* saving it to tokens.toml.
    """
    changes = rewrite_integrations(paths, token_name, token=token)
    return [f"rewrote {c.path}" for c in changes if not c.summary]


def on_routes_changed(paths: ScopePaths, config: object) -> list[str]:
    """Entry point for cordon-config after it wrote cordon.toml (a route or setting changed): rewrite the
    integrations whose files no longer match (a new port, or a routed host that NO_PROXY must not list)."""
    changes = rewrite_integrations(paths, None)
    return [f"rewrote {c.path}" for c in changes if not c.summary and c.changed]


def stale_files(
    paths: ScopePaths, name: str, *, environ: Mapping[str, str] | None = None
) -> list[FileChange]:
    """The changes `cordon setup <name>` would make now (for ``cordon doctor``: files that no longer match
    the current port, token or bundle, or that the user edited). Empty when all is current or not set up."""
    env_map = os.environ if environ is None else environ
    facts = read_config_facts(paths)
    manifest = load_manifest(paths, name)
    if facts is None or manifest is None:
        return []
    value = token_value(paths, manifest.get("token", name))
    if value is None:
        return []
    env = env_contract(paths, facts.listen, value, ca_cert=facts.ca_cert, routed_hosts=facts.routes)
    plan = replan(paths, name, port=facts.listen, env=env, environ=env_map, home=home_dir(env_map))
    return [] if plan is None else [c for c in plan.changes if c.changed]
