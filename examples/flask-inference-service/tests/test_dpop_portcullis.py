"""DPoP end to end: DPoP-bound client-credentials tokens from a real Portcullis process, then the
service over real HTTP (threaded werkzeug). The proofs are made by ``client.DPoPKey``, the
kit's own client (PyJWT + cryptography). test_dpop.py checks every rule with self-minted
tokens; here the tokens, ``cnf.jkt`` and the token endpoint's proof checks are Portcullis's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import jwt
import pytest
import requests

import client as kit_client
from harness import AUDIENCE, ServedApp, decode_unverified, make_app
from portcullis_verifier import jwk_thumbprint

SCOPES = "models:read models:invoke"
CLIENT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "client.py")


@pytest.fixture(scope="module")
def served(portcullis):
    """The service on a real socket: proofs name the URL a client really uses."""
    served = ServedApp(make_app(portcullis))
    try:
        yield served
    finally:
        served.close()


def dpop_token_response(portcullis, secret: str, key: kit_client.DPoPKey, *,
                        proof: str | None = None) -> requests.Response:
    """POST /token (client credentials as `invoker`) with a DPoP proof of ``key``."""
    url = f"{portcullis.base_url}/token"
    return requests.post(
        url, auth=("invoker", secret),
        data={"grant_type": "client_credentials", "scope": SCOPES, "resource": AUDIENCE},
        headers={"DPoP": proof or key.proof("POST", url)}, timeout=15)


@pytest.fixture
def holder():
    return kit_client.DPoPKey()


@pytest.fixture
def bound(portcullis, client_secrets, holder) -> str:
    """A DPoP-bound access token for ``holder``'s key, from Portcullis."""
    r = dpop_token_response(portcullis, client_secrets["invoker"], holder)
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "DPoP"
    return r.json()["access_token"]


def call(served, token: str, *, scheme: str = "DPoP", proof: str | None = None,
         method: str = "GET", path: str = "/v1/models") -> requests.Response:
    headers = {"Authorization": f"{scheme} {token}"}
    if proof is not None:
        headers["DPoP"] = proof
    body = {"json": {"input": "a great day"}} if method == "POST" else {}
    return requests.request(method, served.url + path, headers=headers, timeout=15, **body)


def challenge(r: requests.Response) -> tuple[str, dict[str, str]]:
    """The one WWW-Authenticate challenge of ``r``: (scheme, params)."""
    values = r.raw.headers.getlist("WWW-Authenticate")
    assert len(values) == 1, values
    scheme, _, rest = values[0].partition(" ")
    return scheme, dict(re.findall(r'(\w+)="([^"]*)"', rest))


def test_portcullis_binds_the_token_to_the_proof_key(portcullis, bound, holder):
    claims = decode_unverified(bound)
    assert claims["cnf"] == {"jkt": jwk_thumbprint(holder.public_jwk)}
    assert claims["aud"] == AUDIENCE
    assert set(claims["scope"].split()) == set(SCOPES.split())


def test_bound_token_with_its_proofs(served, bound, holder):
    url = served.url + "/v1/models"
    r = call(served, bound, proof=holder.proof("GET", url, bound))
    assert r.status_code == 200, r.text
    assert r.json()["data"]
    predict = served.url + "/v1/models/sentiment-small/predict"
    r = call(served, bound, method="POST", path="/v1/models/sentiment-small/predict",
             proof=holder.proof("POST", predict, bound))
    assert r.status_code == 200, r.text
    assert r.json()["client_id"] == "invoker"


def test_bound_token_as_bearer_is_refused(served, bound, holder):
    """RFC 9449 §7.2: a DPoP-bound token presented as a bearer token is rejected. The kit
    answers in the Bearer scheme it was sent (README, Errors), with or without a proof."""
    for proof in (None, holder.proof("GET", served.url + "/v1/models", bound)):
        r = call(served, bound, scheme="Bearer", proof=proof)
        assert r.status_code == 401, r.text
        scheme, params = challenge(r)
        assert (scheme, params["error"]) == ("Bearer", "invalid_token")
        assert params["error_description"] == "DPoP-bound token presented as a bearer token"
        assert r.json()["error"] == "invalid_token"


