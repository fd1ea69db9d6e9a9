"""DPoP-bound tokens (RFC 9449), at unit level: the tokens, the proofs and the issuer's keys are
made here (the issuer's JWKS is served from memory, as in test_verifier_checks.py). No Portcullis
process is needed. test_dpop_portcullis.py takes DPoP-bound tokens from a real Portcullis.
The tests of the building blocks alone (thumbprints, ath, URL normalization, the replay cache,
DPoPVerifier's options) moved to clients/python/tests/test_dpop.py with the verifier.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import subprocess
import sys
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from flask import Flask
from flask import request as flask_request

import app as service
from harness import RESOURCE_METADATA, ServedApp
from minted import AUDIENCE, ISSUER, Keys, claims, sign
from portcullis_verifier import (
    DPoPProofError, DPoPVerifier, MemoryReplayCache, ReplayCacheUnavailable, access_token_hash,
    jwk_thumbprint,
)
from portcullis_verifier.flask import PortcullisAuth, current_claims, scope_required

MODELS = "/v1/models"
PREDICT = "/v1/models/sentiment-small/predict"
BASE = "http://localhost"  # the Flask test client's default
ALGS = "ES256 RS256 PS256 EdDSA"
BOTH_SCOPES = "models:read models:invoke"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64_json(value) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def jwk_of(key) -> dict:
    """The JWK of a key, private members included when ``key`` is private."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        algorithm = jwt.algorithms.ECAlgorithm
    elif isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        algorithm = jwt.algorithms.RSAAlgorithm
    else:
        algorithm = jwt.algorithms.OKPAlgorithm
    return json.loads(algorithm.to_jwk(key))


_RSA_KEYS: dict[int, rsa.RSAPrivateKey] = {}


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    if bits not in _RSA_KEYS:  # RSA key generation is slow: one per size
        _RSA_KEYS[bits] = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _RSA_KEYS[bits]


class Holder:
    """A client's DPoP key. It signs proofs; its thumbprint is the token's ``cnf.jkt``."""

    MAKERS = {
        "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
        "ES384": lambda: ec.generate_private_key(ec.SECP384R1()),
        "RS256": rsa_key,
        "PS256": rsa_key,
        "EdDSA": ed25519.Ed25519PrivateKey.generate,
    }

    def __init__(self, alg: str = "ES256", private=None):
        self.alg = alg
        self.private = private if private is not None else self.MAKERS[alg]()
        self.jwk = jwk_of(self.private.public_key())
        self.jkt = jwk_thumbprint(self.jwk)

    def proof(self, method: str = "GET", url: str = BASE + MODELS, token: str | None = None,
              *, header: dict | None = None, drop: tuple[str, ...] = (), **extra) -> str:
        payload = {"jti": secrets.token_urlsafe(16), "htm": method, "htu": url,
                   "iat": int(time.time())}
        if token is not None:
            payload["ath"] = access_token_hash(token)
        payload.update(extra)
        for name in drop:
            payload.pop(name, None)
        headers = {"typ": "dpop+jwt", "jwk": self.jwk, **(header or {})}
        return jwt.encode(payload, self.private, algorithm=self.alg, headers=headers)


@pytest.fixture(scope="module")
def keys():
    return Keys()


@pytest.fixture(scope="module")
def holder():
    return Holder()


def serve_jwks(auth: PortcullisAuth, keys: Keys) -> None:
    body = json.dumps({"keys": [Keys.jwk(keys.ec, "ec-1", alg="ES256")]}).encode()
    auth.jwks._http_get = lambda url, etag: (200, {"Cache-Control": "max-age=300"}, body)


def make_service(keys: Keys, **config) -> Flask:
    """The example service (app.py), its issuer's JWKS served from memory."""
    settings = {"PORTCULLIS_ISSUER": ISSUER, "INFERENCE_AUDIENCE": AUDIENCE, "TESTING": True}
    settings.update(config)
    flask_app = service.create_app(settings)
    serve_jwks(flask_app.extensions["portcullis_auth"], keys)
    return flask_app


