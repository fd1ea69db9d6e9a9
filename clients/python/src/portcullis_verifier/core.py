"""The framework-free resource server: one request's credentials in, a ``Principal`` or an
``AuthFailure`` (with its status, JSON body and ``WWW-Authenticate`` challenges) out.

The Flask and FastAPI layers only read the request (method, URL, ``Authorization``, ``DPoP``)
and write the answer; every decision is made here.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .delegation import Actor, actor_chain, may_act
from .dpop import (
    DPOP_ALGORITHMS,
    DPoPProofError,
    DPoPVerifier,
    MemoryReplayCache,
    ReplayCache,
    ReplayCacheUnavailable,
    normalize_http_url,
)
from .jwks import JWKSCache, JWKSUnavailable
from .metadata import ProtectedResourceMetadata, is_resource_identifier
from .tokens import (
    KeySource,
    TokenError,
    TokenVerifier,
    confirmation_jkt,
    refuse_bound_bearer,
    token_roles,
    token_scopes,
)

DPoPMode = Literal["allowed", "required", "disabled"]

#: DPoP mode -> the schemes ``Authorization`` may use, in the order 401s advertise them.
DPOP_MODES: dict[str, tuple[str, ...]] = {
    "allowed": ("Bearer", "DPoP"),  # the default: bearer tokens and DPoP-bound tokens
    "required": ("DPoP",),  # DPoP-bound tokens only
    "disabled": ("Bearer",),  # bearer tokens only (DPoP-bound tokens are then refused)
}

_SCHEME_NAMES = {"bearer": "Bearer", "dpop": "DPoP"}

#: Seconds a 503 asks the client to wait (``Retry-After``).
RETRY_AFTER = "10"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a verified token's claims, and how it was presented.

    ``scheme`` is ``"Bearer"`` or ``"DPoP"``; ``dpop_jkt`` the thumbprint of the key a DPoP
    request proved possession of (the token's ``cnf.jkt``), None for a bearer token.

    Delegation (RFC 8693): ``actor`` is the current actor (``act``), ``actor_chain`` every actor,
    current first, and ``may_act`` the ``may_act`` claim. Authorize on ``subject`` and ``actor``
    only: prior actors are informational (RFC 8693 §4.1).
    """

    claims: Mapping[str, Any]
    scheme: str = "Bearer"
    dpop_jkt: str | None = None
    token: str = field(default="", repr=False)

    @property
    def subject(self) -> str:
        return str(self.claims["sub"])

    @property
    def client_id(self) -> str | None:
        value = self.claims.get("client_id")
        return value if isinstance(value, str) else None

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(token_scopes(self.claims))

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(token_roles(self.claims))

    @property
    def actor_chain(self) -> list[Actor]:
        """Every actor of the ``act`` chain: the current one first, then prior ones."""
        return actor_chain(self.claims)

    @property
    def actor(self) -> Actor | None:
        """The current actor (the top-level ``act``), or None when nobody acts for the subject."""
        chain = self.actor_chain
        return chain[0] if chain else None

    @property
    def actor_sub(self) -> str | None:
        """``act.sub``: the party acting on the subject's behalf, or None."""
        actor = self.actor
        return actor.sub if actor is not None else None

    @property
    def actor_subs(self) -> list[str | None]:
        """The ``sub`` of each actor of the chain, current first."""
        return [a.sub for a in self.actor_chain]

    @property
    def delegated(self) -> bool:
        return "act" in self.claims

    @property
    def may_act(self) -> dict[str, Any] | None:
        return may_act(self.claims)


class AuthFailure(Exception):
    """A request that may not proceed: ``ResourceServer.render`` turns it into an answer.

    ``schemes``: the challenges to send (one ``WWW-Authenticate`` header each), or none when
    ``challenge`` is false.
    """

    def __init__(self, status: int, error: str | None, description: str | None = None, *,
                 schemes: Sequence[str] = ("Bearer",), challenge: bool = True,
                 extra: Mapping[str, Any] | None = None, scope: str | None = None) -> None:
        super().__init__(error or "unauthorized")
        self.status = status
        self.error = error
        self.description = description
        self.schemes = tuple(schemes)
        self.challenge = challenge
        self.extra = dict(extra or {})
        self.scope = scope


