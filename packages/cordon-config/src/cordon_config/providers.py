"""Well-known API providers: their host, the environment variables their clients read the key from, and how
the key is sent. The one table every tool consults (``cordon run``'s environment, setup's agent files, the
suggested route for an integration). Pure data; stdlib only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["DUMMY_KEY", "PROVIDERS", "Provider", "by_host", "by_name", "key_variables", "provider_for_variable"]

#: The value an agent holds instead of a real key; cordon replaces it on the wire.
DUMMY_KEY = "dummy-replaced-by-cordon"


@dataclass(frozen=True, slots=True)
class Provider:
    """One provider: ``key_vars`` are the variables its clients read (first = the usual one)."""

    name: str
    host: str
    key_vars: tuple[str, ...]
    header_name: str
    scheme: str | None = None

    def route_flags(self) -> str:
        """The ``cordon route add`` flags for this provider's usual route (without the secret)."""
        flags = f"--name {self.name} --host {self.host} --auth-type header --header-name {self.header_name}"
        return flags + (f" --scheme {self.scheme}" if self.scheme else "")


PROVIDERS: tuple[Provider, ...] = (
    Provider("openai", "api.openai.com", ("OPENAI_API_KEY",), "Authorization", "Bearer"),
    Provider("anthropic", "api.anthropic.com", ("ANTHROPIC_API_KEY",), "x-api-key"),
    Provider("gemini", "generativelanguage.googleapis.com", ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
             "x-goog-api-key"),
    Provider("openrouter", "openrouter.ai", ("OPENROUTER_API_KEY",), "Authorization", "Bearer"),
    Provider("mistral", "api.mistral.ai", ("MISTRAL_API_KEY",), "Authorization", "Bearer"),
    Provider("groq", "api.groq.com", ("GROQ_API_KEY",), "Authorization", "Bearer"),
    Provider("deepseek", "api.deepseek.com", ("DEEPSEEK_API_KEY",), "Authorization", "Bearer"),
    Provider("xai", "api.x.ai", ("XAI_API_KEY",), "Authorization", "Bearer"),
    Provider("github", "api.github.com", ("GH_TOKEN", "GITHUB_TOKEN"), "Authorization", "Bearer"),
)

_BY_NAME: Mapping[str, Provider] = {p.name: p for p in PROVIDERS}
_BY_HOST: Mapping[str, Provider] = {p.host: p for p in PROVIDERS}
_BY_VAR: Mapping[str, Provider] = {var: p for p in PROVIDERS for var in p.key_vars}


def by_name(name: str) -> Provider | None:
    """The provider called ``name`` (``openai``, ``anthropic`` …), or None."""
    return _BY_NAME.get(name)


def by_host(host: str) -> Provider | None:
    """The provider whose API lives at ``host`` (canonical, lower-case), or None."""
    return _BY_HOST.get(host)


def provider_for_variable(name: str) -> Provider | None:
    """The provider whose clients read their key from the environment variable ``name``, or None."""
    return _BY_VAR.get(name)


def key_variables(hosts: Iterable[str]) -> dict[str, Provider]:
    """Every well-known key variable of the providers among ``hosts`` (the routed hosts)."""
    wanted = set(hosts)
    return {var: p for var, p in _BY_VAR.items() if p.host in wanted}