def bare_app(keys: Keys, config: dict | None = None, **options) -> Flask:
    """A minimal app built with PortcullisAuth(app, **options): for the constructor options."""
    flask_app = Flask("dpop-test")
    flask_app.config.update(PORTCULLIS_ISSUER=ISSUER, PORTCULLIS_AUDIENCE=AUDIENCE,
                            PORTCULLIS_REALM="inference", TESTING=True, **(config or {}))
    auth = PortcullisAuth(flask_app, **options)
    serve_jwks(auth, keys)

    @flask_app.get(MODELS)
    @scope_required("models:read")
    def models():
        return {"sub": current_claims()["sub"]}

    return flask_app


@pytest.fixture
def web(keys):
    """A test client of the example service (a fresh replay cache per test)."""
    return make_service(keys).test_client()


def bound_token(keys: Keys, holder: Holder | None, **overrides) -> str:
    """A token the issuer bound to ``holder``'s key (None: an unbound token)."""
    overrides.setdefault("scope", BOTH_SCOPES)
    if holder is not None:
        overrides.setdefault("cnf", {"jkt": holder.jkt})
    return sign(keys, claims(**overrides))


def dpop_call(client, token: str, proofs, *, method: str = "GET", path: str = MODELS, **kwargs):
    if isinstance(proofs, str):
        proofs = [proofs]
    headers = [("Authorization", f"DPoP {token}")] + [("DPoP", p) for p in proofs]
    if method == "POST":
        kwargs.setdefault("json", {"input": "a great day"})
    return client.open(path, method=method, headers=headers, **kwargs)


def challenges(r) -> list[tuple[str, dict[str, str]]]:
    """Every WWW-Authenticate challenge: (scheme, params)."""
    out = []
    for value in r.headers.getlist("WWW-Authenticate"):
        scheme, _, rest = value.partition(" ")
        out.append((scheme, dict(re.findall(r'(\w+)="([^"]*)"', rest))))
    return out


def refused(r, scheme: str, error: str, text: str | None = None, status: int = 401) -> dict:
    """Asserts one challenge in ``scheme`` with ``error``; returns its params."""
    assert r.status_code == status, r.get_data(as_text=True)
    [(got_scheme, params)] = challenges(r)
    assert got_scheme == scheme, r.headers.getlist("WWW-Authenticate")
    assert params["realm"] == "inference"
    assert params["error"] == error, params
    if scheme == "DPoP":
        assert params["algs"] == ALGS
    else:
        assert "algs" not in params
    body = r.get_json()
    assert body["error"] == error
    if text is not None:
        assert text in params["error_description"], params
        assert body["error_description"] == params["error_description"]
    return params


def bad_proof(r, text: str | None = None) -> dict:
    return refused(r, "DPoP", "invalid_dpop_proof", text)


# --------------------------------------------------------------------------------------------
# The accepted cases


def test_good_dpop_request(web, keys, holder):
    token = bound_token(keys, holder)
    r = dpop_call(web, token, holder.proof(token=token))
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers.get("WWW-Authenticate") is None
    assert r.get_json()["object"] == "list"
    # POST, with the predict URL in htu.
    r = dpop_call(web, token, holder.proof("POST", BASE + PREDICT, token), method="POST",
                  path=PREDICT)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json()["client_id"] == "svc"


@pytest.mark.parametrize("alg", ["EdDSA", "RS256", "PS256"])
def test_other_proof_algorithms(web, keys, alg):
    holder = Holder(alg)
    token = bound_token(keys, holder)
    r = dpop_call(web, token, holder.proof(token=token))
    assert r.status_code == 200, r.get_data(as_text=True)


def test_ed448_proof(web, keys):
    holder = Holder("EdDSA", ed448.Ed448PrivateKey.generate())
    token = bound_token(keys, holder)
    assert dpop_call(web, token, holder.proof(token=token)).status_code == 200


@pytest.mark.parametrize("htu", [
    BASE + MODELS + "?page=2",  # the request has another query: query is ignored
    BASE + MODELS + "?page=2#top",
    BASE + MODELS + "#top",
    "HTTP://LOCALHOST/v1/models",  # scheme and host are case-insensitive
    "http://localhost:80/v1/models",  # the default port
    "http://localhost/v1/%6Dodels",  # percent-encoding of the same path
])
def test_htu_equivalents_pass(web, keys, holder, htu):
    token = bound_token(keys, holder)
    r = dpop_call(web, token, holder.proof(url=htu, token=token), path=MODELS + "?page=3")
    assert r.status_code == 200, r.get_data(as_text=True)


