"""The handlers of `cordon route|secret|token` (parsers and entry points are in ``cordon_config.cli``)."""
