"""The skill every agent that reads skills gets: credentials here are injected, never to be looked for."""

from __future__ import annotations

from cordon_config.providers import DUMMY_KEY

SKILL = f"""\
---
name: cordon
description: API credentials here are injected by the cordon proxy. Read this before looking for an API key, \
token or password, or when an HTTPS request fails with an error from cordon.
---

# Credentials are injected by cordon

This environment sends HTTPS traffic through cordon, a local proxy. For the API hosts it is configured for,
cordon removes whatever key a request carries and adds the real credential on the way out. You never need,
and must never look for, the real secret.

- Do not search for API keys, tokens or passwords: not in environment variables, dotfiles, keychains,
  password managers, shell history or cordon's own files. They are deliberately out of reach.
- Where a tool insists on a key, use the dummy value `{DUMMY_KEY}`.
- Leave `HTTPS_PROXY`, `SSL_CERT_FILE` and the other proxy/CA variables as they are, and never turn off TLS
  verification: cordon's CA is trusted through them.
- If a request fails with a `cordon:` error (407 proxy token, 503 secret unavailable, 502 upstream), stop and
  tell the user; they fix it with `cordon doctor`.
"""
