"""Test support for cordon (never shipped in a product wheel): see the package README for what each module holds."""

__version__ = "0.1.0"
