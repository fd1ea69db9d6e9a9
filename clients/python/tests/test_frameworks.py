"""The Flask decorators and the FastAPI dependencies, side by side: every answer of the
resource server, through each framework's own test client."""

from __future__ import annotations

import pytest

from helpers import (
    ALGS,
    BASE,
    METADATA_URL,
    Holder,
    Keys,
    bound_token,
    challenges,
    claims,
    sign,
)
from portcullis_verifier import JWKSCache, MemoryReplayCache, ReplayCacheUnavailable
from webapps import FRAMEWORKS, Answer, Web, make_web

RM = f'resource_metadata="{METADATA_URL}"'
BEARER_401 = f'Bearer realm="inference", {RM}'
DPOP_401 = f'DPoP realm="inference", algs="{ALGS}", {RM}'


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def web(framework: str, keys: Keys) -> Web:
    return make_web(framework, keys)


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


def dpop(token: str, *proofs: str) -> list[tuple[str, str]]:
    return [("Authorization", f"DPoP {token}")] + [("DPoP", p) for p in proofs]


def refused(r: Answer, scheme: str, error: str, text: str | None = None,
            status: int = 401) -> dict[str, str]:
    """One challenge in ``scheme`` with ``error`` (and resource_metadata); its params."""
    assert r.status == status, r.body
    [(got, params)] = challenges(r.challenges)
    assert got == scheme, r.challenges
    assert params["realm"] == "inference"
    assert params["error"] == error
    assert params["resource_metadata"] == METADATA_URL
    assert ("algs" in params) == (scheme == "DPoP")
    assert r.body["error"] == error
    if text is not None:
        assert text in params["error_description"], params
        assert r.body["error_description"] == params["error_description"]
    assert r.headers["cache-control"] == "no-store"
    return params


def test_no_credentials(web: Web) -> None:
    for headers in ([], [("Authorization", "Basic cmVhZGVyOnNlY3JldA==")]):
        r = web.call("GET", "/v1/models", headers)
        assert r.status == 401
        assert r.challenges == [BEARER_401, DPOP_401]
        assert r.body["error"] == "unauthorized"


def test_public_route_needs_nothing(web: Web) -> None:
    assert web.call("GET", "/public").status == 200


def test_good_bearer_token(web: Web, keys: Keys) -> None:
    token = sign(keys, claims(scope="models:read models:invoke", roles=["admin"]))
    r = web.call("GET", "/v1/models", bearer(token))
    assert r.status == 200, r.body
    assert r.body["sub"] == "svc" and r.body["scheme"] == "Bearer" and r.body["jkt"] is None
    assert r.challenges == []
    # The scheme is case-insensitive (RFC 9110 §11.1).
    assert web.call("GET", "/v1/models", [("Authorization", f"bearer {token}")]).status == 200
    r = web.call("POST", "/v1/models/m1/predict", bearer(token), json={"input": "x"})
    assert r.status == 200 and r.body["model"] == "m1"
    assert web.call("GET", "/composed", bearer(token)).status == 200
    assert web.call("GET", "/admin", bearer(token)).status == 200
    assert web.call("GET", "/any", bearer(token)).body["client_id"] == "svc"
    assert web.call("GET", "/undecorated", bearer(token)).body["roles"] == ["admin"]


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "x.y.z"])
def test_invalid_token(web: Web, token: str) -> None:
    refused(web.call("GET", "/v1/models", bearer(token)), "Bearer", "invalid_token")
    refused(web.call("GET", "/undecorated", bearer(token)), "Bearer", "invalid_token")


def test_token_failures_name_the_check(web: Web, keys: Keys) -> None:
    refused(web.call("GET", "/v1/models", bearer(sign(keys, claims(aud="https://x.test")))),
            "Bearer", "invalid_token", "aud")
    refused(web.call("GET", "/v1/models", bearer(sign(keys, claims(exp=1)))),
            "Bearer", "invalid_token", "expired")
    refused(web.call("GET", "/v1/models", bearer(sign(keys, claims(), kid="nope"))),
            "Bearer", "invalid_token", "unknown key")


def test_insufficient_scope(web: Web, keys: Keys) -> None:
    token = sign(keys, claims(scope="models:read"))
    r = web.call("POST", "/v1/models/m1/predict", bearer(token), json={"input": "x"})
    params = refused(r, "Bearer", "insufficient_scope", status=403)
    assert params["scope"] == "models:invoke" and r.body["scope"] == "models:invoke"
    params = refused(web.call("GET", "/composed", bearer(sign(keys, claims(roles=["admin"])))),
                     "Bearer", "insufficient_scope", status=403)
    assert params["scope"] == "models:read models:invoke"


