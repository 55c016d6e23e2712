"""The MACs of the proxy identity exchange (see :mod:`cordon_config.identity`), light enough for fast paths.

``cordon status`` answers in a few milliseconds (:mod:`cordon_proxy.statusfast`), so this module imports no
``hashlib``/``hmac`` (they load OpenSSL): HMAC-SHA256 over the builtin SHA-256, byte for byte RFC 2104's.
"""

from __future__ import annotations

from _operator import _compare_digest as compare_digest

TYPE_CHECKING = False
if TYPE_CHECKING:  # the private modules have no stubs; hashlib's sha256 has their signature
    from hashlib import sha256
else:
    try:  # the builtin SHA-256: no OpenSSL to load (Python 3.12 renamed the module)
        from _sha2 import sha256
    except ImportError:  # pragma: no cover - Python 3.11
        try:
            from _sha256 import sha256
        except ImportError:
            from hashlib import sha256

__all__ = ["client_auth", "compare_digest", "config_digest", "health_target", "server_proof"]

_CLIENT = b"cordon-client\0"
_SERVER = b"cordon-server\0"
_BLOCK = 64
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def hmac_sha256(key: bytes, message: bytes) -> str:
    """HMAC-SHA256(key, message), hex (RFC 2104)."""
    if len(key) > _BLOCK:
        key = sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = sha256(key.translate(_IPAD) + message).digest()
    return str(sha256(key.translate(_OPAD) + inner).hexdigest())


def client_auth(key: bytes, nonce: str) -> str:
    """HMAC-SHA256(key, "cordon-client\\0" + nonce), hex: the client proves it holds the scope's key."""
    return hmac_sha256(key, _CLIENT + nonce.encode("ascii"))


def server_proof(key: bytes, nonce: str) -> str:
    """HMAC-SHA256(key, "cordon-server\\0" + nonce), hex: the proxy proves it holds the scope's key."""
    return hmac_sha256(key, _SERVER + nonce.encode("ascii"))


def health_target(key: bytes, nonce: str) -> str:
    """The request target a client sends: ``/health?nonce=…&auth=…``."""
    return f"/health?nonce={nonce}&auth={client_auth(key, nonce)}"


def config_digest(data: bytes) -> str:
    """``sha256:<hex>`` of a cordon.toml's bytes: what ``/health`` reports and ``status``/``doctor`` compare."""
    return "sha256:" + str(sha256(data).hexdigest())
