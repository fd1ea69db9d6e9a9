"""Verify Portcullis access tokens in Python services.

The core (this module) needs PyJWT and cryptography only:

* ``ResourceServer``: one request's credentials in, a ``Principal`` or an ``AuthFailure`` out
  (bearer and DPoP-bound tokens, scopes, roles, challenges with RFC 9728 ``resource_metadata``).
* ``TokenVerifier``, ``JWKSCache``: the RFC 9068 checks, and the issuer's keys (a
  ``jwt.PyJWKClient`` with HTTP caching and rotation guarantees).
* ``DPoPVerifier``, ``MemoryReplayCache``: RFC 9449 proofs.
* ``ProtectedResourceMetadata``: the RFC 9728 document.
* ``Actor``, ``actor_chain``: RFC 8693 delegation (``act``, ``may_act``).

Framework layers: ``portcullis_verifier.flask`` (``[flask]`` extra) and
``portcullis_verifier.fastapi`` (``[fastapi]`` extra).
"""

from .core import (
    DPOP_MODES,
    AuthFailure,
    DPoPMode,
    Principal,
    Rendered,
    ResourceServer,
)
from .delegation import Actor, actor_chain, may_act
from .dpop import (
    DPOP_ALGORITHMS,
    DPOP_PROOF_TYPES,
    PRIVATE_JWK_MEMBERS,
    DPoPProof,
    DPoPProofError,
    DPoPVerifier,
    MemoryReplayCache,
    ReplayCache,
    ReplayCacheUnavailable,
    access_token_hash,
    b64url,
    jwk_thumbprint,
    normalize_http_url,
)
from .jwks import (
    ALLOWED_ALGORITHMS,
    JWKSCache,
    JWKSUnavailable,
    jwk_algorithm,
    key_fits_algorithm,
    load_keys,
    parse_max_age,
)
from .metadata import (
    WELL_KNOWN_PATH,
    ProtectedResourceMetadata,
    check_resource_identifier,
    metadata_path,
    metadata_url,
)
from .tokens import (
    ACCESS_TOKEN_TYPES,
    REQUIRED_CLAIMS,
    KeySource,
    TokenError,
    TokenVerifier,
    confirmation_jkt,
    refuse_bound_bearer,
    token_roles,
    token_scopes,
)

__version__ = "0.1.0"

__all__ = [
    "ACCESS_TOKEN_TYPES",
    "ALLOWED_ALGORITHMS",
    "DPOP_ALGORITHMS",
    "DPOP_MODES",
    "DPOP_PROOF_TYPES",
    "PRIVATE_JWK_MEMBERS",
    "REQUIRED_CLAIMS",
    "WELL_KNOWN_PATH",
    "Actor",
    "AuthFailure",
    "DPoPMode",
    "DPoPProof",
    "DPoPProofError",
    "DPoPVerifier",
    "JWKSCache",
    "JWKSUnavailable",
    "KeySource",
    "MemoryReplayCache",
    "Principal",
    "ProtectedResourceMetadata",
    "Rendered",
    "ReplayCache",
    "ReplayCacheUnavailable",
    "ResourceServer",
    "TokenError",
    "TokenVerifier",
    "access_token_hash",
    "actor_chain",
    "b64url",
    "check_resource_identifier",
    "confirmation_jkt",
    "jwk_algorithm",
    "jwk_thumbprint",
    "key_fits_algorithm",
    "load_keys",
    "may_act",
    "metadata_path",
    "metadata_url",
    "normalize_http_url",
    "parse_max_age",
    "refuse_bound_bearer",
    "token_roles",
    "token_scopes",
]