@pytest.mark.parametrize("typ", ["dpop+jwt", "DPoP+JWT", "application/dpop+jwt"])
def test_typ_accepted(web, keys, holder, typ):
    token = bound_token(keys, holder)
    assert dpop_call(web, token, holder.proof(token=token, header={"typ": typ})).status_code == 200


def test_iat_window(web, keys, holder):
    """Default window: 60 s in the past, 5 s in the future."""
    token = bound_token(keys, holder)
    now = int(time.time())
    assert dpop_call(web, token, holder.proof(token=token, iat=now - 50)).status_code == 200
    assert dpop_call(web, token, holder.proof(token=token, iat=now + 3)).status_code == 200
    bad_proof(dpop_call(web, token, holder.proof(token=token, iat=now - 61)), "too old")
    bad_proof(dpop_call(web, token, holder.proof(token=token, iat=now + 6)), "future")


def test_iat_window_is_configurable(keys, holder):
    web = make_service(keys, DPOP_MAX_AGE=5, DPOP_MAX_FUTURE=0).test_client()
    token = bound_token(keys, holder)
    now = int(time.time())
    bad_proof(dpop_call(web, token, holder.proof(token=token, iat=now - 10)), "too old")
    bad_proof(dpop_call(web, token, holder.proof(token=token, iat=now + 2)), "future")
    assert dpop_call(web, token, holder.proof(token=token, iat=now - 2)).status_code == 200


# --------------------------------------------------------------------------------------------
# Proof checks (RFC 9449 §4.3): 401 invalid_dpop_proof


def test_wrong_htm(web, keys, holder):
    token = bound_token(keys, holder)
    bad_proof(dpop_call(web, token, holder.proof("POST", token=token)), "htm")
    bad_proof(dpop_call(web, token, holder.proof("get", token=token)), "htm")  # case-sensitive
    # A GET proof for the predict URL does not authorize the POST.
    r = dpop_call(web, token, holder.proof("GET", BASE + PREDICT, token), method="POST",
                  path=PREDICT)
    bad_proof(r, "htm")


@pytest.mark.parametrize("htu", [
    BASE + PREDICT,  # another path
    BASE + "/v1/models/",  # a trailing slash is another path
    "https://localhost/v1/models",  # another scheme
    "http://localhost:8080/v1/models",  # another port
    "http://evil.example.test/v1/models",  # another host
    "http://user@localhost/v1/models",  # userinfo is never part of a request URL
    "/v1/models",  # not absolute
    "ftp://localhost/v1/models",
    "",
])
def test_wrong_htu(web, keys, holder, htu):
    token = bound_token(keys, holder)
    bad_proof(dpop_call(web, token, holder.proof(url=htu, token=token)), "htu")


def test_missing_and_wrong_ath(web, keys, holder):
    token = bound_token(keys, holder)
    other = bound_token(keys, holder, jti="another-token")
    bad_proof(dpop_call(web, token, holder.proof(token=token, drop=("ath",))), "lacks the ath")
    bad_proof(dpop_call(web, token, holder.proof(token=other)), "ath does not match")
    bad_proof(dpop_call(web, token, holder.proof(token=token, ath=b64(b"x" * 32))), "ath")
    bad_proof(dpop_call(web, token, holder.proof(token=token, ath=None)), "lacks the ath")


@pytest.mark.parametrize("claim", ["jti", "htm", "htu", "iat"])
def test_missing_claims(web, keys, holder, claim):
    token = bound_token(keys, holder)
    bad_proof(dpop_call(web, token, holder.proof(token=token, drop=(claim,))), f"lacks the {claim}")


