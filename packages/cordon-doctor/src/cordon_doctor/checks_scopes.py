"""Doctor checks across scopes and clients: no other scope shares this scope's port, and the environment
doctor runs in does not send a routed host around the proxy (``NO_PROXY``). Read-only."""

from __future__ import annotations

from cordon_doctor.context import DoctorContext
from cordon_doctor.finding import Finding, fail, ok, warn


def check_port_owner(ctx: DoctorContext) -> list[Finding]:
    """Another known scope's cordon.toml listens on the same port: the two proxies cannot both run."""
    from cordon_config.scopes import ports_in_use, scope_port

    if ctx.config is None:
        return []
    other = ports_in_use(ctx.environ, exclude=ctx.paths.config_path).get(ctx.config.listen)
    if other is None:
        return [ok("port.scopes", f"no other cordon scope uses port {ctx.config.listen}")]
    free = scope_port(6790, ctx.environ, exclude=ctx.paths.config_path, avoid=(ctx.config.listen,))
    return [fail("port.scopes", f"port {ctx.config.listen} is also the port of another cordon scope ({other}): "
                 "only one of their proxies can run, and a client of one would reach the other",
                 f"cordon config set listen {free}{ctx.scope_flag}   (this scope's agents' files follow)")]


def check_no_proxy(ctx: DoctorContext) -> list[Finding]:
    """``NO_PROXY``/``no_proxy`` here lists a routed host: clients started from this shell bypass the route."""
    from cordon_config.noproxy import bypassing

    if ctx.config is None or not ctx.config.routes:
        return []
    found = bypassing(ctx.environ, [route.host for route in ctx.config.routes])
    if not found:
        return []
    name, value, host = found[0]
    hosts = sorted({host for _, _, host in found})
    return [warn("routes.no_proxy", f"{name}={value} in this environment sends {', '.join(hosts)} around cordon: "
                 "a client started from here never reaches the route",
                 f'eval "$(cordon env{ctx.scope_flag})"   (its NO_PROXY leaves routed hosts out), or remove {host} '
                 f"from {name}")]
