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
    """One provider: ``key_vars`` are the variables its clients read (first = the usual one). ``methods`` and
    ``paths`` are the suggested ``[routes.match]`` rules for a coding agent's use of the API (empty: no
    suggestion); docs/configuration.md lists them."""

    name: str
    host: str
    key_vars: tuple[str, ...]
    header_name: str
    scheme: str | None = None
    methods: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()

    def route_flags(self) -> str:
        """The ``cordon route add`` flags for this provider's usual route (without the secret)."""
        flags = f"--name {self.name} --host {self.host} --auth-type header --header-name {self.header_name}"
        return flags + (f" --scheme {self.scheme}" if self.scheme else "")

    def rule_flags(self) -> str:
        """The ``cordon route add|edit`` flags of the suggested rules ("" when there is no suggestion)."""
        flags = []
        if self.methods:
            flags.append("--methods " + ",".join(self.methods))
        if self.paths:
            flags.append('--paths "' + ",".join(self.paths) + '"')
        return " ".join(flags)


_POST_GET = ("POST", "GET")
PROVIDERS: tuple[Provider, ...] = (
    Provider("openai", "api.openai.com", ("OPENAI_API_KEY",), "Authorization", "Bearer", _POST_GET,
             ("/v1/responses*", "/v1/chat/completions", "/v1/embeddings", "/v1/models*")),
    Provider("anthropic", "api.anthropic.com", ("ANTHROPIC_API_KEY",), "x-api-key", None, _POST_GET,
             ("/v1/messages*", "/v1/models*")),
    Provider("gemini", "generativelanguage.googleapis.com", ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
             "x-goog-api-key", None, _POST_GET, ("/v1beta/models*", "/v1/models*")),
    Provider("openrouter", "openrouter.ai", ("OPENROUTER_API_KEY",), "Authorization", "Bearer", _POST_GET,
             ("/api/v1/chat/completions", "/api/v1/completions", "/api/v1/responses*", "/api/v1/models*")),
    Provider("mistral", "api.mistral.ai", ("MISTRAL_API_KEY",), "Authorization", "Bearer", _POST_GET,
             ("/v1/chat/completions", "/v1/fim/completions", "/v1/embeddings", "/v1/models*")),
    Provider("groq", "api.groq.com", ("GROQ_API_KEY",), "Authorization", "Bearer", _POST_GET,
             ("/openai/v1/chat/completions", "/openai/v1/responses*", "/openai/v1/models*")),
    Provider("deepseek", "api.deepseek.com", ("DEEPSEEK_API_KEY",), "Authorization", "Bearer", _POST_GET,
             ("/chat/completions", "/v1/chat/completions", "/models", "/v1/models")),
    Provider("xai", "api.x.ai", ("XAI_API_KEY",), "Authorization", "Bearer", _POST_GET,
             ("/v1/chat/completions", "/v1/responses*", "/v1/models*", "/v1/language-models*")),
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