@pytest.mark.parametrize(("claim", "value"), [
    ("jti", ""), ("jti", 12), ("jti", "x" * 257), ("htm", ["GET"]), ("htu", None),
    ("iat", "now"), ("iat", True), ("iat", None),
])
def test_malformed_claims(web, keys, holder, claim, value):
    token = bound_token(keys, holder)
    bad_proof(dpop_call(web, token, holder.proof(token=token, **{claim: value})), claim)


def test_replayed_jti(web, keys, holder):
    token = bound_token(keys, holder)
    proof = holder.proof(token=token)
    assert dpop_call(web, token, proof).status_code == 200
    bad_proof(dpop_call(web, token, proof), "already used")
    # The same jti in a new proof, still within the window: a replay too.
    jti = jwt.decode(proof, options={"verify_signature": False})["jti"]
    again = holder.proof(token=token, jti=jti)
    bad_proof(dpop_call(web, token, again), "already used")
    # Fresh proofs keep working.
    assert dpop_call(web, token, holder.proof(token=token)).status_code == 200


def test_proof_signed_by_another_key_than_cnf_jkt(web, keys, holder):
    """A valid proof of another key: the token is not bound to it (RFC 9449 §7.1's example
    answers this with invalid_token, "Invalid DPoP key binding")."""
    token = bound_token(keys, holder)
    thief = Holder()
    refused(dpop_call(web, token, thief.proof(token=token)), "DPoP", "invalid_token",
            "bound to another key")


def test_jwk_of_one_key_signature_of_another(web, keys, holder):
    """The header names the bound key, but the thief signs with its own: bad signature."""
    token = bound_token(keys, holder)
    thief = Holder()
    forged = thief.proof(token=token, header={"jwk": holder.jwk})
    bad_proof(dpop_call(web, token, forged), "signature")


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_private_key_in_jwk(web, keys, alg):
    holder = Holder(alg)
    private_jwk = jwk_of(holder.private)
    assert "d" in private_jwk
    token = bound_token(keys, holder)
    proof = holder.proof(token=token, header={"jwk": private_jwk})
    bad_proof(dpop_call(web, token, proof), "private key")


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "oth", "k"])
def test_any_private_member_is_refused(web, keys, holder, member):
    token = bound_token(keys, holder)
    proof = holder.proof(token=token, header={"jwk": {**holder.jwk, member: "AQAB"}})
    bad_proof(dpop_call(web, token, proof), "private key")


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt", "dpop+jwt; x", "", None, 1])
def test_wrong_typ(web, keys, holder, typ):
    token = bound_token(keys, holder)
    bad_proof(dpop_call(web, token, holder.proof(token=token, header={"typ": typ})), "typ")


def _unsigned(header: dict, payload: dict, secret: bytes | None) -> str:
    """A proof with any header: HMAC-signed with ``secret``, or unsigned (alg none)."""
    signing_input = f"{b64_json(header)}.{b64_json(payload)}"
    signature = "" if secret is None else \
        b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())
    return f"{signing_input}.{signature}"


@pytest.mark.parametrize("alg", ["none", "None", "HS256", "HS512"])
def test_alg_none_and_hmac(web, keys, holder, alg):
    token = bound_token(keys, holder)
    payload = jwt.decode(holder.proof(token=token), options={"verify_signature": False})
    secret = None if alg.lower() == "none" else json.dumps(holder.jwk).encode()
    for jwk in (holder.jwk, {"kty": "oct", "k": b64(b"s" * 32)}):
        proof = _unsigned({"typ": "dpop+jwt", "alg": alg, "jwk": jwk}, payload, secret)
        bad_proof(dpop_call(web, token, proof), "algorithm")


def test_algorithms_outside_the_allow_list(web, keys):
    holder = Holder("ES384")
    token = bound_token(keys, holder)
    bad_proof(dpop_call(web, token, holder.proof(token=token)), "algorithm")


def test_jwk_must_match_alg(web, keys, holder):
    token = bound_token(keys, holder)
    rsa_holder = Holder("RS256")
    # An EC jwk with an RSA alg (and the signature made by the RSA key).
    proof = rsa_holder.proof(token=token, header={"jwk": holder.jwk})
    bad_proof(dpop_call(web, token, proof), "does not match its algorithm")
    # A jwk whose own alg member contradicts the header.
    proof = holder.proof(token=token, header={"jwk": {**holder.jwk, "alg": "ES384"}})
    bad_proof(dpop_call(web, token, proof), "does not match its algorithm")


