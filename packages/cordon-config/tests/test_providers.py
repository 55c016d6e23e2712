"""The provider table: one entry per well-known key variable, lookups by name, host and variable."""

from cordon_config.providers import PROVIDERS, by_host, by_name, key_variables, provider_for_variable


def test_every_variable_and_host_belongs_to_one_provider() -> None:
    variables = [v for p in PROVIDERS for v in p.key_vars]
    assert len(variables) == len(set(variables))
    assert len({p.host for p in PROVIDERS}) == len(PROVIDERS)


def test_lookups() -> None:
    assert by_name("openai").host == "api.openai.com"  # type: ignore[union-attr]
    assert by_host("api.anthropic.com").key_vars == ("ANTHROPIC_API_KEY",)  # type: ignore[union-attr]
    assert provider_for_variable("GOOGLE_API_KEY").name == "gemini"  # type: ignore[union-attr]
    assert provider_for_variable("PATH") is None
    assert by_name("nope") is None


def test_key_variables_only_for_routed_hosts() -> None:
    table = key_variables(["generativelanguage.googleapis.com", "example.com"])
    assert sorted(table) == ["GEMINI_API_KEY", "GOOGLE_API_KEY"]
    assert key_variables([]) == {}


def test_route_flags() -> None:
    assert by_name("openai").route_flags().endswith("--header-name Authorization --scheme Bearer")  # type: ignore[union-attr]
    assert "--scheme" not in by_name("anthropic").route_flags()  # type: ignore[union-attr]