def test_insufficient_role(web: Web, keys: Keys) -> None:
    r = web.call("GET", "/admin", bearer(sign(keys, claims(roles=["ml-user"]))))
    assert r.status == 403 and r.challenges == []
    assert r.body["error"] == "insufficient_role" and r.body["required_roles"] == ["admin"]


def test_malformed_authorization(web: Web, keys: Keys) -> None:
    token = sign(keys, claims())
    for value in ("Bearer", "Bearer ", f"Bearer {token} extra"):
        refused(web.call("GET", "/v1/models", [("Authorization", value)]), "Bearer",
                "invalid_request", status=400)


def test_token_in_query_is_not_accepted(web: Web, keys: Keys) -> None:
    r = web.call("GET", f"/v1/models?access_token={sign(keys, claims())}")
    assert r.status == 401 and r.challenges == [BEARER_401, DPOP_401]


# --------------------------------------------------------------------------------------------
# DPoP


def test_dpop_request(web: Web, keys: Keys, holder: Holder) -> None:
    token = bound_token(keys, holder)
    r = web.call("GET", "/v1/models", dpop(token, holder.proof(token=token)))
    assert r.status == 200, r.body
    assert r.body["scheme"] == "DPoP" and r.body["jkt"] == holder.jkt
    url = BASE + "/v1/models/m1/predict"
    r = web.call("POST", "/v1/models/m1/predict", dpop(token, holder.proof("POST", url, token)),
                 json={"input": "x"})
    assert r.status == 200, r.body


def test_dpop_proof_failures(web: Web, keys: Keys, holder: Holder) -> None:
    token = bound_token(keys, holder)
    proof = holder.proof(token=token)
    assert web.call("GET", "/v1/models", dpop(token, proof)).status == 200
    refused(web.call("GET", "/v1/models", dpop(token, proof)), "DPoP", "invalid_dpop_proof",
            "already used")
    refused(web.call("GET", "/v1/models", dpop(token)), "DPoP", "invalid_dpop_proof",
            "exactly one")
    refused(web.call("GET", "/v1/models", dpop(token, holder.proof("POST", token=token))),
            "DPoP", "invalid_dpop_proof", "htm")
    refused(web.call("GET", "/v1/models",
                     dpop(token, holder.proof(url=BASE + "/other", token=token))),
            "DPoP", "invalid_dpop_proof", "htu")
    refused(web.call("GET", "/v1/models", dpop(token, holder.proof(token="another"))),
            "DPoP", "invalid_dpop_proof", "ath")


def test_dpop_binding_failures(web: Web, keys: Keys, holder: Holder) -> None:
    token = bound_token(keys, holder)
    thief = Holder()
    refused(web.call("GET", "/v1/models", dpop(token, thief.proof(token=token))), "DPoP",
            "invalid_token", "bound to another key")
    unbound = bound_token(keys, None)
    refused(web.call("GET", "/v1/models", dpop(unbound, holder.proof(token=unbound))), "DPoP",
            "invalid_token", "not DPoP-bound")
    # RFC 9449 §7.2: a bound token presented as a bearer token.
    refused(web.call("GET", "/v1/models", bearer(token)), "Bearer", "invalid_token",
            "DPoP-bound token presented as a bearer token")


def test_dpop_scope_failure_answers_in_dpop(web: Web, keys: Keys, holder: Holder) -> None:
    token = bound_token(keys, holder, scope="models:read")
    url = BASE + "/v1/models/m1/predict"
    r = web.call("POST", "/v1/models/m1/predict", dpop(token, holder.proof("POST", url, token)),
                 json={"input": "x"})
    assert refused(r, "DPoP", "insufficient_scope", status=403)["scope"] == "models:invoke"


def test_one_proof_for_several_checks(web: Web, keys: Keys, holder: Holder) -> None:
    """Stacked decorators, or two dependencies: the proof is checked and spent once."""
    token = bound_token(keys, holder, roles=["admin"])
    r = web.call("GET", "/composed", dpop(token, holder.proof(url=BASE + "/composed",
                                                              token=token)))
    assert r.status == 200, r.body


