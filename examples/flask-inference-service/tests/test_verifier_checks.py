"""Checks a real Portcullis never gives a reason to exercise (it signs only good tokens), with
keys made here and a JWKS served from memory: typ, time claims, required claims, JWK rules."""

from __future__ import annotations

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from portcullis_auth import JWKSCache, TokenError, TokenVerifier, load_keys

ISSUER = "https://issuer.example.test"
AUDIENCE = "https://inference.example.test"


class Keys:
    def __init__(self):
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @staticmethod
    def jwk(private, kid: str, **extra) -> dict:
        algorithm = jwt.algorithms.ECAlgorithm if isinstance(private, ec.EllipticCurvePrivateKey) \
            else jwt.algorithms.RSAAlgorithm
        jwk = json.loads(algorithm.to_jwk(private.public_key()))
        jwk.update(kid=kid, use="sig", **extra)
        return jwk


@pytest.fixture(scope="module")
def keys():
    return Keys()


def verifier_for(jwks: dict, **kwargs) -> TokenVerifier:
    cache = JWKSCache("memory://jwks")
    body = json.dumps(jwks).encode()
    cache._http_get = lambda url, etag: (200, {"Cache-Control": "max-age=300"}, body)
    return TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=cache, **kwargs)


@pytest.fixture(scope="module")
def verifier(keys):
    return verifier_for({"keys": [
        Keys.jwk(keys.ec, "ec-1", alg="ES256"),
        Keys.jwk(keys.rsa, "rsa-1", alg="RS256"),
        Keys.jwk(keys.ec, "ec-no-alg"),
        Keys.jwk(keys.rsa, "rsa-claims-es256", alg="ES256"),  # lies about its alg: unusable
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac-1", "alg": "HS256"},
    ]})


def claims(**overrides) -> dict:
    now = int(time.time())
    base = {"iss": ISSUER, "sub": "svc", "aud": AUDIENCE, "iat": now, "exp": now + 300,
            "jti": "j1", "client_id": "svc", "scope": "models:read"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(keys, payload, *, kid="ec-1", alg="ES256", typ="at+jwt", **header) -> str:
    private = keys.ec if alg.startswith("ES") else keys.rsa
    headers = {"typ": typ, **header}  # PyJWT drops a None or empty typ
    if kid is not None:
        headers["kid"] = kid
    return jwt.encode(payload, private, algorithm=alg, headers=headers)


def accepted(verifier, token):
    return verifier.verify(token)


def refused(verifier, token, text):
    with pytest.raises(TokenError) as e:
        verifier.verify(token)
    assert text in e.value.description, e.value.description


def test_good_tokens(verifier, keys):
    assert accepted(verifier, sign(keys, claims()))["sub"] == "svc"
    assert accepted(verifier, sign(keys, claims(), kid="rsa-1", alg="RS256"))
    assert accepted(verifier, sign(keys, claims(), kid="ec-no-alg"))  # alg inferred: EC P-256
    assert accepted(verifier, sign(keys, claims(aud=["https://x.test", AUDIENCE])))


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
def test_typ_accepted(verifier, keys, typ):
    accepted(verifier, sign(keys, claims(), typ=typ))


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt; x", "id_token+jwt", "", 1, None])
def test_typ_refused(verifier, keys, typ):
    refused(verifier, sign(keys, claims(), typ=typ), "typ")


def test_time_claims(verifier, keys):
    now = int(time.time())
    refused(verifier, sign(keys, claims(exp=now - 1)), "expired")
    refused(verifier, sign(keys, claims(exp=None)), "exp")
    refused(verifier, sign(keys, claims(exp="tomorrow")), "exp")
    # nbf and iat: 30 s of clock skew tolerated, no more.
    accepted(verifier, sign(keys, claims(nbf=now + 20)))
    refused(verifier, sign(keys, claims(nbf=now + 120)), "not valid yet")
    accepted(verifier, sign(keys, claims(iat=now + 20)))
    refused(verifier, sign(keys, claims(iat=now + 120)), "not valid yet")
    refused(verifier, sign(keys, claims(iat=None)), "iat")


def test_exp_leeway_is_separate(keys):
    lenient = verifier_for({"keys": [Keys.jwk(keys.ec, "ec-1", alg="ES256")]}, exp_leeway=60)
    accepted(lenient, sign(keys, claims(exp=int(time.time()) - 30)))
    refused(lenient, sign(keys, claims(exp=int(time.time()) - 90)), "expired")


def test_identity_claims(verifier, keys):
    refused(verifier, sign(keys, claims(iss="https://evil.example.test")), "issuer")
    refused(verifier, sign(keys, claims(iss=None)), "iss")
    refused(verifier, sign(keys, claims(aud="https://other.example.test")), "aud")
    refused(verifier, sign(keys, claims(aud=["https://other.example.test"])), "aud")
    refused(verifier, sign(keys, claims(aud=None)), "aud")
    refused(verifier, sign(keys, claims(sub=None)), "sub")


def test_key_selection(verifier, keys):
    # A JWK whose alg is not the header's: refused even though the key could verify it.
    refused(verifier, sign(keys, claims(), kid="rsa-1", alg="ES256"), "does not match")
    refused(verifier, sign(keys, claims(), kid="ec-1", alg="RS256"), "does not match")
    # An RSA JWK that claims ES256 was dropped when the JWKS was loaded.
    refused(verifier, sign(keys, claims(), kid="rsa-claims-es256", alg="RS256"), "unknown key")
    # Symmetric keys in a JWKS are never loaded; HS256 is not allowed anyway.
    token = jwt.encode(claims(), "a-secret-of-at-least-32-bytes-length", algorithm="HS256",
                       headers={"kid": "hmac-1", "typ": "at+jwt"})
    refused(verifier, token, "algorithm")
    refused(verifier, sign(keys, claims(), kid=None), "kid")
    refused(verifier, sign(keys, claims(), crit=["exp"], exp=1), "")  # unknown crit


def test_load_keys_filters(keys):
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    p384 = ec.generate_private_key(ec.SECP384R1())
    loaded = load_keys({"keys": [
        Keys.jwk(keys.ec, "ok-ec", alg="ES256"),
        Keys.jwk(keys.rsa, "ok-rsa"),
        Keys.jwk(small, "short-rsa", alg="RS256"),
        Keys.jwk(p384, "p384", alg="ES384"),
        Keys.jwk(p384, "p384-no-alg"),
        Keys.jwk(keys.ec, "enc-key", alg="ES256") | {"use": "enc"},
        Keys.jwk(keys.ec, "dup", alg="ES256"),
        Keys.jwk(keys.rsa, "dup", alg="RS256"),
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "EC", "kid": "broken", "crv": "P-256", "x": "AA", "y": "AA"},
        "not a key",
    ]})
    assert set(loaded) == {"ok-ec", "ok-rsa"}
    assert loaded["ok-rsa"].algorithm_name == "RS256"
    with pytest.raises(ValueError):
        load_keys({"no": "keys"})
