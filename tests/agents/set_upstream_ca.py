"""Set ``[tls] upstream_ca_file`` in a cordon.toml (the fake provider's CA), keeping the rest of the file."""

import sys

import tomlkit

path, ca_file = sys.argv[1], sys.argv[2]
with open(path, encoding="utf-8") as handle:
    doc = tomlkit.parse(handle.read())
doc["tls"]["upstream_ca_file"] = ca_file  # type: ignore[index]
with open(path, "w", encoding="utf-8") as handle:
    handle.write(tomlkit.dumps(doc))
