"""Local verification of Portcullis access tokens (RFC 9068 JWTs) for Flask services.

Three layers, usable on their own:

* ``JWKSCache``: the issuer's signing keys, fetched from ``{issuer}/.well-known/jwks.json``.
  Honours ``Cache-Control: max-age`` (revalidating with ``If-None-Match``), refetches once on
  an unknown ``kid`` (single-flight, at most once per ``min_refresh_interval``), and keeps the
  last good key set when a refetch fails.
* ``TokenVerifier``: every check a resource server owes a JWT access token (signature with the
  key named by ``kid``, algorithm allow-list, ``typ``, ``iss``, ``aud``, ``exp``/``nbf``/``iat``).
* ``PortcullisAuth`` and the decorators ``token_required``, ``scope_required(*scopes)`` and
  ``role_required(*roles)``: Flask glue that answers 401/403 the way RFC 6750 §3 describes.

Only PyJWT (with ``cryptography``) and the standard library are needed.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import jwt
from flask import Flask, current_app, g, jsonify, request

log = logging.getLogger("portcullis_auth")

#: The only algorithms accepted, whatever a token or a JWKS says. Never ``none``, never HMAC:
#: with a public key as the "secret", HS256 would let anyone forge tokens.
ALLOWED_ALGORITHMS = frozenset({"ES256", "RS256"})

#: The JWK each allowed algorithm needs (RFC 7518 §3.3, §3.4).
_KEY_SHAPE = {"ES256": ("EC", "P-256"), "RS256": ("RSA", None)}

#: RFC 9068 §4: the header ``typ`` of a JWT access token (media type names are
#: case-insensitive, and the ``application/`` prefix may be present, RFC 7515 §4.1.9).
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})

#: Claims a Portcullis access token always carries and this verifier insists on.
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "sub")

_MAX_JWKS_BYTES = 1 << 20


class JWKSUnavailable(Exception):
    """No key set has ever been loaded: tokens cannot be checked at all (answer 503)."""


class TokenError(Exception):
    """A token that must be refused (answer 401 ``invalid_token``).

    ``description`` is a fixed, ASCII text safe to put in a ``WWW-Authenticate`` header: it
    never echoes anything taken from the token.
    """

    def __init__(self, description: str):
        super().__init__(description)
        self.description = description


# --------------------------------------------------------------------------------------------
# JWKS cache


def parse_max_age(headers: Mapping[str, str]) -> float | None:
    """Freshness lifetime from ``Cache-Control`` (RFC 9111 §5.2.2), less ``Age``; None if absent.

    ``no-store`` and ``no-cache`` mean 0: revalidate every time.
    """
    directives: dict[str, str] = {}
    for part in (headers.get("Cache-Control") or "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            directives[name.strip().lower()] = value.strip().strip('"')
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    if "max-age" not in directives:
        return None
    try:
        max_age = float(int(directives["max-age"]))
    except ValueError:
        return None
    try:
        age = float(int(headers.get("Age") or 0))
    except ValueError:
        age = 0.0
    return max(0.0, max_age - max(0.0, age))


def _jwk_algorithm(jwk: Mapping[str, Any]) -> str | None:
    """The allowed algorithm this JWK is for, or None when it is not usable for one."""
    if jwk.get("use") not in (None, "sig"):
        return None
    key_ops = jwk.get("key_ops")
    if key_ops is not None and "verify" not in key_ops:
        return None
    kty, crv = jwk.get("kty"), jwk.get("crv")
    alg = jwk.get("alg")
    if alg is None:
        # No alg in the JWK: infer it from the key type, never from a token header.
        alg = {"EC": "ES256" if crv == "P-256" else None, "RSA": "RS256"}.get(kty)
    if alg not in ALLOWED_ALGORITHMS:
        return None
    want_kty, want_crv = _KEY_SHAPE[alg]
    if kty != want_kty or (want_crv is not None and crv != want_crv):
        return None
    return alg


def load_keys(document: Any) -> dict[str, jwt.PyJWK]:
    """Parses a JWKS into kid -> PyJWK, keeping only keys usable with an allowed algorithm."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK Set")
    keys: dict[str, jwt.PyJWK] = {}
    ambiguous: set[str] = set()
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        alg = _jwk_algorithm(jwk)
        if alg is None:
            continue
        try:
            key = jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError as e:
            log.warning("JWKS: skipping key %s: %s", jwk["kid"], e)
            continue
        if alg == "RS256" and key.key.key_size < 2048:
            log.warning("JWKS: skipping RSA key %s shorter than 2048 bits", jwk["kid"])
            continue
        kid = jwk["kid"]
        if kid in keys:
            ambiguous.add(kid)  # two keys, one kid: trust neither
        keys[kid] = key
    for kid in ambiguous:
        del keys[kid]
    return keys


