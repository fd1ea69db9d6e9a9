"""TokenVerifier: checks a real Portcullis never gives a reason to exercise (it signs only good
tokens), with keys made here and a JWKS served from memory: typ, time claims, required claims,
JWK rules, key sources. (Moved from examples/flask-inference-service/tests.)"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from helpers import AUDIENCE, ISSUER, Keys, claims, memory_jwks, rsa_key, sign
from portcullis_verifier import (
    JWKSUnavailable,
    TokenError,
    TokenVerifier,
    load_keys,
    refuse_bound_bearer,
    token_roles,
    token_scopes,
)


def verifier_for(jwks: dict[str, Any], **kwargs: Any) -> TokenVerifier:
    return TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=memory_jwks(jwks), **kwargs)


@pytest.fixture(scope="module")
def verifier(keys: Keys) -> TokenVerifier:
    return verifier_for({"keys": [
        Keys.jwk(keys.ec, "ec-1", alg="ES256"),
        Keys.jwk(keys.rsa, "rsa-1", alg="RS256"),
        Keys.jwk(keys.ec, "ec-no-alg"),
        Keys.jwk(keys.rsa, "rsa-claims-es256", alg="ES256"),  # lies about its alg: unusable
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac-1", "alg": "HS256"},
    ]})


def accepted(verifier: TokenVerifier, token: str) -> dict[str, Any]:
    return verifier.verify(token)


def refused(verifier: TokenVerifier, token: str, text: str) -> None:
    with pytest.raises(TokenError) as e:
        verifier.verify(token)
    assert text in e.value.description, e.value.description


def test_good_tokens(verifier: TokenVerifier, keys: Keys) -> None:
    assert accepted(verifier, sign(keys, claims()))["sub"] == "svc"
    assert accepted(verifier, sign(keys, claims(), kid="rsa-1", alg="RS256"))
    assert accepted(verifier, sign(keys, claims(), kid="ec-no-alg"))  # alg inferred: EC P-256
    assert accepted(verifier, sign(keys, claims(aud=["https://x.test", AUDIENCE])))


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
def test_typ_accepted(verifier: TokenVerifier, keys: Keys, typ: str) -> None:
    accepted(verifier, sign(keys, claims(), typ=typ))


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt; x", "id_token+jwt", "", 1, None])
def test_typ_refused(verifier: TokenVerifier, keys: Keys, typ: Any) -> None:
    refused(verifier, sign(keys, claims(), typ=typ), "typ")


def test_time_claims(verifier: TokenVerifier, keys: Keys) -> None:
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


def test_exp_leeway_is_separate(keys: Keys) -> None:
    lenient = verifier_for({"keys": [Keys.jwk(keys.ec, "ec-1", alg="ES256")]}, exp_leeway=60)
    accepted(lenient, sign(keys, claims(exp=int(time.time()) - 30)))
    refused(lenient, sign(keys, claims(exp=int(time.time()) - 90)), "expired")


def test_injected_clock(keys: Keys) -> None:
    """exp is judged by the verifier's clock (tests, and services with their own time)."""
    verifier = verifier_for({"keys": [Keys.jwk(keys.ec, "ec-1", alg="ES256")]},
                            clock=lambda: time.time() + 3600)
    refused(verifier, sign(keys, claims()), "expired")


def test_identity_claims(verifier: TokenVerifier, keys: Keys) -> None:
    refused(verifier, sign(keys, claims(iss="https://evil.example.test")), "issuer")
    refused(verifier, sign(keys, claims(iss=None)), "iss")
    refused(verifier, sign(keys, claims(aud="https://other.example.test")), "aud")
    refused(verifier, sign(keys, claims(aud=["https://other.example.test"])), "aud")
    refused(verifier, sign(keys, claims(aud=None)), "aud")
    refused(verifier, sign(keys, claims(sub=None)), "sub")


def test_key_selection(verifier: TokenVerifier, keys: Keys) -> None:
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


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "eyJhbGciOiJFUzI1NiJ9", "...."])
def test_malformed(verifier: TokenVerifier, token: str) -> None:
    refused(verifier, token, "")


