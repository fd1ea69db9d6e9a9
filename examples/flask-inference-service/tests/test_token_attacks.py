"""Tokens the service must refuse, each built from a real Portcullis token or key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from harness import (
    AUDIENCE, RESOURCE_METADATA, bearer, decode_unverified, make_app, unverified_header,
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64_json(value) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def refused(client, token: str, description: str | None = None, path="/v1/models"):
    r = client.get(path, headers=bearer(token))
    assert r.status_code == 401, r.get_data(as_text=True)
    assert r.get_json()["error"] == "invalid_token"
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="inference", error="invalid_token"'), challenge
    if description:
        assert description in r.get_json()["error_description"], r.get_json()
    return r


def real_jwks(portcullis) -> list[dict]:
    return requests.get(portcullis.jwks_url, timeout=10).json()["keys"]


def test_reference_token_is_accepted(client, tokens):
    # Every attack below starts from this token; it must itself be fine.
    assert client.get("/v1/models", headers=bearer(tokens["reader"])).status_code == 200


@pytest.mark.parametrize("token", [
    "not-a-jwt",
    "a.b.c",
    "eyJhbGciOiJFUzI1NiJ9",
    "eyJhbGciOiJFUzI1NiJ9.e30",
    "....",
    "eyJ!!!.eyJ.sig",
])
def test_malformed(client, token):
    refused(client, token)


def test_tampered_payload(client, tokens):
    """Widening the scope of a reader token breaks the signature."""
    header, payload, signature = tokens["reader"].split(".")
    claims = decode_unverified(tokens["reader"])
    claims["scope"] = "models:read models:invoke"
    forged = ".".join([header, b64_json(claims), signature])
    refused(client, forged, "signature", path="/v1/models")
    r = client.post("/v1/models/sentiment-small/predict", json={"input": "x"},
                    headers=bearer(forged))
    assert r.status_code == 401


def test_signature_from_another_token(client, tokens):
    """A valid signature of one token pasted on another payload."""
    header, payload, _ = tokens["reader"].split(".")
    signature = tokens["invoker"].split(".")[2]
    refused(client, ".".join([header, payload, signature]), "signature")


def test_wrong_audience(client, tokens):
    assert decode_unverified(tokens["other-api"])["aud"] == "https://other.example.test"
    refused(client, tokens["other-api"], "aud")


def test_wrong_issuer(client, portcullis, foreign_issuer, client_secrets):
    """Same database, same keys, another issuer: only `iss` differs."""
    token = foreign_issuer.token("reader", client_secrets["reader"], scope="models:read")
    claims = decode_unverified(token)
    assert claims["iss"] == foreign_issuer.issuer != portcullis.issuer
    assert unverified_header(token)["kid"] in portcullis.jwks_kids()
    refused(client, token, "issuer")


def test_expired(portcullis, short_ttl, client_secrets):
    """A 2 s token from a process with the main issuer: refused once `exp` has passed."""
    token = short_ttl.token("reader", client_secrets["reader"], scope="models:read")
    claims = decode_unverified(token)
    assert claims["iss"] == portcullis.issuer and claims["exp"] - claims["iat"] == 2
    assert unverified_header(token)["kid"] in portcullis.jwks_kids()
    # Wait on the claim itself, not a guessed sleep.
    while time.time() < claims["exp"] + 0.2:
        time.sleep(0.1)
    refused(make_app(portcullis).test_client(), token, "expired")
    # The same token with a 60 s exp leeway: accepted, so expiry alone was the reason.
    lenient = make_app(portcullis, JWT_EXP_LEEWAY=60).test_client()
    assert lenient.get("/v1/models", headers=bearer(token)).status_code == 200


def test_foreign_key_with_a_real_kid(client, tokens):
    """Attacker's own EC key, the server's kid in the header: signature check fails."""
    real = tokens["invoker"]
    claims = decode_unverified(real)
    claims["scope"] = "models:read models:invoke"
    attacker = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(claims, attacker, algorithm="ES256",
                        headers={"kid": unverified_header(real)["kid"], "typ": "at+jwt"})
    refused(client, forged, "signature")


def test_rsa_header_on_an_ec_kid(client, portcullis, tokens):
    """alg RS256 with the kid of an ES256 key: refused before any signature math."""
    claims = decode_unverified(tokens["reader"])
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = unverified_header(tokens["reader"])["kid"]
    forged = jwt.encode(claims, attacker, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"})
    refused(client, forged, "does not match its key")
    # And the mirror image: ES256 on an RSA kid.
    rsa_kid = next(k["kid"] for k in real_jwks(portcullis) if k["kty"] == "RSA")
    forged = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                        headers={"kid": rsa_kid, "typ": "at+jwt"})
    refused(client, forged, "does not match its key")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_alg_none(client, tokens, alg):
    header = {"alg": alg, "typ": "at+jwt", "kid": unverified_header(tokens["invoker"])["kid"]}
    body = b64_json(decode_unverified(tokens["invoker"]))
    for signature in ("", b64(b"x")):
        refused(client, f"{b64_json(header)}.{body}.{signature}", "algorithm")


def _hs256(header: dict, claims: dict, secret: bytes) -> str:
    signing_input = f"{b64_json(header)}.{b64_json(claims)}".encode()
    return f"{signing_input.decode()}.{b64(hmac.new(secret, signing_input, hashlib.sha256).digest())}"


def test_hs256_with_the_public_key_as_secret(client, portcullis, tokens):
    """The classic confusion: HMAC keyed with the published public key."""
    kid = unverified_header(tokens["invoker"])["kid"]
    jwk = next(k for k in real_jwks(portcullis) if k["kid"] == kid)
    public = jwt.PyJWK(jwk).key
    candidates = [
        public.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo),
        public.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo),
        json.dumps(jwk).encode(),
    ]
    claims = decode_unverified(tokens["invoker"])
    for alg in ("HS256", "HS384", "HS512"):
        for secret in candidates:
            token = _hs256({"alg": alg, "typ": "at+jwt", "kid": kid}, claims, secret)
            refused(client, token, "algorithm")


@pytest.mark.parametrize("alg", ["ES384", "ES512", "PS256", "RS512", "EdDSA"])
def test_algorithms_outside_the_allow_list(client, tokens, alg):
    header = {"alg": alg, "typ": "at+jwt", "kid": unverified_header(tokens["reader"])["kid"]}
    token = f"{b64_json(header)}.{b64_json(decode_unverified(tokens['reader']))}.{b64(b'sig')}"
    refused(client, token, "algorithm")


def test_unknown_kid(client, tokens):
    claims = decode_unverified(tokens["reader"])
    forged = jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                        headers={"kid": "no-such-kid", "typ": "at+jwt"})
    refused(client, forged, "unknown key")


def test_token_in_query_string_is_not_accepted(client, tokens):
    r = client.get(f"/v1/models?access_token={tokens['reader']}")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == f'Bearer realm="inference", {RESOURCE_METADATA}'


def test_audience_is_configurable(portcullis, tokens):
    """The service for another audience refuses inference tokens and takes its own."""
    other = make_app(portcullis, INFERENCE_AUDIENCE="https://other.example.test").test_client()
    refused(other, tokens["reader"], "aud")
    # Past the audience check: the other-api token lacks models:read, so 403, not 401.
    r = other.get("/v1/models", headers=bearer(tokens["other-api"]))
    assert r.status_code == 403 and r.get_json()["error"] == "insufficient_scope"
    assert AUDIENCE != "https://other.example.test"