@dataclass
class _Snapshot:
    generation: int  # bumped by every completed fetch attempt
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    loaded: bool = False  # a key set was loaded at least once


class JWKSCache:
    """The issuer's public keys, cached as the server's ``Cache-Control`` allows.

    * Fresh (within ``max-age``): served from memory.
    * Stale: one caller revalidates (``If-None-Match`` with the stored ETag; a 304 extends
      freshness by the new ``max-age``) while concurrent callers keep using the last good set.
    * Unknown ``kid``: one refetch, single-flight (callers arriving meanwhile wait for it and use
      its result), and at most one such refetch per ``min_refresh_interval`` seconds, so a flood
      of tokens with made-up kids cannot make this service hammer the issuer.
    * A failed fetch (network, status, bad JSON, no usable key) keeps the last good set and
      is retried after ``min_refresh_interval``.
    """

    def __init__(
        self,
        url: str,
        *,
        min_refresh_interval: float = 10.0,
        default_max_age: float = 300.0,
        max_max_age: float = 86400.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.url = url
        self.min_refresh_interval = float(min_refresh_interval)
        self.default_max_age = float(default_max_age)
        self.max_max_age = float(max_max_age)
        self.timeout = float(timeout)
        self._clock = clock
        self._lock = threading.Lock()  # held for the duration of one fetch: single flight
        self._snapshot = _Snapshot(generation=0)
        self._etag: str | None = None
        self._fresh_until = float("-inf")
        self._last_unknown_kid_fetch: float | None = None
        self.last_error: str | None = None
        self.stats = {
            "fetches": 0,
            "updated": 0,
            "not_modified": 0,
            "failures": 0,
            "unknown_kid_fetches": 0,
            "unknown_kid_coalesced": 0,  # answered by a fetch another caller made
            "unknown_kid_throttled": 0,  # refused a refetch: within the cooldown
        }

    # -- public ---------------------------------------------------------------------------

    def get_key(self, kid: str) -> jwt.PyJWK | None:
        """The key for ``kid``, or None when the issuer does not publish it."""
        self._ensure_fresh()
        snapshot = self._snapshot
        key = snapshot.keys.get(kid)
        if key is not None:
            return key
        return self._refetch_for_unknown_kid(kid, snapshot.generation)

    def kids(self) -> set[str]:
        return set(self._snapshot.keys)

    def refresh(self) -> None:
        """Fetches now (blocking), whatever the cache state. For warm-up at start."""
        with self._lock:
            self._fetch()

    # -- internals --------------------------------------------------------------------------

    def _ensure_fresh(self) -> None:
        if self._clock() < self._fresh_until:
            if not self._snapshot.loaded:
                raise JWKSUnavailable(self.last_error or "JWKS not loaded")
            return
        snapshot = self._snapshot
        if snapshot.loaded:
            # Stale-while-revalidate: if someone is already fetching, use the last good keys.
            if not self._lock.acquire(blocking=False):
                return
        elif not self._lock.acquire(timeout=self.timeout + 5):
            raise JWKSUnavailable("timed out waiting for the JWKS")
        try:
            if self._snapshot.generation == snapshot.generation and self._clock() >= self._fresh_until:
                self._fetch()
        finally:
            self._lock.release()
        if not self._snapshot.loaded:
            raise JWKSUnavailable(self.last_error or "JWKS not loaded")

    def _refetch_for_unknown_kid(self, kid: str, seen_generation: int) -> jwt.PyJWK | None:
        if not self._lock.acquire(timeout=self.timeout + 5):
            return None
        try:
            # A fetch that completed after our lookup is as good as our own: use it.
            if self._snapshot.generation == seen_generation:
                now = self._clock()
                last = self._last_unknown_kid_fetch
                if last is not None and now - last < self.min_refresh_interval:
                    self.stats["unknown_kid_throttled"] += 1
                    return None
                self._last_unknown_kid_fetch = now
                self.stats["unknown_kid_fetches"] += 1
                log.info("JWKS: unknown kid %.64r, refetching", kid)
                self._fetch()
            else:
                self.stats["unknown_kid_coalesced"] += 1
        finally:
            self._lock.release()
        return self._snapshot.keys.get(kid)

    def _http_get(self, url: str, etag: str | None) -> tuple[int, Mapping[str, str], bytes]:
        """One GET; returns (status, headers, body). 304 is a status, not an error."""
        headers = {"Accept": "application/jwk-set+json, application/json"}
        if etag:
            headers["If-None-Match"] = etag
        req = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                return response.status, response.headers, response.read(_MAX_JWKS_BYTES + 1)
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.headers, b""

    def _fetch(self) -> None:
        """Fetches once and updates the cache. Caller holds ``self._lock``."""
        self.stats["fetches"] += 1
        started = self._clock()  # freshness counts from the request (RFC 9111 §4.2.3)
        previous = self._snapshot
        try:
            status, headers, body = self._http_get(self.url, self._etag if previous.loaded else None)
            max_age = parse_max_age(headers)
            lifetime = min(self.max_max_age, self.default_max_age if max_age is None else max_age)
            if status == 304 and previous.loaded:
                self.stats["not_modified"] += 1
                self._etag = headers.get("ETag") or self._etag
                self._snapshot = _Snapshot(previous.generation + 1, previous.keys, True)
            elif status == 200:
                if len(body) > _MAX_JWKS_BYTES:
                    raise ValueError("JWKS larger than 1 MiB")
                keys = load_keys(json.loads(body))
                if not keys:
                    raise ValueError("JWKS has no usable ES256/RS256 signing key")
                self.stats["updated"] += 1
                self._etag = headers.get("ETag")
                self._snapshot = _Snapshot(previous.generation + 1, keys, True)
            else:
                raise ValueError(f"HTTP {status}")
            self._fresh_until = started + lifetime
            self.last_error = None
        except Exception as e:  # noqa: BLE001 - any failure: keep the last good key set
            self.stats["failures"] += 1
            self.last_error = f"{type(e).__name__}: {e}"
            log.warning("JWKS fetch from %s failed (%s); keeping the last good key set",
                        self.url, self.last_error)
            self._snapshot = _Snapshot(previous.generation + 1, previous.keys, previous.loaded)
            # With keys in hand, wait a full interval; with none, try again sooner.
            retry = self.min_refresh_interval if previous.loaded else min(1.0, self.min_refresh_interval)
            self._fresh_until = self._clock() + retry


# --------------------------------------------------------------------------------------------
# Token verification


class TokenVerifier:
    """Checks a Portcullis access token and returns its claims, or raises ``TokenError``."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks: JWKSCache,
        leeway: float = 30.0,
        exp_leeway: float = 0.0,
        clock: Callable[[], float] = time.time,
    ):
        self.issuer = issuer
        self.audience = audience
        self.jwks = jwks
        self.leeway = float(leeway)
        self.exp_leeway = float(exp_leeway)
        self._clock = clock

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
            raise TokenError("the token has critical header parameters this service does not support")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenError("the token has no key id (kid)")
        key = self.jwks.get_key(kid)
        if key is None:
            raise TokenError("the token is signed with an unknown key")
        if key.algorithm_name != alg:
            raise TokenError("the token's algorithm does not match its key")
        try:
            claims = jwt.decode(
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
        return claims


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


# --------------------------------------------------------------------------------------------
# Flask glue


def _quote(value: str) -> str:
    """An RFC 9110 quoted-string limited to the characters RFC 6750 §3 allows."""
    safe = "".join(c if (0x20 <= ord(c) <= 0x7E and c not in '"\\') else "?" for c in value)
    return f'"{safe}"'


class AuthFailure(Exception):
    """An HTTP answer to a request that may not proceed."""

    def __init__(self, status: int, error: str | None, description: str | None = None,
                 *, challenge: bool = True, extra: Mapping[str, Any] | None = None,
                 scope: str | None = None):
        super().__init__(error or "unauthorized")
        self.status, self.error, self.description = status, error, description
        self.challenge, self.extra, self.scope = challenge, dict(extra or {}), scope

    def response(self, realm: str):
        body: dict[str, Any] = {"error": self.error or "unauthorized"}
        if self.description:
            body["error_description"] = self.description
        body.update(self.extra)
        resp = jsonify(body)
        resp.status_code = self.status
        if self.challenge:
            params = [f"realm={_quote(realm)}"]
            if self.error:  # RFC 6750 §3.1: no error attributes when no token was sent
                params.append(f"error={_quote(self.error)}")
                if self.description:
                    params.append(f"error_description={_quote(self.description)}")
            if self.scope:
                params.append(f"scope={_quote(self.scope)}")
            resp.headers["WWW-Authenticate"] = "Bearer " + ", ".join(params)
        if self.status == 503:
            resp.headers["Retry-After"] = "10"
        resp.headers["Cache-Control"] = "no-store"
        return resp


class PortcullisAuth:
    """Flask extension: ``PortcullisAuth(app)`` reads its settings from ``app.config``.

    ``PORTCULLIS_ISSUER`` (required), ``INFERENCE_AUDIENCE``, ``JWKS_URL`` (default
    ``{issuer}/.well-known/jwks.json``), ``JWKS_MIN_REFRESH_INTERVAL`` (s, default 10),
    ``JWKS_DEFAULT_MAX_AGE`` (s, used when the server sends no max-age; default 300),
    ``JWT_LEEWAY`` (s, for nbf/iat; default 30), ``JWT_EXP_LEEWAY`` (s; default 0),
    ``AUTH_REALM`` (default ``inference``).
    """

    def __init__(self, app: Flask | None = None):
        self.verifier: TokenVerifier | None = None
        self.realm = "inference"
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        c = app.config
        issuer = c.get("PORTCULLIS_ISSUER")
        if not issuer:
            raise RuntimeError("PORTCULLIS_ISSUER must be set (e.g. http://127.0.0.1:8080)")
        issuer = issuer.rstrip("/")
        audience = c.get("INFERENCE_AUDIENCE") or "https://inference.example.test"
        cache = JWKSCache(
            c.get("JWKS_URL") or f"{issuer}/.well-known/jwks.json",
            min_refresh_interval=float(c.get("JWKS_MIN_REFRESH_INTERVAL", 10)),
            default_max_age=float(c.get("JWKS_DEFAULT_MAX_AGE", 300)),
        )
        self.verifier = TokenVerifier(
            issuer=issuer,
            audience=audience,
            jwks=cache,
            leeway=float(c.get("JWT_LEEWAY", 30)),
            exp_leeway=float(c.get("JWT_EXP_LEEWAY", 0)),
        )
        self.realm = c.get("AUTH_REALM", "inference")
        app.extensions["portcullis_auth"] = self
        # current_claims() may also be called from an undecorated view: same answers.
        app.register_error_handler(AuthFailure, lambda failure: failure.response(self.realm))

    @property
    def jwks(self) -> JWKSCache:
        assert self.verifier is not None
        return self.verifier.jwks


def _extension() -> PortcullisAuth:
    return current_app.extensions["portcullis_auth"]


def _bearer_token() -> str:
    """The token from ``Authorization: Bearer`` (RFC 6750 §2.1)."""
    header = request.headers.get("Authorization")
    if header is None:
        # RFC 6750 §3.1: no authentication attempted, so no error code.
        raise AuthFailure(401, None, "a bearer token is required")
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthFailure(401, None, "a bearer token is required")
    credentials = credentials.strip()
    if not credentials or " " in credentials:
        raise AuthFailure(400, "invalid_request", "malformed Authorization header")
    return credentials


def current_claims() -> dict[str, Any]:
    """The verified claims of this request's token (verifying it on first use)."""
    claims = g.get("portcullis_claims")
    if claims is not None:
        return claims
    ext = _extension()
    token = _bearer_token()
    try:
        claims = ext.verifier.verify(token)
    except TokenError as e:
        raise AuthFailure(401, "invalid_token", e.description) from None
    except JWKSUnavailable:
        raise AuthFailure(503, "temporarily_unavailable",
                          "the issuer's signing keys cannot be fetched", challenge=False) from None
    g.portcullis_claims = claims
    return claims


def _guard(check: Callable[[dict[str, Any]], None]):
    """Turns a check on verified claims into a view decorator."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            try:
                check(current_claims())
            except AuthFailure as failure:
                return failure.response(_extension().realm)
            return view(*args, **kwargs)

        return wrapper

    return decorator


def token_required(view=None):
    """A valid access token for this service is required. ``@token_required`` or ``()``."""
    decorator = _guard(lambda claims: None)
    return decorator(view) if view is not None else decorator


def scope_required(*scopes: str):
    """Every listed scope must be in the token's ``scope`` (403 ``insufficient_scope``)."""
    wanted = _flatten(scopes)

    def check(claims):
        missing = [s for s in wanted if s not in token_scopes(claims)]
        if missing:
            raise AuthFailure(403, "insufficient_scope",
                              "the token lacks a required scope",
                              scope=" ".join(wanted), extra={"scope": " ".join(wanted)})

    return _guard(check)


def role_required(*roles: str):
    """Every listed role must be in the token's ``roles`` (403 ``insufficient_role``).

    Roles are not an OAuth error code, so the 403 carries no Bearer challenge.
    """
    wanted = _flatten(roles)

    def check(claims):
        missing = [r for r in wanted if r not in token_roles(claims)]
        if missing:
            raise AuthFailure(403, "insufficient_role", "the token lacks a required role",
                              challenge=False, extra={"required_roles": wanted})

    return _guard(check)


def _flatten(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        for item in value.split():
            if item not in out:
                out.append(item)
    if not out:
        raise ValueError("name at least one")
    return out
