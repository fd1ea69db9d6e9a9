"""DPoPVerifier and its building blocks (RFC 9449, RFC 7638), without any web framework.
(The building-block tests moved here from examples/flask-inference-service/tests/test_dpop.py;
the example keeps its tests of the proof checks through its HTTP endpoints.)"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519

from helpers import ALGS, Holder, jwk_of, rsa_key
from portcullis_verifier import (
    DPOP_ALGORITHMS,
    DPoPProofError,
    DPoPVerifier,
    MemoryReplayCache,
    ReplayCacheUnavailable,
    TokenError,
    access_token_hash,
    jwk_thumbprint,
    normalize_http_url,
)

URL = "https://rs.example.test/v1/models"
NOW = 1_000_000.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64_json(value: Any) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


@pytest.fixture
def verifier() -> DPoPVerifier:
    return DPoPVerifier(clock=lambda: NOW, replay_cache=MemoryReplayCache(clock=lambda: NOW))


def proof_of(holder: Holder, **kwargs: Any) -> str:
    kwargs.setdefault("url", URL)
    kwargs.setdefault("iat", int(NOW))
    return holder.proof(**kwargs)


def bad(verifier: DPoPVerifier, proof: Any, text: str = "", *, token: str | None = "tok",
        method: str = "GET") -> None:
    with pytest.raises(DPoPProofError) as e:
        verifier.verify(proof, method=method, url=URL, access_token=token)
    assert text in e.value.description, e.value.description


def test_good_proof_and_binding(verifier: DPoPVerifier, holder: Holder) -> None:
    proof = verifier.verify(proof_of(holder, token="tok"), method="GET", url=URL,
                            access_token="tok")
    assert proof.jkt == holder.jkt and proof.iat == NOW
    verifier.bind(proof, {"cnf": {"jkt": holder.jkt}})
    with pytest.raises(DPoPProofError, match="already used"):
        verifier.bind(proof, {"cnf": {"jkt": holder.jkt}})
    with pytest.raises(TokenError, match="not DPoP-bound"):
        verifier.bind(proof, {})
    with pytest.raises(TokenError, match="another key"):
        verifier.bind(proof, {"cnf": {"jkt": Holder().jkt}})


@pytest.mark.parametrize("alg", ["RS256", "PS256", "EdDSA"])
def test_other_algorithms(verifier: DPoPVerifier, alg: str) -> None:
    holder = Holder(alg)
    assert verifier.verify(proof_of(holder, token="tok"), method="GET", url=URL,
                           access_token="tok").jkt == holder.jkt


def test_ed448(verifier: DPoPVerifier) -> None:
    holder = Holder("EdDSA", ed448.Ed448PrivateKey.generate())
    verifier.verify(proof_of(holder, token="tok"), method="GET", url=URL, access_token="tok")


def test_claim_checks(verifier: DPoPVerifier, holder: Holder) -> None:
    bad(verifier, proof_of(holder, token="tok", method="POST"), "htm")
    bad(verifier, proof_of(holder, token="tok", method="get"), "htm")
    bad(verifier, proof_of(holder, token="tok", url=URL + "/x"), "htu")
    bad(verifier, proof_of(holder, token="tok", iat=int(NOW) - 61), "too old")
    bad(verifier, proof_of(holder, token="tok", iat=int(NOW) + 6), "future")
    bad(verifier, proof_of(holder, token="other"), "ath does not match")
    bad(verifier, proof_of(holder), "lacks the ath")
    for claim in ("jti", "htm", "htu", "iat"):
        bad(verifier, proof_of(holder, token="tok", drop=(claim,)), f"lacks the {claim}")
    bad(verifier, proof_of(holder, token="tok", jti="x" * 257), "jti")


def test_header_checks(verifier: DPoPVerifier, holder: Holder) -> None:
    for typ in ("JWT", "at+jwt", "", None):
        bad(verifier, proof_of(holder, token="tok", header={"typ": typ}), "typ")
    bad(verifier, proof_of(holder, token="tok", header={"jwk": jwk_of(holder.private)}),
        "private key")
    bad(verifier, proof_of(holder, token="tok", header={"jwk": {**holder.jwk, "k": "AQAB"}}),
        "private key")
    bad(verifier, proof_of(holder, token="tok", header={"jwk": None}), "jwk")
    bad(verifier, proof_of(holder, token="tok", header={"jwk": {**holder.jwk, "alg": "ES384"}}),
        "does not match its algorithm")
    thief = Holder()
    bad(verifier, proof_of(thief, token="tok", header={"jwk": holder.jwk}), "signature")
    bad(verifier, proof_of(Holder("ES384"), token="tok"), "algorithm")
    for proofs in ([], [proof_of(holder), proof_of(holder)], "a, b"):
        bad(verifier, proofs, "exactly one")
    bad(verifier, "x" * 9000, "too large")
    bad(verifier, "not-a-jwt", "well-formed")


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_unsigned_and_hmac_proofs(verifier: DPoPVerifier, holder: Holder, alg: str) -> None:
    payload = {"jti": "j", "htm": "GET", "htu": URL, "iat": int(NOW), "ath":
               access_token_hash("tok")}
    signing_input = f"{b64_json({'typ': 'dpop+jwt', 'alg': alg, 'jwk': holder.jwk})}." \
                    f"{b64_json(payload)}"
    secret = json.dumps(holder.jwk).encode()
    signature = "" if alg == "none" else \
        b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())
    bad(verifier, f"{signing_input}.{signature}", "algorithm")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_short_rsa_key(verifier: DPoPVerifier) -> None:
    bad(verifier, proof_of(Holder("RS256", rsa_key(1024)), token="tok"), "2048")


def test_memory_replay_cache_expires_and_is_bounded() -> None:
    now = [1000.0]
    cache = MemoryReplayCache(max_entries=2, clock=lambda: now[0])
    assert cache.add("k", "a", 10)
    assert not cache.add("k", "a", 10)
    assert cache.add("other-key", "a", 10)  # keyed by (jkt, jti)
    with pytest.raises(ReplayCacheUnavailable):
        cache.add("k", "b", 10)  # full of live entries: refuse rather than forget one
    now[0] += 10.5
    assert len(cache) == 0
    assert cache.add("k", "a", 10)  # expired: a new entry
    assert cache.add("k", "b", 10)
    assert len(cache) == 2
    with pytest.raises(ValueError):
        MemoryReplayCache(0)


def test_jti_is_kept_while_its_proof_is_acceptable(holder: Holder) -> None:
    now = [1_000_000.0]
    verifier = DPoPVerifier(replay_cache=MemoryReplayCache(clock=lambda: now[0]),
                            clock=lambda: now[0])
    url, token_claims = "https://rs.example.test/x", {"cnf": {"jkt": holder.jkt}}
    proof = holder.proof(url=url, iat=1_000_000 + 5)  # as far in the future as allowed
    verifier.bind(verifier.verify(proof, method="GET", url=url), token_claims)
    now[0] += 65  # iat + max_age: the proof is still acceptable, and still remembered
    with pytest.raises(DPoPProofError, match="already used"):
        verifier.bind(verifier.verify(proof, method="GET", url=url), token_claims)
    now[0] += 0.5
    with pytest.raises(DPoPProofError, match="too old"):
        verifier.verify(proof, method="GET", url=url)


def test_thumbprint_rfc7638_example() -> None:
    jwk = {  # RFC 7638 §3.1
        "kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1"
             "L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4"
             "QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbO"
             "pbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csF"
             "Cur-kEgU8awapJzKnqDKgw",
    }
    assert jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_thumbprint_members() -> None:
    ec_jwk = jwk_of(ec.generate_private_key(ec.SECP256R1()).public_key())
    expected = b64(hashlib.sha256(json.dumps(
        {k: ec_jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":")).encode()).digest())
    assert jwk_thumbprint({**ec_jwk, "kid": "x", "use": "sig"}) == expected
    okp = jwk_of(ed25519.Ed25519PrivateKey.generate().public_key())
    raw = f'{{"crv":"Ed25519","kty":"OKP","x":"{okp["x"]}"}}'.encode()
    assert jwk_thumbprint(okp) == b64(hashlib.sha256(raw).digest())
    bad_jwks: list[dict[str, Any]] = [{"kty": "oct", "k": "AA"},
                                      {"kty": "EC", "crv": "P-256", "x": "AA"}, {}]
    for bad_jwk in bad_jwks:
        with pytest.raises(ValueError):
            jwk_thumbprint(bad_jwk)


def test_ath_rfc9449_example() -> None:
    # RFC 9449 §7.1: the access token and the ath of its proof.
    assert access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU") == \
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"


def test_normalize_http_url() -> None:
    assert normalize_http_url("HTTPS://Api.Example.TEST:443/a/%62?q#f") == \
        ("https", "api.example.test", 443, "/a/b")
    assert normalize_http_url("http://[::1]:8080") == ("http", "::1", 8080, "/")
    bad_urls: list[Any] = ["mailto:x@y", "http://", "http://h:99999/", "http://u:p@h/", 5]
    for bad_url in bad_urls:
        assert normalize_http_url(bad_url) is None


def test_token_endpoint_proof_needs_no_ath(holder: Holder) -> None:
    """At a token endpoint there is no access token yet: ath is not checked."""
    url = "https://auth.example.test/token"
    proof = DPoPVerifier().verify([holder.proof("POST", url)], method="POST", url=url)
    assert proof.jkt == holder.jkt
    with pytest.raises(DPoPProofError, match="ath"):
        DPoPVerifier().verify([holder.proof("POST", url)], method="POST", url=url,
                              access_token="t")


def test_verifier_options(holder: Holder) -> None:
    with pytest.raises(ValueError):
        DPoPVerifier(algorithms=["HS256"])
    with pytest.raises(ValueError):
        DPoPVerifier(algorithms=[])
    with pytest.raises(ValueError):
        DPoPVerifier(max_age=0)
    es_only = DPoPVerifier(algorithms=["ES256"], clock=lambda: 1_000_000.0)
    url = "https://rs.example.test/x"
    proof = holder.proof(url=url, iat=1_000_000 - 59)
    assert es_only.verify(proof, method="GET", url=url).iat == 1_000_000 - 59
    with pytest.raises(DPoPProofError, match="algorithm"):
        es_only.verify(Holder("EdDSA").proof(url=url, iat=1_000_000), method="GET", url=url)
    assert DPOP_ALGORITHMS == tuple(ALGS.split())
    assert DPoPVerifier().replay_window == 66.0


def test_proofs_made_by_pyjwt_pass(holder: Holder) -> None:
    """A proof as any PyJWT client makes it (see examples/.../client.py)."""
    token = "tok"
    proof = jwt.encode({"jti": "j", "htm": "GET", "htu": URL + "?q=1", "iat": int(time.time()),
                        "ath": access_token_hash(token)}, holder.private, algorithm="ES256",
                       headers={"typ": "dpop+jwt", "jwk": holder.jwk})
    assert DPoPVerifier().verify(proof, method="GET", url=URL, access_token=token).jti == "j"
