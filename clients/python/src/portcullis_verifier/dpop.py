"""DPoP (RFC 9449): proofs of possession for sender-constrained access tokens.

``DPoPVerifier.verify`` checks a proof (RFC 9449 §4.3, with ``ath`` when given the access
token); ``DPoPVerifier.bind`` then checks that the verified token is bound to the proof's key
(``cnf.jkt``, §6.1) and records the proof's ``jti`` in a ``ReplayCache`` (§11.1).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .tokens import TokenError, confirmation_jkt

#: Proof algorithms, in the order the ``algs`` challenge parameter lists them. Asymmetric only
#: (RFC 9449 §11.6): never ``none``, never HMAC.
DPOP_ALGORITHMS = ("ES256", "RS256", "PS256", "EdDSA")

#: The JWK each proof algorithm needs: (kty, allowed crv values or None).
_DPOP_KEY_SHAPE: dict[str, tuple[str, set[str] | None]] = {
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
_THUMBPRINT_MEMBERS: dict[str, tuple[str, ...]] = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"),
                       "OKP": ("crv", "kty", "x")}

_MAX_PROOF_CHARS = 8192  # an RSA-4096 proof is about 2 KiB
_MAX_JTI_CHARS = 256  # RFC 9449 §11.1: refuse needlessly large jti values
_RSA_PROOF_BITS = (2048, 8192)
_DEFAULT_PORTS = {"http": 80, "https": 443}


class DPoPProofError(Exception):
    """A DPoP proof that must be refused (answer 401 ``invalid_dpop_proof``).

    Like ``TokenError``, ``description`` is fixed ASCII text, never taken from the proof.
    """

    def __init__(self, description: str) -> None:
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

    def __init__(self, max_entries: int = 100_000, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
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
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
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
    ) -> None:
        algs = tuple(algorithms)
        if not algs or any(alg not in _DPOP_KEY_SHAPE for alg in algs):
            raise ValueError(f"DPoP algorithms must be among {' '.join(DPOP_ALGORITHMS)}")
        if max_age <= 0 or max_future < 0:
            raise ValueError("max_age must be positive and max_future not negative")
        self.algorithms: tuple[str, ...] = algs
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
        if kty == "RSA" and not (isinstance(key.key, rsa.RSAPublicKey)
                                 and _RSA_PROOF_BITS[0] <= key.key.key_size <= _RSA_PROOF_BITS[1]):
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
