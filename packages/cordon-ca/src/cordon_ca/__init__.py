"""cordon-ca: the local CA, leaf certificates and server contexts, the combined CA bundle, OS trust."""

from cordon_ca.authority import (
    CertificateAuthority,
    IssuedLeaf,
    ensure_ca_matches,
    load_or_create_ca,
    regenerate_ca,
)
from cordon_ca.bundle import SYSTEM_BUNDLE_PATHS, find_system_bundle, write_combined_bundle
from cordon_ca.contexts import LeafContextCache, server_context
from cordon_ca.errors import (
    BundleError,
    CAError,
    CAInvalid,
    CAKeyInsecure,
    CANotFound,
    HostNotAllowed,
    TrustError,
)
from cordon_ca.scope_ca import ca_matches, ensure_scope_ca, permitted_for

__version__ = "0.1.0"

__all__ = [
    "SYSTEM_BUNDLE_PATHS",
    "BundleError",
    "CAError",
    "CAInvalid",
    "CAKeyInsecure",
    "CANotFound",
    "CertificateAuthority",
    "HostNotAllowed",
    "IssuedLeaf",
    "LeafContextCache",
    "TrustError",
    "__version__",
    "ca_matches",
    "ensure_ca_matches",
    "ensure_scope_ca",
    "find_system_bundle",
    "load_or_create_ca",
    "permitted_for",
    "regenerate_ca",
    "server_context",
    "write_combined_bundle",
]