@dataclass(frozen=True)
class Rendered:
    """An ``AuthFailure`` as HTTP: status, JSON body, and headers (repeatable, in order)."""

    status: int
    body: dict[str, Any]
    headers: list[tuple[str, str]]


def quote_param(value: str) -> str:
    """An RFC 9110 quoted-string limited to the characters RFC 6750 §3 allows."""
    safe = "".join(c if (0x20 <= ord(c) <= 0x7E and c not in '"\\') else "?" for c in value)
    return f'"{safe}"'


def flatten_names(values: Iterable[str]) -> list[str]:
    """Space-separated names, split and deduplicated in order; at least one."""
    out: list[str] = []
    for value in values:
        for item in value.split():
            if item not in out:
                out.append(item)
    if not out:
        raise ValueError("name at least one")
    return out


def check_base_url(base: str, name: str = "external_base_url") -> str:
    """An http(s) URL without query: the public URL of the app's root. Answers it sans ``/``."""
    if normalize_http_url(base) is None or urllib.parse.urlsplit(base).query:
        raise ValueError(f"{name} must be an http(s) URL without a query "
                         "(e.g. https://api.example.com/inference)")
    return base.rstrip("/")


class ResourceServer:
    """Authenticates requests with Portcullis access tokens, bearer or DPoP-bound.

    ``issuer``: exactly the tokens' ``iss``. ``audience``: this service's resource identifier,
    which a token's ``aud`` must contain. The keys come from ``jwks`` (a ``JWKSCache``, or any
    ``jwt.PyJWKClient``), by default a ``JWKSCache`` of ``jwks_url`` (default
    ``{issuer}/.well-known/jwks.json``).

    DPoP (RFC 9449): ``dpop_mode`` ``"allowed"`` (bearer and DPoP-bound tokens), ``"required"``
    or ``"disabled"``; proofs' ``iat`` from ``dpop_max_age`` s ago to ``dpop_max_future`` s ahead;
    ``replay_cache`` shared by every instance of the service (default: an in-process
    ``MemoryReplayCache`` of ``replay_cache_size`` entries). ``external_base_url``: the URL at
    which clients reach the app's root, when a proxy makes it differ from the request's own.

    Protected resource metadata (RFC 9728): ``resource`` (default: ``audience``) is the resource
    identifier. ``resource_metadata`` True serves it and names it in every challenge; None (the
    default) does so when ``resource`` is an http(s) URL; False never.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks: KeySource | None = None,
        jwks_url: str | None = None,
        jwks_min_refresh_interval: float = 10.0,
        jwks_default_max_age: float = 300.0,
        jwks_timeout: float = 5.0,
        leeway: float = 30.0,
        exp_leeway: float = 0.0,
        realm: str | None = "api",
        dpop_mode: str = "allowed",
        dpop_max_age: float = 60.0,
        dpop_max_future: float = 5.0,
        dpop_algorithms: Sequence[str] = DPOP_ALGORITHMS,
        replay_cache: ReplayCache | None = None,
        replay_cache_size: int = 100_000,
        external_base_url: str | None = None,
        resource: str | None = None,
        resource_metadata: bool | None = None,
        scopes_supported: Sequence[str] | None = None,
        resource_name: str | None = None,
        resource_documentation: str | None = None,
        resource_policy_uri: str | None = None,
        resource_tos_uri: str | None = None,
        metadata_extra: Mapping[str, Any] | None = None,
    ) -> None:
        if not issuer:
            raise ValueError("issuer is required (e.g. https://auth.example.com)")
        if not audience:
            raise ValueError("audience is required: this service's resource identifier")
        issuer = issuer.rstrip("/")
        self.issuer = issuer
        self.audience = audience
        key_source: KeySource = jwks if jwks is not None else JWKSCache(
            jwks_url or f"{issuer}/.well-known/jwks.json",
            min_refresh_interval=jwks_min_refresh_interval,
            default_max_age=jwks_default_max_age,
            timeout=jwks_timeout,
        )
        self.verifier = TokenVerifier(issuer=issuer, audience=audience, jwks=key_source,
                                      leeway=leeway, exp_leeway=exp_leeway)
        mode = str(dpop_mode or "allowed").lower()
        if mode not in DPOP_MODES:
            raise ValueError(f"dpop_mode must be one of {', '.join(DPOP_MODES)}")
        self.dpop_mode = mode
        self.schemes = DPOP_MODES[mode]
        self.dpop = DPoPVerifier(
            replay_cache=replay_cache if replay_cache is not None
            else MemoryReplayCache(int(replay_cache_size)),
            max_age=dpop_max_age, max_future=dpop_max_future, algorithms=dpop_algorithms,
        )
        self.realm = realm
        self.external_base_url = check_base_url(external_base_url) if external_base_url else None
        self.resource = resource or audience
        if resource_metadata is None:
            resource_metadata = is_resource_identifier(self.resource)
        self._metadata: ProtectedResourceMetadata | None = None
        self.scopes_supported = list(scopes_supported) if scopes_supported is not None else None
        if resource_metadata:
            # Validates the identifier now (ValueError), not at the first request.
            self._metadata = ProtectedResourceMetadata(
                resource=self.resource,
                authorization_servers=(issuer,),
                scopes_supported=self.scopes_supported,
                dpop_signing_alg_values_supported=None if mode == "disabled"
                else tuple(self.dpop.algorithms),
                dpop_bound_access_tokens_required=None if mode == "disabled"
                else mode == "required",
                resource_name=resource_name,
                resource_documentation=resource_documentation,
                resource_policy_uri=resource_policy_uri,
                resource_tos_uri=resource_tos_uri,
                extra=dict(metadata_extra or {}),
            )

    # -- accessors ----------------------------------------------------------------------------

    @property
    def jwks(self) -> KeySource:
        return self.verifier.jwks

    @property
    def resource_metadata_url(self) -> str | None:
        """What ``resource_metadata`` names in challenges; None when metadata is off."""
        return self._metadata.url if self._metadata is not None else None

    @property
    def resource_metadata_path(self) -> str | None:
        """The path the app serves the metadata document at; None when metadata is off."""
        return self._metadata.path if self._metadata is not None else None

    def metadata(self, discovered_scopes: Iterable[str] = ()) -> ProtectedResourceMetadata | None:
        """The RFC 9728 document; ``scopes_supported`` as configured, else the scopes the
        app's views require (``discovered_scopes``), else left out."""
        if self._metadata is None:
            return None
        if self.scopes_supported is None:
            found = sorted(set(discovered_scopes))
            if found:
                return _replace_scopes(self._metadata, found)
        return self._metadata

    def request_url(self, own_base_url: str, path: str) -> str:
        """The URL the client addressed, without query: what a DPoP proof's ``htu`` names.

        ``own_base_url``: the app's root as the request reached it (scheme, host, script root);
        ``external_base_url`` replaces it when set. ``path``: the path below the app's root.
        """
        base = self.external_base_url or own_base_url.rstrip("/")
        return base + urllib.parse.quote(path, safe="/", errors="surrogateescape")

    # -- decisions ----------------------------------------------------------------------------

    def credentials(self, authorization: str | None) -> tuple[str, str]:
        """(scheme, token) from ``Authorization: Bearer`` (RFC 6750 §2.1) or ``DPoP``
        (RFC 9449 §7.1). Never from a query string or a body."""
        if self.schemes == ("Bearer",):
            required = "a bearer token is required"
        elif self.schemes == ("DPoP",):
            required = "a DPoP-bound access token is required"
        else:
            required = "a bearer or DPoP-bound access token is required"
        if authorization is None:
            # RFC 6750 §3.1: no authentication attempted, so no error code.
            raise AuthFailure(401, None, required, schemes=self.schemes)
        scheme, _, credentials = authorization.strip().partition(" ")
        # Scheme names are case-insensitive (RFC 9110 §11.1).
        scheme = _SCHEME_NAMES.get(scheme.lower(), "")
        if scheme not in self.schemes:
            raise AuthFailure(401, None, required, schemes=self.schemes)
        credentials = credentials.strip()
        if not credentials or " " in credentials or \
                (scheme == "DPoP" and not credentials.isascii()):
            raise AuthFailure(400, "invalid_request", "malformed Authorization header",
                              schemes=(scheme,))
        return scheme, credentials

    def authenticate(self, *, method: str, url: str, authorization: str | None,
                     dpop_proofs: Sequence[str] = ()) -> Principal:
        """Verifies one request's credentials; raises ``AuthFailure``.

        ``Authorization: Bearer``: the token must not be DPoP-bound. ``Authorization: DPoP``:
        the ``DPoP`` proof is checked first, then the token, then that the token is bound to
        the proof's key; only then is the proof's ``jti`` recorded. ``url``: the request URL
        as the client addressed it (see ``request_url``); ``dpop_proofs``: every ``DPoP``
        header value.
        """
        scheme, token = self.credentials(authorization)
        schemes = (scheme,)
        jkt: str | None = None
        try:
            if scheme == "DPoP":
                proof = self.dpop.verify(list(dpop_proofs), method=method, url=url,
                                         access_token=token)
                claims = self.verifier.verify(token)
                self.dpop.bind(proof, claims)
                jkt = confirmation_jkt(claims)
            else:
                claims = self.verifier.verify(token)
                refuse_bound_bearer(claims)
        except DPoPProofError as e:
            raise AuthFailure(401, "invalid_dpop_proof", e.description, schemes=schemes) from None
        except TokenError as e:
            raise AuthFailure(401, "invalid_token", e.description, schemes=schemes) from None
        except JWKSUnavailable:
            raise AuthFailure(503, "temporarily_unavailable",
                              "the issuer's signing keys cannot be fetched",
                              challenge=False) from None
        except ReplayCacheUnavailable:
            raise AuthFailure(503, "temporarily_unavailable",
                              "the DPoP replay cache is unavailable", challenge=False) from None
        return Principal(claims=claims, scheme=scheme, dpop_jkt=jkt, token=token)

    def authorize(self, principal: Principal, *, scopes: Iterable[str] = (),
                  roles: Iterable[str] = ()) -> None:
        """Every scope in the token's ``scope`` (else 403 ``insufficient_scope``, RFC 6750
        §3.1) and every role in its ``roles`` (else 403 ``insufficient_role``, no challenge:
        roles are not an OAuth error code)."""
        wanted_scopes, wanted_roles = list(scopes), list(roles)
        if wanted_scopes and not set(wanted_scopes) <= principal.scopes:
            needed = " ".join(wanted_scopes)
            raise AuthFailure(403, "insufficient_scope", "the token lacks a required scope",
                              scope=needed, extra={"scope": needed}, schemes=(principal.scheme,))
        if wanted_roles and not set(wanted_roles) <= principal.roles:
            raise AuthFailure(403, "insufficient_role", "the token lacks a required role",
                              challenge=False, extra={"required_roles": wanted_roles})

    # -- answers ------------------------------------------------------------------------------

    def challenge(self, scheme: str, failure: AuthFailure) -> str:
        """One ``WWW-Authenticate`` value: RFC 6750 §3 (Bearer), RFC 9449 §7.1 (DPoP, with
        ``algs``), RFC 9728 §5.1 (``resource_metadata``)."""
        params: list[str] = []
        if self.realm:
            params.append(f"realm={quote_param(self.realm)}")
        if failure.error:  # RFC 6750 §3.1: no error attributes when no token was sent
            params.append(f"error={quote_param(failure.error)}")
            if failure.description:
                params.append(f"error_description={quote_param(failure.description)}")
        if failure.scope:
            params.append(f"scope={quote_param(failure.scope)}")
        if scheme == "DPoP":  # RFC 9449 §7.1: the proof algorithms this service accepts
            params.append(f"algs={quote_param(' '.join(self.dpop.algorithms))}")
        metadata_url = self.resource_metadata_url
        if metadata_url:
            params.append(f"resource_metadata={quote_param(metadata_url)}")
        return f"{scheme} " + ", ".join(params) if params else scheme

    def render(self, failure: AuthFailure) -> Rendered:
        body: dict[str, Any] = {"error": failure.error or "unauthorized"}
        if failure.description:
            body["error_description"] = failure.description
        body.update(failure.extra)
        headers: list[tuple[str, str]] = []
        if failure.challenge:
            # One WWW-Authenticate header per scheme (RFC 9110 §11.6.1 allows either form;
            # separate headers are the one clients parse reliably). Bearer comes first.
            headers += [("WWW-Authenticate", self.challenge(s, failure)) for s in failure.schemes]
        if failure.status == 503:
            headers.append(("Retry-After", RETRY_AFTER))
        headers.append(("Cache-Control", "no-store"))
        return Rendered(failure.status, body, headers)


def _replace_scopes(metadata: ProtectedResourceMetadata,
                    scopes: Sequence[str]) -> ProtectedResourceMetadata:
    import dataclasses

    return dataclasses.replace(metadata, scopes_supported=tuple(scopes))