def test_bad_jwk(web, keys, holder):
    token = bound_token(keys, holder)
    not_on_curve = {**holder.jwk, "y": holder.jwk["x"]}
    bad_proof(dpop_call(web, token, holder.proof(token=token, header={"jwk": not_on_curve})),
              "not a valid public key")
    bad_proof(dpop_call(web, token, holder.proof(token=token, header={"jwk": "a key"})), "jwk")
    bad_proof(dpop_call(web, token, holder.proof(token=token, header={"jwk": None})), "jwk")
    # PyJWT refuses a crit it does not know while reading the header.
    bad_proof(dpop_call(web, token, holder.proof(token=token, header={"crit": ["exp"], "exp": 1})))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # when signing
def test_short_rsa_key(web, keys):
    holder = Holder("RS256", rsa_key(1024))
    token = bound_token(keys, holder)
    bad_proof(dpop_call(web, token, holder.proof(token=token)), "2048")


def test_dpop_header_count(web, keys, holder):
    token = bound_token(keys, holder)
    one, two = holder.proof(token=token), holder.proof(token=token)
    bad_proof(dpop_call(web, token, [one, two]), "exactly one DPoP header")
    bad_proof(dpop_call(web, token, []), "exactly one DPoP header")
    # Two headers that a proxy joined into one value.
    bad_proof(dpop_call(web, token, f"{one}, {two}"), "exactly one DPoP header")
    # Neither was spent: each still works alone.
    assert dpop_call(web, token, one).status_code == 200


@pytest.mark.parametrize("proof", ["not-a-jwt", "a.b.c", "", "x" * 9000])
def test_malformed_proof(web, keys, holder, proof):
    token = bound_token(keys, holder)
    bad_proof(dpop_call(web, token, proof))


# --------------------------------------------------------------------------------------------
# Token and scheme checks: 401 invalid_token


def test_bound_token_as_bearer(web, keys, holder):
    token = bound_token(keys, holder)
    r = web.get(MODELS, headers={"Authorization": f"Bearer {token}"})
    params = refused(r, "Bearer", "invalid_token")
    assert params["error_description"] == "DPoP-bound token presented as a bearer token"
    # Also with a valid proof alongside: the Bearer scheme is the downgrade.
    r = web.get(MODELS, headers={"Authorization": f"Bearer {token}",
                                 "DPoP": holder.proof(token=token)})
    refused(r, "Bearer", "invalid_token", "DPoP-bound token presented as a bearer token")


def test_other_confirmation_as_bearer(web, keys):
    token = bound_token(keys, None, cnf={"x5t#S256": b64(b"c" * 32)})
    refused(web.get(MODELS, headers={"Authorization": f"Bearer {token}"}), "Bearer",
            "invalid_token", "cnf")


def test_unbound_token_as_dpop(web, keys, holder):
    token = bound_token(keys, None)
    refused(dpop_call(web, token, holder.proof(token=token)), "DPoP", "invalid_token",
            "not DPoP-bound")
    # And the same token as a bearer token: fine, as before.
    assert web.get(MODELS, headers={"Authorization": f"Bearer {token}"}).status_code == 200


@pytest.mark.parametrize("cnf", [{"jkt": ""}, {"jkt": 1}, {"x5t#S256": "abc"}, "jkt", []])
def test_malformed_cnf_as_dpop(web, keys, holder, cnf):
    token = bound_token(keys, holder, cnf=cnf)
    refused(dpop_call(web, token, holder.proof(token=token)), "DPoP", "invalid_token",
            "not DPoP-bound")


