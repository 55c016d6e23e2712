"""cordon's Node register hook (``node/cordon-register.cjs``, shipped in this package) and its place in a scope.

The env contract puts ``NODE_OPTIONS=--require <state dir>/node/cordon-register.cjs`` into the environment:
the hook routes Node's ``fetch`` and ``http``/``https`` through the proxy with CONNECT tunnels, for Node before
22.21 (no ``NODE_USE_ENV_PROXY``) and for libraries that bring their own agents. Setup copies the hook into the
scope's state directory, so the path in agents' files stays valid when cordon itself is upgraded or moved.
"""

from __future__ import annotations

from pathlib import Path

from cordon_config.scope import ScopePaths

HOOK_NAME = "cordon-register.cjs"


def hook_source() -> bytes:
    """The hook as shipped with this version of cordon-setup."""
    from importlib import resources

    return resources.files("cordon_setup").joinpath("node", HOOK_NAME).read_bytes()


def hook_path(paths: ScopePaths) -> Path:
    """``<state dir>/node/cordon-register.cjs``."""
    return paths.state_dir / "node" / HOOK_NAME


def node_options(hook: Path) -> str:
    """The ``NODE_OPTIONS`` value that loads ``hook`` (double-quoted when the path needs it, as Node parses)."""
    text = str(hook)
    if any(ch in text for ch in ' "\\\t'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"--require {text}"


def hook_is_current(paths: ScopePaths) -> bool:
    """Whether the scope's copy of the hook exists and is this version's."""
    try:
        return hook_path(paths).read_bytes() == hook_source()
    except OSError:
        return False


def ensure_hook(paths: ScopePaths) -> bool:
    """Write the scope's copy of the hook when it is missing or from another version; True when written."""
    from cordon_config.files import atomic_write

    if hook_is_current(paths):
        return False
    target = hook_path(paths)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, hook_source(), mode=0o644)
    return True