def test_replayed_proof_is_refused(served, bound, holder):
    proof = holder.proof("GET", served.url + "/v1/models", bound)
    assert call(served, bound, proof=proof).status_code == 200
    r = call(served, bound, proof=proof)
    assert r.status_code == 401
    scheme, params = challenge(r)
    assert (scheme, params["error"]) == ("DPoP", "invalid_dpop_proof")
    assert "already used" in params["error_description"]
    assert params["algs"] == "ES256 RS256 PS256 EdDSA"
    # A fresh proof still works.
    fresh = holder.proof("GET", served.url + "/v1/models", bound)
    assert call(served, bound, proof=fresh).status_code == 200


def test_proof_by_another_key_is_refused(served, bound):
    """A well-formed proof (right htm, htu, ath) by a key the token is not bound to: the
    binding fails, an invalid token (RFC 9449 §7.1), in the DPoP scheme."""
    thief = kit_client.DPoPKey()
    r = call(served, bound, proof=thief.proof("GET", served.url + "/v1/models", bound))
    assert r.status_code == 401
    scheme, params = challenge(r)
    assert (scheme, params["error"]) == ("DPoP", "invalid_token")
    assert "another key" in params["error_description"]


def test_dpop_scheme_without_a_proof_is_refused(served, bound):
    r = call(served, bound)
    assert r.status_code == 401
    scheme, params = challenge(r)
    assert (scheme, params["error"]) == ("DPoP", "invalid_dpop_proof")


def test_the_token_request_proof_is_no_good_at_the_service(portcullis, client_secrets, served,
                                                           holder):
    """The proof sent to Portcullis's token endpoint names POST /token and carries no ath."""
    token_proof = holder.proof("POST", f"{portcullis.base_url}/token")
    r = dpop_token_response(portcullis, client_secrets["invoker"], holder, proof=token_proof)
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    r = call(served, token, proof=token_proof)
    assert r.status_code == 401
    assert challenge(r)[1]["error"] == "invalid_dpop_proof"


def test_portcullis_refuses_a_replayed_token_request_proof(portcullis, client_secrets, holder):
    """The same proof twice at the token endpoint: the second is a replay (RFC 9449 §11.1)."""
    proof = holder.proof("POST", f"{portcullis.base_url}/token")
    first = dpop_token_response(portcullis, client_secrets["invoker"], holder, proof=proof)
    assert first.status_code == 200, first.text
    again = dpop_token_response(portcullis, client_secrets["invoker"], holder, proof=proof)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_dpop_proof"


def test_proof_for_another_url_is_refused_by_portcullis(portcullis, client_secrets, holder):
    """A proof whose htu is not Portcullis's token endpoint is refused."""
    proof = holder.proof("POST", "http://127.0.0.1:9/token")
    r = dpop_token_response(portcullis, client_secrets["invoker"], holder, proof=proof)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_dpop_proof"


def test_client_script_dpop_end_to_end(portcullis, client_secrets, served):
    env = {**os.environ, "PORTCULLIS_ISSUER": portcullis.issuer, "CLIENT_ID": "invoker",
           "CLIENT_SECRET": client_secrets["invoker"], "SERVICE_URL": served.url,
           "INFERENCE_AUDIENCE": AUDIENCE}
    result = subprocess.run([sys.executable, CLIENT, "--dpop"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "token: token_type='DPoP' scope='models:read models:invoke'" in result.stdout
    assert "GET /v1/models -> 200" in result.stdout
    assert "POST /v1/models/sentiment-small/predict -> 200" in result.stdout
    assert '"client_id":"invoker"' in result.stdout


def test_unbound_portcullis_token_is_still_a_bearer_token(portcullis, client_secrets, served,
                                                          holder):
    """Without a proof at /token: a plain bearer token, refused in the DPoP scheme."""
    token = portcullis.token("invoker", client_secrets["invoker"], scope=SCOPES)
    assert "cnf" not in jwt.decode(token, options={"verify_signature": False})
    assert call(served, token, scheme="Bearer").status_code == 200
    r = call(served, token, proof=holder.proof("GET", served.url + "/v1/models", token))
    assert r.status_code == 401
    assert challenge(r)[1]["error"] == "invalid_token"
