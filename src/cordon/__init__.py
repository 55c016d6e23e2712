"""The `cordon` umbrella command.

It discovers the cordon tools from entry-point metadata (group ``cordon.commands``) and never imports a
tool until that tool's command is chosen. Rule: this package imports nothing but the standard library.
"""

__version__ = "0.1.0"
