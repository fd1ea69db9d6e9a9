"""OAuth 2.0 Protected Resource Metadata (RFC 9728).

A client that gets a 401 from this service reads ``resource_metadata`` in the
``WWW-Authenticate`` challenge (RFC 9728 §5.1), fetches that document, and finds there the
authorization server to ask for a token (``authorization_servers``), the scopes, and whether
DPoP is required. MCP clients discover their authorization server this way.

The document lives at a URL derived from the resource identifier (§3.1): the well-known path
``/.well-known/oauth-protected-resource`` goes between the host and the identifier's path::

    https://api.example.com             -> https://api.example.com/.well-known/oauth-protected-resource
    https://api.example.com/inference   -> https://api.example.com/.well-known/oauth-protected-resource/inference

Its ``resource`` member must be exactly the identifier the URL was derived from (§3.3). For a
Portcullis-protected service that identifier is the audience: clients ask Portcullis for a
token with ``resource=<it>`` (RFC 8707), and the token's ``aud`` is then that value.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: RFC 9728 §3: the well-known URI suffix registered for protected resource metadata.
WELL_KNOWN_PATH = "/.well-known/oauth-protected-resource"

#: The methods this package accepts a token by (RFC 9728 §2, ``bearer_methods_supported``):
#: the ``Authorization`` header only, never the body or the query (RFC 6750 §2.2, §2.3).
BEARER_METHODS = ("header",)


def check_resource_identifier(resource: str) -> None:
    """Raises ``ValueError`` unless ``resource`` can be an RFC 9728 resource identifier.

    RFC 9728 §1.2: a URL with the https scheme and no fragment (a query is discouraged).
    ``http`` is accepted too, for services on loopback during development and tests.
    """
    try:
        parts = urllib.parse.urlsplit(resource)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"not a URL: {resource!r}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"a resource identifier must be an https URL: {resource!r}")
    if "#" in resource:
        raise ValueError(f"a resource identifier has no fragment: {resource!r}")
    if "@" in parts.netloc:
        raise ValueError(f"a resource identifier has no userinfo: {resource!r}")


def is_resource_identifier(resource: str) -> bool:
    try:
        check_resource_identifier(resource)
    except ValueError:
        return False
    return True


def metadata_url(resource: str, well_known_path: str = WELL_KNOWN_PATH) -> str:
    """RFC 9728 §3.1: the metadata URL of a resource identifier.

    The well-known path is inserted between the host and the path and/or query; a terminating
    ``/`` of the path is removed first.
    """
    check_resource_identifier(resource)
    parts = urllib.parse.urlsplit(resource)
    path = parts.path
    if path.endswith("/"):
        path = path[:-1]
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, well_known_path + path,
                                    parts.query, ""))


def metadata_path(resource: str, well_known_path: str = WELL_KNOWN_PATH) -> str:
    """The path (without query) at which the host serves ``metadata_url(resource)``."""
    return urllib.parse.urlsplit(metadata_url(resource, well_known_path)).path


@dataclass(frozen=True)
class ProtectedResourceMetadata:
    """The RFC 9728 §2 document of one protected resource.

    ``to_dict()`` is what the well-known URL answers: members that are None (or empty lists)
    are left out. ``extra`` adds members (signed metadata, an extension).
    """

    resource: str
    authorization_servers: Sequence[str] = ()
    scopes_supported: Sequence[str] | None = None
    bearer_methods_supported: Sequence[str] | None = BEARER_METHODS
    dpop_signing_alg_values_supported: Sequence[str] | None = None
    dpop_bound_access_tokens_required: bool | None = None
    resource_name: str | None = None
    resource_documentation: str | None = None
    resource_policy_uri: str | None = None
    resource_tos_uri: str | None = None
    jwks_uri: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_resource_identifier(self.resource)

    @property
    def url(self) -> str:
        """Where this document is served, and what ``resource_metadata`` names (§3.1, §5.1)."""
        return metadata_url(self.resource)

    @property
    def path(self) -> str:
        return metadata_path(self.resource)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"resource": self.resource}
        if self.authorization_servers:
            doc["authorization_servers"] = list(self.authorization_servers)
        if self.jwks_uri:
            doc["jwks_uri"] = self.jwks_uri
        if self.scopes_supported:
            doc["scopes_supported"] = list(self.scopes_supported)
        if self.bearer_methods_supported is not None:
            doc["bearer_methods_supported"] = list(self.bearer_methods_supported)
        for name in ("resource_name", "resource_documentation", "resource_policy_uri",
                     "resource_tos_uri"):
            value = getattr(self, name)
            if value:
                doc[name] = value
        if self.dpop_signing_alg_values_supported:
            doc["dpop_signing_alg_values_supported"] = list(self.dpop_signing_alg_values_supported)
        if self.dpop_bound_access_tokens_required is not None:
            doc["dpop_bound_access_tokens_required"] = self.dpop_bound_access_tokens_required
        for name, value in self.extra.items():
            doc.setdefault(name, value)
        return doc


#: Headers of the metadata response: public, cacheable, readable by browser-based clients.
METADATA_HEADERS = (
    ("Cache-Control", "public, max-age=300"),
    ("Access-Control-Allow-Origin", "*"),
)