def test_token_failures_on_a_dpop_request(web, keys, holder):
    """The token's own checks answer in the DPoP scheme."""
    expired = bound_token(keys, holder, exp=int(time.time()) - 5)
    refused(dpop_call(web, expired, holder.proof(token=expired)), "DPoP", "invalid_token",
            "expired")
    foreign = bound_token(keys, holder, aud="https://other.example.test")
    refused(dpop_call(web, foreign, holder.proof(token=foreign)), "DPoP", "invalid_token", "aud")
    header, payload, signature = bound_token(keys, holder).split(".")
    tampered = ".".join([header, b64_json({**claims(scope=BOTH_SCOPES, sub="admin"),
                                           "cnf": {"jkt": holder.jkt}}), signature])
    refused(dpop_call(web, tampered, holder.proof(token=tampered)), "DPoP", "invalid_token",
            "signature")


def test_insufficient_scope_on_a_dpop_request(web, keys, holder):
    token = bound_token(keys, holder, scope="models:read")
    r = dpop_call(web, token, holder.proof("POST", BASE + PREDICT, token), method="POST",
                  path=PREDICT)
    params = refused(r, "DPoP", "insufficient_scope", status=403)
    assert params["scope"] == "models:invoke"


def test_malformed_dpop_authorization(web, keys, holder):
    token = bound_token(keys, holder)
    for value in ("DPoP", "DPoP ", f"DPoP {token} extra", "DPoP t\u00f6ken"):
        r = web.get(MODELS, headers=[("Authorization", value), ("DPoP", holder.proof(token=token))])
        refused(r, "DPoP", "invalid_request", status=400)
    # The scheme is case-insensitive.
    r = web.get(MODELS, headers={"Authorization": f"dpop {token}",
                                 "DPoP": holder.proof(token=token)})
    assert r.status_code == 200


# --------------------------------------------------------------------------------------------
# Challenges and modes


def test_no_credentials_advertise_both_schemes(web):
    r = web.get(MODELS)
    assert r.status_code == 401 and r.get_json()["error"] == "unauthorized"
    assert r.headers.getlist("WWW-Authenticate") == [
        f'Bearer realm="inference", {RESOURCE_METADATA}',
        f'DPoP realm="inference", algs="{ALGS}", {RESOURCE_METADATA}']
    # Another scheme: the same two challenges.
    r = web.get(MODELS, headers={"Authorization": "Basic cmVhZGVyOnNlY3JldA=="})
    assert len(r.headers.getlist("WWW-Authenticate")) == 2


def test_mode_required(keys, holder):
    web = make_service(keys, DPOP_MODE="required").test_client()
    token = bound_token(keys, holder)
    assert dpop_call(web, token, holder.proof(token=token)).status_code == 200
    unbound = bound_token(keys, None)
    for headers in ({}, {"Authorization": f"Bearer {unbound}"}):
        r = web.get(MODELS, headers=headers)
        assert r.status_code == 401
        assert r.headers.getlist("WWW-Authenticate") == [
            f'DPoP realm="inference", algs="{ALGS}", {RESOURCE_METADATA}']


def test_mode_disabled(keys, holder):
    web = make_service(keys, DPOP_MODE="disabled").test_client()
    token = bound_token(keys, holder)
    r = dpop_call(web, token, holder.proof(token=token))
    assert r.status_code == 401
    assert r.headers.getlist("WWW-Authenticate") == [
        f'Bearer realm="inference", {RESOURCE_METADATA}']
    # Bearer tokens work as before; a bound token is still no bearer token.
    unbound = bound_token(keys, None)
    assert web.get(MODELS, headers={"Authorization": f"Bearer {unbound}"}).status_code == 200
    refused(web.get(MODELS, headers={"Authorization": f"Bearer {token}"}), "Bearer",
            "invalid_token", "DPoP-bound")


def test_unknown_mode_refused():
    with pytest.raises(RuntimeError, match="DPOP_MODE"):
        service.create_app({"PORTCULLIS_ISSUER": ISSUER, "DPOP_MODE": "sometimes"})


# --------------------------------------------------------------------------------------------
# The request URL: behind a proxy, and under a script root


def test_external_base_url_config(keys, holder):
    web = make_service(keys, EXTERNAL_BASE_URL="https://api.example.test/inference/").test_client()
    token = bound_token(keys, holder)
    public = "https://api.example.test/inference/v1/models"
    assert dpop_call(web, token, holder.proof(url=public, token=token)).status_code == 200
    # The URL the app itself sees is not the one clients use: refused.
    bad_proof(dpop_call(web, token, holder.proof(token=token)), "htu")
    bad_proof(dpop_call(web, token, holder.proof(url="https://api.example.test/v1/models",
                                                 token=token)), "htu")


