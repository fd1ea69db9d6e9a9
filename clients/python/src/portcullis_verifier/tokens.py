"""Every check a resource server owes a Portcullis access token (RFC 9068 JWT)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import jwt

from .jwks import ALLOWED_ALGORITHMS, JWKSUnavailable, key_fits_algorithm

#: RFC 9068 §4: the header ``typ`` of a JWT access token (media type names are
#: case-insensitive, and the ``application/`` prefix may be present, RFC 7515 §4.1.9).
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})

#: Claims a Portcullis access token always carries and this verifier insists on.
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "sub")

#: Nesting depth of ``act`` (RFC 8693 §4.1) beyond which a token is refused.
MAX_ACTOR_DEPTH = 16


class TokenError(Exception):
    """A token that must be refused (answer 401 ``invalid_token``).

    ``description`` is a fixed, ASCII text safe to put in a ``WWW-Authenticate`` header: it
    never echoes anything taken from the token.
    """

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class KeySource(Protocol):
    """Where the verifier finds the issuer's keys: ``JWKSCache``, or any ``jwt.PyJWKClient``.

    ``get_signing_key`` raises ``jwt.PyJWKClientError`` for an unknown kid, and
    ``jwt.PyJWKClientConnectionError`` (or ``jwt.PyJWKSetError``) when the issuer's keys cannot
    be had at all.
    """

    def get_signing_key(self, kid: str) -> jwt.PyJWK: ...


class TokenVerifier:
    """Checks a Portcullis access token and returns its claims, or raises ``TokenError``.

    Raises ``JWKSUnavailable`` when the key source cannot answer (answer 503, not 401).
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks: KeySource,
        leeway: float = 30.0,
        exp_leeway: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("issuer and audience are required")
        self.issuer = issuer
        self.audience = audience
        self.jwks = jwks
        self.leeway = float(leeway)
        self.exp_leeway = float(exp_leeway)
        self._clock = clock

    def _key(self, kid: str) -> jwt.PyJWK:
        try:
            return self.jwks.get_signing_key(kid)
        except JWKSUnavailable:
            raise
        except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError) as e:
            raise JWKSUnavailable(str(e)) from None
        except jwt.PyJWKClientError:
            raise TokenError("the token is signed with an unknown key") from None

    def verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("the token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise TokenError("the token's signing algorithm is not accepted")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
            raise TokenError("the token is not an access token (typ must be at+jwt)")
        if "crit" in header:
            raise TokenError("the token has critical header parameters this service does not "
                             "support")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenError("the token has no key id (kid)")
        key = self._key(kid)
        if not key_fits_algorithm(key, alg):
            raise TokenError("the token's algorithm does not match its key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,  # nbf and iat: clock skew between issuer and us
                options={"require": list(REQUIRED_CLAIMS), "verify_exp": False},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise TokenError("the token is not meant for this service (aud)") from None
        except jwt.InvalidIssuerError:
            raise TokenError("the token was not issued by the expected issuer") from None
        except jwt.MissingRequiredClaimError as e:
            claim = e.claim if e.claim in REQUIRED_CLAIMS else "a required"
            raise TokenError(f"the token lacks the {claim} claim") from None
        except jwt.InvalidSignatureError:
            raise TokenError("the token signature is invalid") from None
        except jwt.PyJWTError:
            raise TokenError("the token is invalid") from None
        # exp is checked here, not by PyJWT, so that its leeway can differ from nbf/iat's.
        exp = claims["exp"]
        if isinstance(exp, bool) or not isinstance(exp, (int, float)):
            raise TokenError("the token's exp claim is not a number")
        if self._clock() >= exp + self.exp_leeway:
            raise TokenError("the token has expired")
        check_delegation_claims(claims)
        return claims


def check_delegation_claims(claims: Mapping[str, Any]) -> None:
    """``act`` (and each nested ``act``) and ``may_act``, when present, are JSON objects.

    RFC 8693 §4.1, §4.4. A malformed ``act`` is refused rather than ignored: a view that reads
    no actor would treat a delegated call as a direct one.
    """
    act: Any = claims.get("act")
    depth = 0
    while act is not None:
        depth += 1
        if not isinstance(act, dict) or depth > MAX_ACTOR_DEPTH:
            raise TokenError("the token's act claim is malformed")
        sub = act.get("sub")
        if sub is not None and not isinstance(sub, str):
            raise TokenError("the token's act claim is malformed")
        act = act.get("act")
    may_act = claims.get("may_act")
    if may_act is not None and not isinstance(may_act, dict):
        raise TokenError("the token's may_act claim is malformed")


def token_scopes(claims: Mapping[str, Any]) -> set[str]:
    """RFC 9068 §2.2.3: ``scope`` is one space-separated string."""
    scope = claims.get("scope")
    return set(scope.split()) if isinstance(scope, str) else set()


def token_roles(claims: Mapping[str, Any]) -> set[str]:
    """``roles`` is a JSON array of strings (RFC 9068 §2.2.3.1); anything else means none."""
    roles = claims.get("roles")
    if not isinstance(roles, list):
        return set()
    return {r for r in roles if isinstance(r, str)}


def confirmation_jkt(claims: Mapping[str, Any]) -> str | None:
    """The DPoP key binding of a token: ``cnf.jkt`` (RFC 9449 §6.1), or None when unbound."""
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    return jkt if isinstance(jkt, str) and jkt else None


def refuse_bound_bearer(claims: Mapping[str, Any]) -> None:
    """A token presented with ``Authorization: Bearer`` must not be sender-constrained.

    RFC 9449 §7.2: a DPoP-bound token used as a bearer token is a downgrade. Any other ``cnf``
    (an mTLS binding, say) is a binding this service cannot check either.
    """
    if confirmation_jkt(claims) is not None:
        raise TokenError("DPoP-bound token presented as a bearer token")
    if "cnf" in claims:
        raise TokenError("the token is bound to a key (cnf) and cannot be used as a bearer token")
