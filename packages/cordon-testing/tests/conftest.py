"""cordon-testing test fixtures: a clean environment, a throwaway HOME and an in-memory keyring for every test."""

from cordon_testing.fixtures import fake_keyring, isolated_home

__all__ = ["fake_keyring", "isolated_home"]  # autouse fixtures, found by pytest in this conftest