@pytest.mark.parametrize("alg", ["none", "HS256", "ES384", "PS256", "EdDSA"])
def test_algorithm_allow_list(verifier: TokenVerifier, keys: Keys, alg: str) -> None:
    import base64

    def b64(value: Any) -> str:
        raw = json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    token = f"{b64({'alg': alg, 'typ': 'at+jwt', 'kid': 'ec-1'})}.{b64(claims())}.c2ln"
    refused(verifier, token, "algorithm")


def test_load_keys_filters(keys: Keys) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    p384 = ec.generate_private_key(ec.SECP384R1())
    loaded = load_keys({"keys": [
        Keys.jwk(keys.ec, "ok-ec", alg="ES256"),
        Keys.jwk(keys.rsa, "ok-rsa"),
        Keys.jwk(small, "short-rsa", alg="RS256"),
        Keys.jwk(p384, "p384", alg="ES384"),
        Keys.jwk(p384, "p384-no-alg"),
        Keys.jwk(keys.ec, "enc-key", alg="ES256") | {"use": "enc"},
        Keys.jwk(keys.ec, "verify-op", alg="ES256") | {"key_ops": ["verify"]},
        Keys.jwk(keys.ec, "sign-op", alg="ES256") | {"key_ops": ["sign"]},
        Keys.jwk(keys.ec, "dup", alg="ES256"),
        Keys.jwk(keys.rsa, "dup", alg="RS256"),
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "EC", "kid": "broken", "crv": "P-256", "x": "AA", "y": "AA"},
        "not a key",
    ]})
    assert set(loaded) == {"ok-ec", "ok-rsa", "verify-op"}
    assert loaded["ok-rsa"].algorithm_name == "RS256"
    with pytest.raises(ValueError):
        load_keys({"no": "keys"})


# --------------------------------------------------------------------------------------------
# A plain jwt.PyJWKClient as the key source


class StubClient(jwt.PyJWKClient):
    """PyJWT's own client, its HTTP fetch answered from memory (or failing)."""

    def __init__(self, document: dict[str, Any] | None) -> None:
        super().__init__("https://issuer.example.test/.well-known/jwks.json")
        self.document = document

    def fetch_data(self) -> Any:
        if self.document is None:
            raise jwt.PyJWKClientConnectionError("connection refused")
        if self.jwk_set_cache is not None:
            self.jwk_set_cache.put(self.document)
        return self.document


def test_plain_pyjwkclient_works(keys: Keys) -> None:
    client = StubClient(keys.jwks())
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=client)
    assert verifier.verify(sign(keys, claims()))["sub"] == "svc"
    assert verifier.verify(sign(keys, claims(), kid="rsa-1", alg="RS256"))
    with pytest.raises(TokenError, match="unknown key"):
        verifier.verify(sign(keys, claims(), kid="nope"))
    # The key-type rules hold whatever the source: the EC key refuses an RS256 header.
    with pytest.raises(TokenError, match="does not match"):
        verifier.verify(sign(keys, claims(), kid="ec-1", alg="RS256"))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_plain_pyjwkclient_short_rsa_key_refused() -> None:
    small = rsa_key(1024)
    client = StubClient({"keys": [Keys.jwk(small, "short", alg="RS256")]})
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=client)
    token = jwt.encode(claims(), small, algorithm="RS256", headers={"kid": "short", "typ": "at+jwt"})
    with pytest.raises(TokenError, match="does not match"):
        verifier.verify(token)


def test_plain_pyjwkclient_unreachable_is_unavailable(keys: Keys) -> None:
    verifier = TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=StubClient(None))
    with pytest.raises(JWKSUnavailable):
        verifier.verify(sign(keys, claims()))


def test_claim_helpers() -> None:
    assert token_scopes({"scope": "a b  a"}) == {"a", "b"}
    assert token_scopes({"scope": ["a"]}) == set()
    assert token_roles({"roles": ["x", 1, "y"]}) == {"x", "y"}
    assert token_roles({"roles": "x"}) == set()
    refuse_bound_bearer({"sub": "x"})
    with pytest.raises(TokenError, match="DPoP-bound"):
        refuse_bound_bearer({"cnf": {"jkt": "abc"}})
    with pytest.raises(TokenError, match="cnf"):
        refuse_bound_bearer({"cnf": {"x5t#S256": "abc"}})


def test_verifier_requires_issuer_and_audience(keys: Keys) -> None:
    with pytest.raises(ValueError):
        TokenVerifier(issuer="", audience=AUDIENCE, jwks=memory_jwks(keys.jwks()))
