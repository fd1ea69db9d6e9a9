"""The issuer's signing keys: a ``jwt.PyJWKClient`` with HTTP caching and rotation guarantees.

``JWKSCache`` is a drop-in ``PyJWKClient`` (``get_signing_key(kid)``,
``get_signing_key_from_jwt(token)``, ``get_jwk_set()``, ``get_signing_keys()``,
``fetch_data()``): PyJWT parses every key (``PyJWK``) and checks the URL scheme. What it adds is
what a resource server verifying a rotating issuer's tokens needs and the stock client lacks:

* freshness from the server's ``Cache-Control: max-age`` (less ``Age``), revalidated with
  ``If-None-Match`` (a 304 extends it), instead of one fixed lifespan;
* the last good key set kept when a fetch fails (the stock client raises once its lifespan is
  over), with a retry after ``min_refresh_interval``;
* stale-while-revalidate: while one caller refreshes, the others keep verifying with the last
  good keys instead of queueing behind the fetch;
* an unknown ``kid`` triggers one refetch (single-flight: callers arriving meanwhile wait for it
  and use its result), at most once per ``min_refresh_interval``. The cooldown counts from the
  last *unknown-kid* refetch only: a routine refresh does not delay the first lookup of a key
  that was just published (the stock client's cooldown starts at every fetch);
* only keys usable with an allowed algorithm are loaded (ES256 on P-256, RS256 of 2048 bits or
  more, ``use`` ``sig`` or absent); a ``kid`` shared by two keys is trusted for neither;
* no redirects followed (as PyJWT), a 1 MiB body limit, and a fetch ``timeout``.

A plain ``jwt.PyJWKClient`` is also accepted wherever this package takes a key source.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any, cast

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

log = logging.getLogger("portcullis_verifier.jwks")

#: The only algorithms accepted for access tokens, whatever a token or a JWKS says. Never
#: ``none``, never HMAC: with a public key as the "secret", HS256 would let anyone forge tokens.
ALLOWED_ALGORITHMS = frozenset({"ES256", "RS256"})

#: The JWK each allowed algorithm needs (RFC 7518 §3.3, §3.4).
_KEY_SHAPE: dict[str, tuple[str, str | None]] = {"ES256": ("EC", "P-256"), "RS256": ("RSA", None)}

MIN_RSA_BITS = 2048
_MAX_JWKS_BYTES = 1 << 20


class JWKSUnavailable(jwt.PyJWKClientConnectionError):
    """No key set has ever been loaded: tokens cannot be checked at all (answer 503, not 401)."""


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


def jwk_algorithm(jwk: Mapping[str, Any]) -> str | None:
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
        alg = {"EC": "ES256" if crv == "P-256" else None, "RSA": "RS256"}.get(kty)  # type: ignore[arg-type]
    if alg not in ALLOWED_ALGORITHMS:
        return None
    want_kty, want_crv = _KEY_SHAPE[alg]
    if kty != want_kty or (want_crv is not None and crv != want_crv):
        return None
    return str(alg)


def key_fits_algorithm(key: jwt.PyJWK, alg: str) -> bool:
    """The loaded key really is a key for ``alg`` (whatever key source produced it)."""
    if alg not in ALLOWED_ALGORITHMS or key.algorithm_name != alg:
        return False
    if key.public_key_use not in (None, "sig"):
        return False
    material = key.key
    if alg == "ES256":
        return isinstance(material, ec.EllipticCurvePublicKey) and \
            isinstance(material.curve, ec.SECP256R1)
    return isinstance(material, rsa.RSAPublicKey) and material.key_size >= MIN_RSA_BITS


def load_keys(document: Any) -> dict[str, jwt.PyJWK]:
    """Parses a JWKS into kid -> PyJWK, keeping only keys usable with an allowed algorithm."""
    keys, _ = _load(document)
    return keys


def _load(document: Any) -> tuple[dict[str, jwt.PyJWK], dict[str, dict[str, Any]]]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK Set")
    keys: dict[str, jwt.PyJWK] = {}
    raw: dict[str, dict[str, Any]] = {}
    ambiguous: set[str] = set()
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        alg = jwk_algorithm(jwk)
        if alg is None:
            continue
        kid = jwk["kid"]
        try:
            key = jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError as e:
            log.warning("JWKS: skipping key %.64r: %s", kid, e)
            continue
        if not key_fits_algorithm(key, alg):
            log.warning("JWKS: skipping key %.64r: not a usable %s key", kid, alg)
            continue
        if kid in keys:
            ambiguous.add(kid)  # two keys, one kid: trust neither
        keys[kid] = key
        raw[kid] = dict(jwk)
    for kid in ambiguous:
        del keys[kid]
        del raw[kid]
    return keys, raw


@dataclass
class _Snapshot:
    generation: int  # bumped by every completed fetch attempt
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    loaded: bool = False  # a key set was loaded at least once
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)  # kid -> its JWK


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        return None  # a 3xx is answered as it is, and counts as a failed fetch


class JWKSCache(jwt.PyJWKClient):
    """The issuer's public keys, cached as the server's ``Cache-Control`` allows.

    * Fresh (within ``max-age``): served from memory.
    * Stale: one caller revalidates (``If-None-Match`` with the stored ETag; a 304 extends
      freshness by the new ``max-age``) while concurrent callers keep using the last good set.
    * Unknown ``kid``: one refetch, single-flight, and at most one such refetch per
      ``min_refresh_interval`` seconds, so a flood of tokens with made-up kids cannot make this
      service hammer the issuer.
    * A failed fetch (network, status, bad JSON, no usable key) keeps the last good set and
      is retried after ``min_refresh_interval``.

    ``get_signing_key(kid)`` raises ``jwt.PyJWKClientError`` for a kid the issuer does not
    publish and ``JWKSUnavailable`` (a ``jwt.PyJWKClientConnectionError``) while no key set was
    ever loaded. ``get_key(kid)`` answers None instead of the former.
    """

    def __init__(
        self,
        url: str,
        *,
        min_refresh_interval: float = 10.0,
        default_max_age: float = 300.0,
        max_max_age: float = 86400.0,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
        ssl_context: SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # PyJWKClient checks the scheme (http or https only) and keeps uri, headers, timeout and
        # ssl_context. Its own caches stay off: this class keeps the keys itself.
        super().__init__(url, cache_keys=False, cache_jwk_set=False, headers=dict(headers or {}),
                         timeout=float(timeout), ssl_context=ssl_context)
        if min_refresh_interval < 0 or default_max_age < 0 or max_max_age < 0 or timeout <= 0:
            raise ValueError("JWKS intervals must not be negative, and the timeout positive")
        self.min_refresh_interval = float(min_refresh_interval)
        self.cooldown_duration = self.min_refresh_interval  # PyJWKClient's name for it
        self.default_max_age = float(default_max_age)
        self.max_max_age = float(max_max_age)
        self._clock = clock
        self._lock = threading.Lock()  # held for the duration of one fetch: single flight
        self._snapshot = _Snapshot(generation=0)
        self._etag: str | None = None
        self._fresh_until = float("-inf")
        self._last_unknown_kid_fetch: float | None = None
        self.last_error: str | None = None
        self.stats: dict[str, int] = {
            "fetches": 0,
            "updated": 0,
            "not_modified": 0,
            "failures": 0,
            "unknown_kid_fetches": 0,
            "unknown_kid_coalesced": 0,  # answered by a fetch another caller made
            "unknown_kid_throttled": 0,  # refused a refetch: within the cooldown
        }

    @property
    def url(self) -> str:
        """The JWKS URL (PyJWKClient's ``uri``)."""
        return self.uri

    @url.setter
    def url(self, value: str) -> None:
        self.uri = value

    # -- lookups ------------------------------------------------------------------------------

    def get_key(self, kid: str) -> jwt.PyJWK | None:
        """The key for ``kid``, or None when the issuer does not publish it.

        Raises ``JWKSUnavailable`` while no key set was ever loaded.
        """
        self._ensure_fresh()
        snapshot = self._snapshot
        key = snapshot.keys.get(kid)
        if key is not None:
            return key
        return self._refetch_for_unknown_kid(kid, snapshot.generation)

    def get_signing_key(self, kid: str) -> jwt.PyJWK:
        key = self.get_key(kid)
        if key is None:
            raise jwt.PyJWKClientError("the issuer publishes no usable key with this kid")
        return key

    def get_signing_keys(self, refresh: bool = False) -> list[jwt.PyJWK]:
        if refresh:
            self.refresh()
        self._ensure_fresh()
        return list(self._snapshot.keys.values())

    def get_jwk_set(self, refresh: bool = False) -> jwt.PyJWKSet:
        """The usable keys as a ``PyJWKSet`` (PyJWT re-parses them from their JWKs)."""
        if refresh:
            self.refresh()
        self._ensure_fresh()
        return jwt.PyJWKSet(list(self._snapshot.raw.values()))

    def fetch_data(self) -> Any:
        """Fetches now and answers the usable keys as a JWK Set document (``{"keys": […]}``).

        Raises ``JWKSUnavailable`` when no key set was ever loaded.
        """
        self.refresh()
        if not self._snapshot.loaded:
            raise JWKSUnavailable(self.last_error or "JWKS not loaded")
        return {"keys": list(self._snapshot.raw.values())}

    def kids(self) -> set[str]:
        return set(self._snapshot.keys)

    def refresh(self) -> None:
        """Fetches now (blocking), whatever the cache state. For warm-up at start."""
        with self._lock:
            self._fetch()

    # -- internals ----------------------------------------------------------------------------

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
            if self._snapshot.generation == snapshot.generation and \
                    self._clock() >= self._fresh_until:
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
        headers = {"Accept": "application/jwk-set+json, application/json", **self.headers}
        if etag:
            headers["If-None-Match"] = etag
        handlers: list[Any] = [_NoRedirect()]
        if self.ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=self.ssl_context))
        opener = urllib.request.build_opener(*handlers)
        req = urllib.request.Request(url, headers=headers)
        try:
            with opener.open(req, timeout=self.timeout) as response:
                status = int(response.status)
                # email.message.Message: case-insensitive get(), as the callers need.
                return status, cast(Mapping[str, str], response.headers), \
                    response.read(_MAX_JWKS_BYTES + 1)
        except urllib.error.HTTPError as e:
            with e:
                return e.code, cast(Mapping[str, str], e.headers), b""

    def _fetch(self) -> None:
        """Fetches once and updates the cache. Caller holds ``self._lock``."""
        self.stats["fetches"] += 1
        started = self._clock()  # freshness counts from the request (RFC 9111 §4.2.3)
        previous = self._snapshot
        try:
            status, headers, body = self._http_get(self.uri,
                                                   self._etag if previous.loaded else None)
            max_age = parse_max_age(headers)
            lifetime = min(self.max_max_age, self.default_max_age if max_age is None else max_age)
            if status == 304 and previous.loaded:
                self.stats["not_modified"] += 1
                self._etag = headers.get("ETag") or self._etag
                self._snapshot = _Snapshot(previous.generation + 1, previous.keys, True,
                                           previous.raw)
            elif status == 200:
                if len(body) > _MAX_JWKS_BYTES:
                    raise ValueError("JWKS larger than 1 MiB")
                keys, raw = _load(json.loads(body))
                if not keys:
                    raise ValueError("JWKS has no usable ES256/RS256 signing key")
                self.stats["updated"] += 1
                self._etag = headers.get("ETag")
                self._snapshot = _Snapshot(previous.generation + 1, keys, True, raw)
            else:
                raise ValueError(f"HTTP {status}")
            self._fresh_until = started + lifetime
            self.last_error = None
        except Exception as e:  # noqa: BLE001 - any failure: keep the last good key set
            self.stats["failures"] += 1
            self.last_error = f"{type(e).__name__}: {e}"
            log.warning("JWKS fetch from %s failed (%s); keeping the last good key set",
                        self.uri, self.last_error)
            self._snapshot = _Snapshot(previous.generation + 1, previous.keys, previous.loaded,
                                       previous.raw)
            # With keys in hand, wait a full interval; with none, try again sooner.
            retry = self.min_refresh_interval if previous.loaded else \
                min(1.0, self.min_refresh_interval)
            self._fresh_until = self._clock() + retry
