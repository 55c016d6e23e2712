"""Does a file hold PEM certificates? A stdlib check for settings that name a CA file (the proxy and cordon-ca
parse the certificates themselves)."""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

__all__ = ["certificate_blocks", "no_certificate_message"]

_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----")


def certificate_blocks(data: bytes) -> list[bytes]:
    """The DER bytes of each well-formed ``CERTIFICATE`` block (base64 that decodes to an ASN.1 SEQUENCE)."""
    found = []
    for match in _BLOCK.finditer(data):
        try:
            der = base64.b64decode(b"".join(match.group(1).split()), validate=True)
        except (binascii.Error, ValueError):
            continue
        if der[:1] == b"\x30":
            found.append(der)
    return found


def no_certificate_message(path: Path, data: bytes) -> str | None:
    """``<path> contains no PEM certificate`` when ``data`` (the file's bytes) has none, else None."""
    return None if certificate_blocks(data) else f"{path} contains no PEM certificate"
