"""Tokens and keys made in the tests, for a JWKS served from memory (no Portcullis process).

The verifier's own unit tests (typ, time claims, required claims, JWK rules) moved to
clients/python/tests/test_verifier.py with the verifier.
"""

from __future__ import annotations

import json
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

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
