"""Local verification of Portcullis access tokens (RFC 9068 JWTs) for Flask services.

Four layers, usable on their own:

* ``JWKSCache``: the issuer's signing keys, fetched from ``{issuer}/.well-known/jwks.json``.
  Honours ``Cache-Control: max-age`` (revalidating with ``If-None-Match``), refetches once on
  an unknown ``kid`` (single-flight, at most once per ``min_refresh_interval``), and keeps the
  last good key set when a refetch fails.
* ``TokenVerifier``: every check a resource server owes a JWT access token (signature with the
  key named by ``kid``, algorithm allow-list, ``typ``, ``iss``, ``aud``, ``exp``/``nbf``/``iat``).
* ``DPoPVerifier``: the proof-of-possession checks for DPoP-bound tokens (RFC 9449 §4.3, §7),
  with a pluggable ``ReplayCache`` (``MemoryReplayCache`` by default) for the proofs' ``jti``.
* ``PortcullisAuth`` and the decorators ``token_required``, ``scope_required(*scopes)`` and
  ``role_required(*roles)``: Flask glue that answers 401/403 the way RFC 6750 §3 and RFC 9449
  §7.1 describe. It accepts ``Authorization: Bearer`` and ``Authorization: DPoP`` (``DPOP_MODE``).

Only PyJWT (with ``cryptography``) and the standard library are needed.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

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


# --------------------------------------------------------------------------------------------
# DPoP (RFC 9449): proofs of possession for sender-constrained tokens

#: Proof algorithms, in the order the ``algs`` challenge parameter lists them. Asymmetric only
#: (RFC 9449 §11.6): never ``none``, never HMAC.
DPOP_ALGORITHMS = ("ES256", "RS256", "PS256", "EdDSA")

#: The JWK each proof algorithm needs: (kty, allowed crv values or None).
_DPOP_KEY_SHAPE = {
    "ES256": ("EC", {"P-256"}),
    "RS256": ("RSA", None),
    "PS256": ("RSA", None),
    "EdDSA": ("OKP", {"Ed25519", "Ed448"}),
}

#: RFC 9449 §4.2: the header ``typ`` of a proof (compared like ``at+jwt``, RFC 7515 §4.1.9).
DPOP_PROOF_TYPES = frozenset({"dpop+jwt", "application/dpop+jwt"})

#: JWK members only private or symmetric keys have (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037).
PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")

#: RFC 7638 §3.2: the required members a thumbprint hashes, per key type.
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"),
                       "OKP": ("crv", "kty", "x")}

_MAX_PROOF_CHARS = 8192  # an RSA-4096 proof is about 2 KiB
_MAX_JTI_CHARS = 256  # RFC 9449 §11.1: refuse needlessly large jti values
_RSA_PROOF_BITS = (2048, 8192)
_DEFAULT_PORTS = {"http": 80, "https": 443}


class DPoPProofError(Exception):
    """A DPoP proof that must be refused (answer 401 ``invalid_dpop_proof``).

    Like ``TokenError``, ``description`` is fixed ASCII text, never taken from the proof.
    """

    def __init__(self, description: str):
        super().__init__(description)
        self.description = description


class ReplayCacheUnavailable(Exception):
    """The replay cache cannot record a proof (full, or its backend is down): answer 503."""


class ReplayCache(Protocol):
    """Where the ``jti`` of accepted proofs are remembered (RFC 9449 §11.1).

    One method. Several instances of a service must share one cache (Redis ``SET key 1 NX EX
    ttl``, a database table with a unique key, …): with a cache per process, a proof captured
    on its way to one instance can be replayed once at each of the others.
    """

    def add(self, jkt: str, jti: str, ttl: float) -> bool:
        """Records ``(jkt, jti)`` for ``ttl`` seconds, atomically.

        True when it was not recorded yet; False when it was, and has not expired: a replay.
        Raise ``ReplayCacheUnavailable`` when the cache cannot answer (never answer True then).
        """
        ...


class MemoryReplayCache:
    """The in-process ``ReplayCache``: bounded, expiring, thread-safe. One process only.

    Entries are ``(jkt, SHA-256(jti))`` (fixed size, whatever the jti). When ``max_entries``
    unexpired entries are held, ``add`` raises ``ReplayCacheUnavailable`` rather than forget
    one: forgetting would let that proof be replayed. Size it above the peak number of DPoP
    requests per replay window (``DPoPVerifier.replay_window``, 66 s by default).
    """

    def __init__(self, max_entries: int = 100_000, *, clock: Callable[[], float] = time.monotonic):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = int(max_entries)
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, bytes], float] = OrderedDict()  # -> expires at

    def add(self, jkt: str, jti: str, ttl: float) -> bool:
        key = (jkt, hashlib.sha256(jti.encode("utf-8", "surrogatepass")).digest())
        now = self._clock()
        with self._lock:
            self._drop_expired(now)
            expires = self._entries.get(key)
            if expires is not None and expires > now:
                return False
            if len(self._entries) >= self.max_entries:
                # Entries with shorter ttls may hide behind a longer one: sweep them all once.
                self._entries = OrderedDict((k, e) for k, e in self._entries.items() if e > now)
                if len(self._entries) >= self.max_entries:
                    raise ReplayCacheUnavailable("the DPoP replay cache is full")
            self._entries[key] = now + float(ttl)
            self._entries.move_to_end(key)
            return True

    def __len__(self) -> int:
        with self._lock:
            self._drop_expired(self._clock())
            return len(self._entries)

    def _drop_expired(self, now: float) -> None:
        # Insertion order is expiry order when every entry has the same ttl (one verifier).
        entries = self._entries
        while entries:
            key, expires = next(iter(entries.items()))
            if expires > now:
                break
            del entries[key]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK SHA-256 thumbprint, base64url: what ``cnf.jkt`` holds (RFC 9449 §6).

    Only the required members of the key type, in lexicographic order, without whitespace.
    Raises ``ValueError`` for another key type or a missing member.
    """
    members = _THUMBPRINT_MEMBERS.get(jwk.get("kty"))  # type: ignore[arg-type]
    if members is None:
        raise ValueError("unsupported kty")
    values = {}
    for name in members:
        value = jwk.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"the JWK lacks {name}")
        values[name] = value
    canonical = json.dumps(values, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def access_token_hash(access_token: str) -> str:
    """RFC 9449 §4.2 ``ath``: base64url(SHA-256(the token's ASCII bytes))."""
    return b64url(hashlib.sha256(access_token.encode("ascii")).digest())


def normalize_http_url(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path) for comparing ``htu`` (RFC 9449 §4.3), or None if unusable.

    Query and fragment are dropped. Scheme and host are compared case-insensitively, a default
    port equals no port, and an empty path is ``/`` (RFC 3986 §6.2.2, §6.2.3). The path is
    compared percent-decoded: the WSGI server decodes it before routing, so two spellings of
    one path reach the same view. Userinfo is never part of a request URL: None.
    """
    if not isinstance(url, str):
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    path = urllib.parse.unquote(parts.path, errors="surrogateescape") or "/"
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme], path


@dataclass(frozen=True)
class DPoPProof:
    """A proof that passed ``DPoPVerifier.verify``."""

    jkt: str  # RFC 7638 thumbprint of the proof's public key
    jti: str
    iat: float
    header: dict[str, Any]
    claims: dict[str, Any]


class DPoPVerifier:
    """Checks DPoP proofs (RFC 9449 §4.3) and their binding to an access token (§7.1).

    ``verify`` checks the proof alone (and ``ath`` when given the access token); ``bind`` then
    checks that the verified token is bound to the proof's key and records the ``jti``. A
    proof's ``iat`` may lie from ``max_age`` seconds before now to ``max_future`` seconds after,
    so a ``jti`` is remembered for ``replay_window`` (= ``max_age + max_future + 1``) seconds.
    """

    def __init__(
        self,
        *,
        replay_cache: ReplayCache | None = None,
        max_age: float = 60.0,
        max_future: float = 5.0,
        algorithms: Sequence[str] = DPOP_ALGORITHMS,
        clock: Callable[[], float] = time.time,
    ):
        algorithms = tuple(algorithms)
        if not algorithms or any(alg not in _DPOP_KEY_SHAPE for alg in algorithms):
            raise ValueError(f"DPoP algorithms must be among {' '.join(DPOP_ALGORITHMS)}")
        if max_age <= 0 or max_future < 0:
            raise ValueError("max_age must be positive and max_future not negative")
        self.algorithms = algorithms
        self.replay_cache: ReplayCache = replay_cache if replay_cache is not None \
            else MemoryReplayCache()
        self.max_age = float(max_age)
        self.max_future = float(max_future)
        self._clock = clock

    @property
    def replay_window(self) -> float:
        """How long a ``jti`` is kept: as long as its proof can be accepted, plus 1 s of margin
        (a proof with ``iat`` = now + max_future is accepted until then + max_age)."""
        return self.max_age + self.max_future + 1.0

    def verify(self, proofs: str | Sequence[str], *, method: str, url: str,
               access_token: str | None = None) -> DPoPProof:
        """The proof in the request's ``DPoP`` header(s), checked; or ``DPoPProofError``.

        ``proofs``: every ``DPoP`` header value of the request (exactly one is allowed).
        ``url``: the request URL as the client addressed it. ``access_token``: the token the
        request carries (then ``ath`` is required); None at a token endpoint.
        """
        if isinstance(proofs, str):
            proofs = [proofs]
        if len(proofs) != 1:
            raise DPoPProofError("exactly one DPoP header is required")
        proof = proofs[0].strip()
        if "," in proof:  # several DPoP headers that a proxy or server joined into one
            raise DPoPProofError("exactly one DPoP header is required")
        if len(proof) > _MAX_PROOF_CHARS:
            raise DPoPProofError("the DPoP proof is too large")
        try:
            header = jwt.get_unverified_header(proof)
        except jwt.PyJWTError:
            raise DPoPProofError("the DPoP proof is not a well-formed JWT") from None
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in DPOP_PROOF_TYPES:
            raise DPoPProofError("the DPoP proof's typ must be dpop+jwt")
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise DPoPProofError("the DPoP proof's signing algorithm is not accepted")
        if "crit" in header:
            raise DPoPProofError("the DPoP proof has critical header parameters this service "
                                 "does not support")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict):
            raise DPoPProofError("the DPoP proof has no jwk header")
        if any(member in jwk for member in PRIVATE_JWK_MEMBERS):
            raise DPoPProofError("the DPoP proof's jwk contains a private key")
        kty, curves = _DPOP_KEY_SHAPE[alg]
        if jwk.get("kty") != kty or (curves is not None and jwk.get("crv") not in curves) \
                or jwk.get("alg", alg) != alg:
            raise DPoPProofError("the DPoP proof's jwk does not match its algorithm")
        try:
            key = jwt.PyJWK(jwk, algorithm=alg)
            jkt = jwk_thumbprint(jwk)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise DPoPProofError("the DPoP proof's jwk is not a valid public key") from None
        if kty == "RSA" and not _RSA_PROOF_BITS[0] <= key.key.key_size <= _RSA_PROOF_BITS[1]:
            raise DPoPProofError("the DPoP proof's RSA key must have 2048 to 8192 bits")
        try:
            payload = jwt.PyJWS().decode(proof, key=key, algorithms=[alg])
        except jwt.InvalidSignatureError:
            raise DPoPProofError("the DPoP proof's signature is invalid") from None
        except jwt.PyJWTError:
            raise DPoPProofError("the DPoP proof is invalid") from None
        try:
            claims = json.loads(payload)
        except ValueError:
            claims = None
        if not isinstance(claims, dict):
            raise DPoPProofError("the DPoP proof's payload is not a JSON object")

        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise DPoPProofError("the DPoP proof lacks the jti claim")
        if len(jti) > _MAX_JTI_CHARS:
            raise DPoPProofError("the DPoP proof's jti is too long")
        htm = claims.get("htm")
        if not isinstance(htm, str):
            raise DPoPProofError("the DPoP proof lacks the htm claim")
        if htm != method:  # methods are case-sensitive (RFC 9110 §9.1)
            raise DPoPProofError("the DPoP proof's htm does not match the request method")
        htu = claims.get("htu")
        if not isinstance(htu, str):
            raise DPoPProofError("the DPoP proof lacks the htu claim")
        expected = normalize_http_url(url)
        if expected is None or normalize_http_url(htu) != expected:
            raise DPoPProofError("the DPoP proof's htu does not match the request URL")
        iat = claims.get("iat")
        if isinstance(iat, bool) or not isinstance(iat, (int, float)):
            raise DPoPProofError("the DPoP proof lacks the iat claim")
        now = self._clock()
        if iat < now - self.max_age:
            raise DPoPProofError("the DPoP proof is too old (iat)")
        if iat > now + self.max_future:
            raise DPoPProofError("the DPoP proof's iat is in the future")
        if access_token is not None:
            ath = claims.get("ath")
            if not isinstance(ath, str):
                raise DPoPProofError("the DPoP proof lacks the ath claim")
            try:
                expected_ath = access_token_hash(access_token)
            except UnicodeEncodeError:
                expected_ath = None
            if ath != expected_ath:
                raise DPoPProofError("the DPoP proof's ath does not match the access token")
        return DPoPProof(jkt=jkt, jti=jti, iat=float(iat), header=header, claims=claims)

    def bind(self, proof: DPoPProof, token_claims: Mapping[str, Any]) -> None:
        """The token is bound to the proof's key; then the proof is spent (its jti recorded).

        Raises ``TokenError`` for an unbound token or one bound to another key (RFC 9449 §7.1
        answers those with ``invalid_token``), ``DPoPProofError`` for a replayed proof, and
        ``ReplayCacheUnavailable`` when the cache cannot answer.
        """
        jkt = confirmation_jkt(token_claims)
        if jkt is None:
            raise TokenError("the token is not DPoP-bound (no cnf.jkt)")
        if jkt != proof.jkt:
            raise TokenError("the token is bound to another key than the DPoP proof's")
        if not self.replay_cache.add(proof.jkt, proof.jti, self.replay_window):
            raise DPoPProofError("the DPoP proof was already used (jti)")


# --------------------------------------------------------------------------------------------
# Flask glue


def _quote(value: str) -> str:
    """An RFC 9110 quoted-string limited to the characters RFC 6750 §3 allows."""
    safe = "".join(c if (0x20 <= ord(c) <= 0x7E and c not in '"\\') else "?" for c in value)
    return f'"{safe}"'


#: ``DPOP_MODE`` -> the schemes ``Authorization`` may use, in the order 401s advertise them.
DPOP_MODES = {
    "allowed": ("Bearer", "DPoP"),  # the default: bearer tokens and DPoP-bound tokens
    "required": ("DPoP",),  # DPoP-bound tokens only
    "disabled": ("Bearer",),  # bearer tokens only (DPoP-bound tokens are then refused)
}


class AuthFailure(Exception):
    """An HTTP answer to a request that may not proceed.

    ``schemes``: the challenges to send. By default, one in the scheme the request used (the
    401 for a request without credentials names every scheme the service accepts instead).
    """

    def __init__(self, status: int, error: str | None, description: str | None = None,
                 *, challenge: bool = True, extra: Mapping[str, Any] | None = None,
                 scope: str | None = None, schemes: Sequence[str] | None = None):
        super().__init__(error or "unauthorized")
        self.status, self.error, self.description = status, error, description
        self.challenge, self.extra, self.scope = challenge, dict(extra or {}), scope
        self.schemes = tuple(schemes) if schemes else None

    def response(self, auth: "PortcullisAuth"):
        body: dict[str, Any] = {"error": self.error or "unauthorized"}
        if self.description:
            body["error_description"] = self.description
        body.update(self.extra)
        resp = jsonify(body)
        resp.status_code = self.status
        if self.challenge:
            # One WWW-Authenticate header per scheme (RFC 9110 §11.6.1 allows either form;
            # separate headers are the one clients parse reliably). Bearer comes first.
            for scheme in self.schemes or (g.get("portcullis_scheme") or "Bearer",):
                resp.headers.add("WWW-Authenticate", self._challenge(scheme, auth))
        if self.status == 503:
            resp.headers["Retry-After"] = "10"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def _challenge(self, scheme: str, auth: "PortcullisAuth") -> str:
        params = [f"realm={_quote(auth.realm)}"]
        if self.error:  # RFC 6750 §3.1: no error attributes when no token was sent
            params.append(f"error={_quote(self.error)}")
            if self.description:
                params.append(f"error_description={_quote(self.description)}")
        if self.scope:
            params.append(f"scope={_quote(self.scope)}")
        if scheme == "DPoP":  # RFC 9449 §7.1: the proof algorithms this service accepts
            params.append(f"algs={_quote(' '.join(auth.dpop.algorithms))}")
        return f"{scheme} " + ", ".join(params)


class PortcullisAuth:
    """Flask extension: ``PortcullisAuth(app)`` reads its settings from ``app.config``.

    ``PORTCULLIS_ISSUER`` (required), ``INFERENCE_AUDIENCE``, ``JWKS_URL`` (default
    ``{issuer}/.well-known/jwks.json``), ``JWKS_MIN_REFRESH_INTERVAL`` (s, default 10),
    ``JWKS_DEFAULT_MAX_AGE`` (s, used when the server sends no max-age; default 300),
    ``JWT_LEEWAY`` (s, for nbf/iat; default 30), ``JWT_EXP_LEEWAY`` (s; default 0),
    ``AUTH_REALM`` (default ``inference``).

    DPoP: ``DPOP_MODE`` (``allowed``, the default, ``required`` or ``disabled``),
    ``DPOP_MAX_AGE`` (s a proof's ``iat`` may lie in the past; default 60), ``DPOP_MAX_FUTURE``
    (s it may lie in the future; default 5), ``DPOP_REPLAY_CACHE_SIZE`` (default 100000),
    ``EXTERNAL_BASE_URL`` (see below).

    Keyword arguments, which take precedence over the config:

    * ``external_base_url``: the URL at which clients reach this app's root, such as
      ``https://api.example.com/inference`` behind a reverse proxy. A proof's ``htu`` is
      compared with it plus the request path. Default: the request's own URL as Flask sees it
      (``request.base_url``: scheme, ``Host`` and script root).
    * ``replay_cache``: a ``ReplayCache`` for the proofs' ``jti``. Default: a
      ``MemoryReplayCache``, right for one process only.
    """

    def __init__(self, app: Flask | None = None, *, external_base_url: str | None = None,
                 replay_cache: ReplayCache | None = None):
        self.verifier: TokenVerifier | None = None
        self.dpop: DPoPVerifier | None = None
        self.schemes: tuple[str, ...] = DPOP_MODES["allowed"]
        self.realm = "inference"
        self.external_base_url = external_base_url
        self._replay_cache = replay_cache
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
        mode = str(c.get("DPOP_MODE") or "allowed").lower()
        if mode not in DPOP_MODES:
            raise RuntimeError(f"DPOP_MODE must be one of {', '.join(DPOP_MODES)}")
        self.schemes = DPOP_MODES[mode]
        replay_cache = self._replay_cache
        if replay_cache is None:
            replay_cache = MemoryReplayCache(int(c.get("DPOP_REPLAY_CACHE_SIZE", 100_000)))
        self.dpop = DPoPVerifier(
            replay_cache=replay_cache,
            max_age=float(c.get("DPOP_MAX_AGE", 60)),
            max_future=float(c.get("DPOP_MAX_FUTURE", 5)),
        )
        base = self.external_base_url or c.get("EXTERNAL_BASE_URL")
        if base:
            parsed = normalize_http_url(base)
            if parsed is None or urllib.parse.urlsplit(base).query:
                raise RuntimeError("EXTERNAL_BASE_URL must be an http(s) URL without a query "
                                   "(e.g. https://api.example.com/inference)")
            self.external_base_url = base.rstrip("/")
        self.realm = c.get("AUTH_REALM", "inference")
        app.extensions["portcullis_auth"] = self
        # current_claims() may also be called from an undecorated view: same answers.
        app.register_error_handler(AuthFailure, lambda failure: failure.response(self))

    @property
    def jwks(self) -> JWKSCache:
        assert self.verifier is not None
        return self.verifier.jwks

    def request_url(self) -> str:
        """This request's URL as the client addressed it, without query: what ``htu`` names."""
        base = self.external_base_url or request.root_url.rstrip("/")
        return base + urllib.parse.quote(request.path, safe="/", errors="surrogateescape")


def _extension() -> PortcullisAuth:
    return current_app.extensions["portcullis_auth"]


_SCHEME_NAMES = {"bearer": "Bearer", "dpop": "DPoP"}


def _credentials(ext: PortcullisAuth) -> tuple[str, str]:
    """(scheme, token) from ``Authorization: Bearer`` (RFC 6750 §2.1) or ``DPoP`` (RFC 9449)."""
    header = request.headers.get("Authorization")
    if ext.schemes == ("Bearer",):
        required = "a bearer token is required"
    elif ext.schemes == ("DPoP",):
        required = "a DPoP-bound access token is required"
    else:
        required = "a bearer or DPoP-bound access token is required"
    if header is None:
        # RFC 6750 §3.1: no authentication attempted, so no error code.
        raise AuthFailure(401, None, required, schemes=ext.schemes)
    scheme, _, credentials = header.strip().partition(" ")
    # Scheme names are case-insensitive (RFC 9110 §11.1).
    scheme = _SCHEME_NAMES.get(scheme.lower(), "")
    if scheme not in ext.schemes:
        raise AuthFailure(401, None, required, schemes=ext.schemes)
    credentials = credentials.strip()
    if not credentials or " " in credentials or (scheme == "DPoP" and not credentials.isascii()):
        raise AuthFailure(400, "invalid_request", "malformed Authorization header",
                          schemes=(scheme,))
    return scheme, credentials


def current_claims() -> dict[str, Any]:
    """The verified claims of this request's token (verifying it on first use).

    ``Authorization: Bearer``: the token must not be DPoP-bound. ``Authorization: DPoP``: the
    ``DPoP`` proof is checked first, then the token, then that the token is bound to the
    proof's key; only then is the proof's ``jti`` recorded.
    """
    claims = g.get("portcullis_claims")
    if claims is not None:
        return claims
    ext = _extension()
    scheme, token = _credentials(ext)
    g.portcullis_scheme = scheme  # the scheme of every challenge that follows
    try:
        if scheme == "DPoP":
            proof = ext.dpop.verify(request.headers.getlist("DPoP"), method=request.method,
                                    url=ext.request_url(), access_token=token)
            claims = ext.verifier.verify(token)
            ext.dpop.bind(proof, claims)
        else:
            claims = ext.verifier.verify(token)
            refuse_bound_bearer(claims)
    except DPoPProofError as e:
        raise AuthFailure(401, "invalid_dpop_proof", e.description) from None
    except TokenError as e:
        raise AuthFailure(401, "invalid_token", e.description) from None
    except JWKSUnavailable:
        raise AuthFailure(503, "temporarily_unavailable",
                          "the issuer's signing keys cannot be fetched", challenge=False) from None
    except ReplayCacheUnavailable:
        raise AuthFailure(503, "temporarily_unavailable",
                          "the DPoP replay cache is unavailable", challenge=False) from None
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
                return failure.response(_extension())
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
