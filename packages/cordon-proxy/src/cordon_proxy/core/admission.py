"""Whether a request bound to a route may proceed to its secret (pure, sans-IO): the route's method and path
rules (:func:`rule_refusal`, grammar in :mod:`cordon_config.pathrules`), its rate limit (:class:`RateLimiter`,
a token bucket per route), and the egress policy for hosts without a route (:class:`EgressPolicy`).

Time is the edge's: the limiter is handed ``now`` (seconds, monotonic) by its caller.
"""

from __future__ import annotations

import math
from functools import lru_cache

from cordon_config.egress import EgressAllow
from cordon_config.hosts import canonical_host
from cordon_config.model import Egress, RateLimit, Route
from cordon_config.pathrules import AmbiguousPath, PathRules, normalise_path

from cordon_proxy.core.policy import literal_address

__all__ = ["EgressPolicy", "RateLimiter", "rule_refusal"]


@lru_cache(maxsize=256)
def _compiled(paths: tuple[str, ...]) -> PathRules:
    return PathRules(paths)


def rule_refusal(route: Route, method: str, target: str) -> str | None:
    """Why ``method target`` is outside ``route``'s rules (one line, safe to show), or None when allowed.

    ``target`` is the origin-form request target; its query is not part of the comparison.
    """
    path = target.split("?", 1)[0]
    methods = route.methods
    if methods is not None and method not in methods:
        return f'route "{route.name}" does not allow method {method} (allowed: {", ".join(methods)})'
    paths = route.paths
    if paths is None:
        return None
    try:
        normal = normalise_path(path)
    except AmbiguousPath as exc:
        return f'route "{route.name}" has path rules and the path {path} is ambiguous ({exc}); send it normalised'
    if not _compiled(paths).allows(normal):
        return f'route "{route.name}" does not allow the path {normal} (allowed: {", ".join(paths)})'
    return None


class RateLimiter:
    """Token buckets by route name, shared by every connection (and kept across a reload).

    A bucket holds up to ``limit.capacity`` requests and refills at ``requests_per_minute / 60`` per second;
    a request takes one. A route whose limit changes keeps its current level, capped at the new capacity.
    """

    __slots__ = ("_buckets",)

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # route name -> (tokens, time of that level)

    def take(self, route_name: str, limit: RateLimit, now: float) -> float:
        """Take one request from the route's bucket at time ``now``: 0.0 when allowed, else the seconds until
        one request will be available again (nothing is taken)."""
        capacity = float(limit.capacity)
        rate = limit.requests_per_minute / 60.0
        tokens, then = self._buckets.get(route_name, (capacity, now))
        tokens = min(capacity, tokens + max(0.0, now - then) * rate)
        if tokens >= 1.0:
            self._buckets[route_name] = (tokens - 1.0, now)
            return 0.0
        self._buckets[route_name] = (tokens, now)
        return (1.0 - tokens) / rate


def retry_after(seconds: float) -> bytes:
    """The ``Retry-After`` value for a wait of ``seconds`` (whole seconds, at least 1)."""
    return str(max(1, math.ceil(seconds))).encode("ascii")


class EgressPolicy:
    """``[egress]`` compiled: ``deny`` says whether hosts without a route are refused unless allowed."""

    __slots__ = ("allow", "deny")

    def __init__(self, egress: Egress) -> None:
        self.deny = egress.unrouted == "deny"
        self.allow = EgressAllow(egress.allow)

    def allows(self, host: str) -> bool:
        """Whether traffic to ``host`` (a CONNECT or absolute-form host without a route) may pass."""
        if not self.deny:
            return True
        address = literal_address(host)
        if address is not None:
            return self.allow.allows_address(address)
        try:
            name = canonical_host(host)
        except ValueError:
            return False
        return self.allow.allows_name(name)