def test_external_base_url_constructor_option(keys, holder):
    web = bare_app(keys, external_base_url="https://api.example.test:8443").test_client()
    token = bound_token(keys, holder)
    url = "https://api.example.test:8443/v1/models"
    assert dpop_call(web, token, holder.proof(url=url, token=token)).status_code == 200
    bad_proof(dpop_call(web, token, holder.proof(token=token)), "htu")


@pytest.mark.parametrize("base", ["api.example.test", "ftp://x.test", "https://x.test/?a=1"])
def test_bad_external_base_url(keys, base):
    with pytest.raises(RuntimeError, match="EXTERNAL_BASE_URL"):
        make_service(keys, EXTERNAL_BASE_URL=base)


def test_default_url_is_the_request_url(web, keys, holder):
    """Without EXTERNAL_BASE_URL: scheme, Host and script root of the request (base_url)."""
    token = bound_token(keys, holder)
    base = "https://svc.example.test:8443/prefix"
    r = dpop_call(web, token, holder.proof(url=base + MODELS, token=token), base_url=base)
    assert r.status_code == 200, r.get_data(as_text=True)
    r = dpop_call(web, token, holder.proof(url=BASE + MODELS, token=token), base_url=base)
    bad_proof(r, "htu")


# --------------------------------------------------------------------------------------------
# The replay cache


def test_replay_cache_is_shared_between_instances(keys, holder):
    """Two instances, one cache: a proof spent at one is refused at the other."""
    shared = MemoryReplayCache()
    first = bare_app(keys, replay_cache=shared).test_client()
    second = bare_app(keys, replay_cache=shared).test_client()
    token = bound_token(keys, holder)
    proof = holder.proof(token=token)
    assert dpop_call(first, token, proof).status_code == 200
    bad_proof(dpop_call(second, token, proof), "already used")
    # With a cache each, the same proof would pass once per instance: the caveat in the docs.
    alone = bare_app(keys).test_client()
    assert dpop_call(alone, token, proof).status_code == 200


def test_replay_cache_interface(keys, holder):
    """Any object with add(jkt, jti, ttl) -> bool will do."""

    class Recording:
        def __init__(self):
            self.calls = []

        def add(self, jkt, jti, ttl):
            self.calls.append((jkt, jti, ttl))
            return len([c for c in self.calls if c[:2] == (jkt, jti)]) == 1

    cache = Recording()
    web = bare_app(keys, replay_cache=cache).test_client()
    token = bound_token(keys, holder)
    proof = holder.proof(token=token)
    assert dpop_call(web, token, proof).status_code == 200
    jti = jwt.decode(proof, options={"verify_signature": False})["jti"]
    assert cache.calls == [(holder.jkt, jti, 66.0)]  # the window: 60 s + 5 s, + 1 s
    bad_proof(dpop_call(web, token, proof), "already used")
    # A refused proof is never recorded.
    dpop_call(web, token, holder.proof("POST", token=token))
    assert len(cache.calls) == 2


def test_replay_cache_unavailable(keys, holder):
    """A cache that cannot answer (full, backend down): 503, never a silent pass."""
    web = bare_app(keys, config={"PORTCULLIS_DPOP_REPLAY_CACHE_SIZE": 1}).test_client()
    token = bound_token(keys, holder)
    assert dpop_call(web, token, holder.proof(token=token)).status_code == 200
    r = dpop_call(web, token, holder.proof(token=token))
    assert r.status_code == 503 and r.headers["Retry-After"] == "10"
    assert r.get_json()["error"] == "temporarily_unavailable"
    assert "WWW-Authenticate" not in r.headers

    class Down:
        def add(self, jkt, jti, ttl):
            raise ReplayCacheUnavailable("connection refused")

    web = bare_app(keys, replay_cache=Down()).test_client()
    assert dpop_call(web, token, holder.proof(token=token)).status_code == 503