def test_dpop_modes(framework: str, keys: Keys, holder: Holder) -> None:
    token, unbound = bound_token(keys, holder), bound_token(keys, None)
    required = make_web(framework, keys, dpop_mode="required")
    assert required.call("GET", "/v1/models", dpop(token, holder.proof(token=token))).status == 200
    r = required.call("GET", "/v1/models", bearer(unbound))
    assert r.status == 401 and r.challenges == [DPOP_401]
    disabled = make_web(framework, keys, dpop_mode="disabled")
    assert disabled.call("GET", "/v1/models", bearer(unbound)).status == 200
    r = disabled.call("GET", "/v1/models", dpop(token, holder.proof(token=token)))
    assert r.status == 401 and r.challenges == [BEARER_401]


def test_external_base_url(framework: str, keys: Keys, holder: Holder) -> None:
    web = make_web(framework, keys, external_base_url="https://api.example.test/inference/")
    token = bound_token(keys, holder)
    public = "https://api.example.test/inference/v1/models"
    assert web.call("GET", "/v1/models", dpop(token, holder.proof(url=public, token=token))
                    ).status == 200
    refused(web.call("GET", "/v1/models", dpop(token, holder.proof(token=token))), "DPoP",
            "invalid_dpop_proof", "htu")


def test_default_url_is_the_request_url(framework: str, keys: Keys, holder: Holder) -> None:
    """Without external_base_url: the request's scheme, Host, and path."""
    web = make_web(framework, keys)
    token = bound_token(keys, holder)
    url = "https://svc.example.test:8443/v1/models"
    headers = dpop(token, holder.proof(url=url, token=token))
    if framework == "flask":
        r = web.call("GET", "/v1/models", headers, base_url="https://svc.example.test:8443")
    else:
        web.client.base_url = "https://svc.example.test:8443"
        r = web.call("GET", "/v1/models", headers)
    assert r.status == 200, r.body


# --------------------------------------------------------------------------------------------
# 503s


def test_issuer_unreachable_is_503(framework: str, keys: Keys) -> None:
    cache = JWKSCache("http://127.0.0.1:9/.well-known/jwks.json", timeout=1)
    web = make_web(framework, keys, jwks=cache)
    r = web.call("GET", "/v1/models", bearer(sign(keys, claims())))
    assert r.status == 503 and r.challenges == []
    assert r.body["error"] == "temporarily_unavailable"
    assert r.headers["retry-after"] == "10"


def test_replay_cache_unavailable_is_503(framework: str, keys: Keys, holder: Holder) -> None:
    class Down:
        def add(self, jkt: str, jti: str, ttl: float) -> bool:
            raise ReplayCacheUnavailable("connection refused")

    web = make_web(framework, keys, replay_cache=Down())
    token = bound_token(keys, holder)
    r = web.call("GET", "/v1/models", dpop(token, holder.proof(token=token)))
    assert r.status == 503 and r.challenges == [] and r.headers["retry-after"] == "10"
    full = make_web(framework, keys, replay_cache=MemoryReplayCache(1))
    assert full.call("GET", "/v1/models", dpop(token, holder.proof(token=token))).status == 200
    assert full.call("GET", "/v1/models", dpop(token, holder.proof(token=token))).status == 503


def test_shared_replay_cache(framework: str, keys: Keys, holder: Holder) -> None:
    shared = MemoryReplayCache()
    first = make_web(framework, keys, replay_cache=shared)
    second = make_web("flask" if framework == "fastapi" else "fastapi", keys,
                      replay_cache=shared)
    token = bound_token(keys, holder)
    proof = holder.proof(token=token)
    assert first.call("GET", "/v1/models", dpop(token, proof)).status == 200
    refused(second.call("GET", "/v1/models", dpop(token, proof)), "DPoP", "invalid_dpop_proof",
            "already used")


def test_metadata_off(framework: str, keys: Keys) -> None:
    web = make_web(framework, keys, resource_metadata=False)
    r = web.call("GET", "/v1/models")
    assert r.challenges == ['Bearer realm="inference"', f'DPoP realm="inference", algs="{ALGS}"']
    assert web.call("GET", "/.well-known/oauth-protected-resource").status == 404


def test_no_realm(framework: str, keys: Keys) -> None:
    web = make_web(framework, keys, realm=None, resource_metadata=False, dpop_mode="disabled")
    assert web.call("GET", "/v1/models").challenges == ["Bearer"]
    r = web.call("GET", "/v1/models", bearer("x"))
    assert r.challenges[0].startswith('Bearer error="invalid_token"')
