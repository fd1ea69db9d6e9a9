"""Keys, tokens and proofs made in the tests (no Portcullis process), and a JWKS from memory."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from portcullis_verifier import JWKSCache, ResourceServer, access_token_hash, jwk_thumbprint

ISSUER = "https://issuer.example.test"
AUDIENCE = "https://inference.example.test"
METADATA_URL = "https://inference.example.test/.well-known/oauth-protected-resource"
ALGS = "ES256 RS256 PS256 EdDSA"
BASE = "http://localhost"  # what the Flask and Starlette test clients send as Host
BOTH_SCOPES = "models:read models:invoke"

_RSA_KEYS: dict[int, rsa.RSAPrivateKey] = {}


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    if bits not in _RSA_KEYS:  # RSA key generation is slow: one per size
        _RSA_KEYS[bits] = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _RSA_KEYS[bits]


def jwk_of(key: PrivateKeyTypes | PublicKeyTypes) -> dict[str, Any]:
    """The JWK of a key, private members included when ``key`` is private."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        text = jwt.algorithms.ECAlgorithm.to_jwk(key)
    elif isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        text = jwt.algorithms.RSAAlgorithm.to_jwk(key)
    else:
        text = jwt.algorithms.OKPAlgorithm.to_jwk(key)  # type: ignore[arg-type]
    result: dict[str, Any] = json.loads(text)
    return result


class Keys:
    """The issuer's keys: one EC P-256 and one RSA-2048."""

    def __init__(self) -> None:
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.rsa = rsa_key()

    @staticmethod
    def jwk(private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, kid: str,
            **extra: Any) -> dict[str, Any]:
        jwk = jwk_of(private.public_key())
        jwk.update(kid=kid, use="sig", **extra)
        return jwk

    def jwks(self) -> dict[str, Any]:
        return {"keys": [Keys.jwk(self.ec, "ec-1", alg="ES256"),
                         Keys.jwk(self.rsa, "rsa-1", alg="RS256")]}


def memory_jwks(document: Mapping[str, Any], url: str = ISSUER + "/.well-known/jwks.json",
                **options: Any) -> JWKSCache:
    """A JWKSCache whose HTTP GET answers ``document`` from memory."""
    cache = JWKSCache(url, **options)
    body = json.dumps(document).encode()
    cache._http_get = (  # type: ignore[method-assign]
        lambda url, etag: (200, {"Cache-Control": "max-age=300"}, body))
    return cache


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"iss": ISSUER, "sub": "svc", "aud": AUDIENCE, "iat": now,
                            "exp": now + 300, "jti": "j1", "client_id": "svc",
                            "scope": "models:read"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(keys: Keys, payload: Mapping[str, Any], *, kid: str | None = "ec-1",
         alg: str = "ES256", typ: Any = "at+jwt", **header: Any) -> str:
    private: Any = keys.ec if alg.startswith("ES") else keys.rsa
    headers: dict[str, Any] = {"typ": typ, **header}  # PyJWT drops a None or empty typ
    if kid is not None:
        headers["kid"] = kid
    return jwt.encode(dict(payload), private, algorithm=alg, headers=headers)


class Holder:
    """A client's DPoP key. It signs proofs; its thumbprint is the token's ``cnf.jkt``."""

    def __init__(self, alg: str = "ES256", private: Any = None) -> None:
        self.alg = alg
        if private is None:
            makers: dict[str, Callable[[], Any]] = {
                "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
                "ES384": lambda: ec.generate_private_key(ec.SECP384R1()),
                "RS256": rsa_key, "PS256": rsa_key,
                "EdDSA": ed25519.Ed25519PrivateKey.generate,
            }
            private = makers[alg]()
        self.private = private
        self.jwk = jwk_of(private.public_key())
        self.jkt = jwk_thumbprint(self.jwk)

    def proof(self, method: str = "GET", url: str = BASE + "/v1/models",
              token: str | None = None, *, header: Mapping[str, Any] | None = None,
              drop: tuple[str, ...] = (), **extra: Any) -> str:
        payload: dict[str, Any] = {"jti": secrets.token_urlsafe(16), "htm": method, "htu": url,
                                   "iat": int(time.time())}
        if token is not None:
            payload["ath"] = access_token_hash(token)
        payload.update(extra)
        for name in drop:
            payload.pop(name, None)
        headers = {"typ": "dpop+jwt", "jwk": self.jwk, **(header or {})}
        return jwt.encode(payload, self.private, algorithm=self.alg, headers=headers)


def bound_token(keys: Keys, holder: Holder | None, **overrides: Any) -> str:
    """A token the issuer bound to ``holder``'s key (None: an unbound token)."""
    overrides.setdefault("scope", BOTH_SCOPES)
    if holder is not None:
        overrides.setdefault("cnf", {"jkt": holder.jkt})
    return sign(keys, claims(**overrides))


def server(keys: Keys, **options: Any) -> ResourceServer:
    """A ResourceServer for ISSUER/AUDIENCE whose JWKS is served from memory."""
    options.setdefault("jwks", memory_jwks(keys.jwks()))
    options.setdefault("realm", "inference")
    return ResourceServer(issuer=ISSUER, audience=AUDIENCE, **options)


def challenges(values: list[str]) -> list[tuple[str, dict[str, str]]]:
    """Each WWW-Authenticate value as (scheme, params)."""
    import re

    out = []
    for value in values:
        scheme, _, rest = value.partition(" ")
        out.append((scheme, dict(re.findall(r'(\w+)="([^"]*)"', rest))))
    return out