# --------------------------------------------------------------------------------------------
# client.py --dpop, against a stand-in issuer (one that can also answer a plain Bearer token);
# test_dpop_portcullis.py runs it against Portcullis

CLIENT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "client.py")


def stand_in_issuer(keys: Keys, token_type: str = "DPoP") -> Flask:
    """Discovery, a JWKS and a token endpoint that checks the DPoP proof and binds the token."""
    issuer_app = Flask("stand-in-issuer")
    proofs = DPoPVerifier()

    def issuer() -> str:
        return flask_request.host_url.rstrip("/")

    @issuer_app.get("/.well-known/oauth-authorization-server")
    def metadata():
        return {"issuer": issuer(), "token_endpoint": f"{issuer()}/token"}

    @issuer_app.get("/.well-known/jwks.json")
    def jwks():
        return {"keys": [Keys.jwk(keys.ec, "ec-1", alg="ES256")]}

    @issuer_app.post("/token")
    def token():
        auth = flask_request.authorization
        if auth is None or (auth.username, auth.password) != ("invoker", "s3cret"):
            return {"error": "invalid_client"}, 401
        cnf = None
        if "DPoP" in flask_request.headers:  # without a proof: a plain bearer token
            try:
                proof = proofs.verify(flask_request.headers.getlist("DPoP"), method="POST",
                                      url=flask_request.base_url)
            except DPoPProofError as e:
                return {"error": "invalid_dpop_proof", "error_description": e.description}, 400
            if "ath" in proof.claims or not proofs.replay_cache.add(proof.jkt, proof.jti,
                                                                    proofs.replay_window):
                return {"error": "invalid_dpop_proof"}, 400
            cnf = {"jkt": proof.jkt}
        payload = claims(iss=issuer(), sub="invoker", client_id="invoker",
                         aud=flask_request.form["resource"], scope=flask_request.form["scope"],
                         cnf=cnf)
        return {"access_token": sign(keys, payload), "token_type": token_type if cnf else "Bearer",
                "expires_in": 300, "scope": flask_request.form["scope"]}

    return issuer_app


@pytest.fixture
def served(keys, request):
    token_type = getattr(request, "param", "DPoP")
    issuer = ServedApp(stand_in_issuer(keys, token_type))
    api = ServedApp(service.create_app({"PORTCULLIS_ISSUER": issuer.url,
                                        "INFERENCE_AUDIENCE": AUDIENCE}))
    try:
        yield issuer, api
    finally:
        api.close()
        issuer.close()


def run_client(issuer, api, *args):
    env = {**os.environ, "PORTCULLIS_ISSUER": issuer.url, "SERVICE_URL": api.url,
           "CLIENT_ID": "invoker", "CLIENT_SECRET": "s3cret", "INFERENCE_AUDIENCE": AUDIENCE}
    return subprocess.run([sys.executable, CLIENT, *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_client_dpop_mode(served):
    issuer, api = served
    result = run_client(issuer, api, "--dpop")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "token: token_type='DPoP'" in result.stdout
    assert "GET /v1/models -> 200" in result.stdout
    assert "POST /v1/models/sentiment-small/predict -> 200" in result.stdout
    # Without --dpop: a bearer token, accepted as before.
    result = run_client(issuer, api)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "token: scope='models:read models:invoke' expires_in=300" in result.stdout
    assert "POST /v1/models/sentiment-small/predict -> 200" in result.stdout


@pytest.mark.parametrize("served", ["Bearer"], indirect=True)
def test_client_dpop_mode_needs_a_bound_token(served):
    """A server that ignores the proof answers token_type Bearer: the client says so."""
    issuer, api = served
    result = run_client(issuer, api, "--dpop")
    assert result.returncode != 0
    assert "token_type 'Bearer', not 'DPoP'" in result.stdout + result.stderr


def test_client_proofs_pass_the_verifier():
    import client

    key = client.DPoPKey()
    url = "https://rs.example.test/v1/models"
    proof = DPoPVerifier().verify(key.proof("GET", url + "?page=2", "tok"), method="GET",
                                  url=url, access_token="tok")
    assert proof.jkt == jwk_thumbprint(key.public_jwk)
    assert "?" not in proof.claims["htu"]
