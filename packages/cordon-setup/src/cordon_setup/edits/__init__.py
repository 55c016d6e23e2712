"""Format-preserving edits of the files agents read: dotenv, TOML (tomlkit) and JSON.

Each editor works on text and returns new text plus what it needs to undo the edit exactly.
"""
