"""The 200/401/403 matrix of every endpoint, with tokens from a real Portcullis."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from harness import (
    AUDIENCE, RESOURCE_METADATA, RSA_AUDIENCE, bearer, decode_unverified, make_app,
    unverified_header,
)
from portcullis_verifier.flask import (
    PortcullisAuth, current_claims, role_required, scope_required, token_required,
)

PREDICT = "/v1/models/sentiment-small/predict"
BODY = {"input": "what a great day"}

# (method, path, token case, status, error). None = no Authorization header.
MATRIX = [
    ("GET", "/v1/models", "reader", 200, None),
    ("GET", "/v1/models", "invoker", 200, None),
    ("GET", "/v1/models", "ops", 200, None),
    ("GET", "/v1/models", "invoke-only", 403, "insufficient_scope"),
    ("GET", "/v1/models", None, 401, None),
    ("GET", "/v1/models", "garbage", 401, "invalid_token"),
    ("POST", PREDICT, "invoker", 200, None),
    ("POST", PREDICT, "invoke-only", 200, None),
    ("POST", PREDICT, "reader", 403, "insufficient_scope"),
    ("POST", PREDICT, "ops", 403, "insufficient_scope"),  # ops asked for models:read only
    ("POST", PREDICT, None, 401, None),
    ("POST", PREDICT, "garbage", 401, "invalid_token"),
    ("GET", "/v1/admin/usage", "ops", 200, None),
    ("GET", "/v1/admin/usage", "invoker", 403, "insufficient_role"),
    ("GET", "/v1/admin/usage", "reader", 403, "insufficient_role"),
    ("GET", "/v1/admin/usage", None, 401, None),
    ("GET", "/v1/admin/usage", "garbage", 401, "invalid_token"),
]

REQUIRED_SCOPE = {"/v1/models": "models:read", PREDICT: "models:invoke"}


def call(client, method, path, token=None, **kwargs):
    headers = bearer(token) if token else {}
    if method == "POST":
        kwargs.setdefault("json", BODY)
    return client.open(path, method=method, headers=headers, **kwargs)


def auth_params(header: str) -> dict[str, str]:
    assert header.startswith("Bearer "), header
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def test_healthz_needs_no_token(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ok"}


@pytest.mark.parametrize(("method", "path", "case", "status", "error"), MATRIX,
                         ids=[f"{m} {p} {c} -> {s}" for m, p, c, s, _ in MATRIX])
def test_matrix(client, tokens, method, path, case, status, error):
    token = {"garbage": "not.a.jwt"}.get(case, tokens.get(case)) if case else None
    r = call(client, method, path, token)
    assert r.status_code == status, r.get_data(as_text=True)
    body = r.get_json()
    assert r.mimetype == "application/json"
    challenge = r.headers.get("WWW-Authenticate")
    if status == 200:
        assert challenge is None
    elif status == 401 and error is None:
        # RFC 6750 §3.1: no credentials, so no error code in the challenge.
        assert challenge == f'Bearer realm="inference", {RESOURCE_METADATA}'
        assert body["error"] == "unauthorized"
    elif status == 401:
        params = auth_params(challenge)
        assert params["realm"] == "inference"
        assert params["error"] == "invalid_token"
        assert params["error_description"]
        assert body["error"] == "invalid_token"
    elif error == "insufficient_scope":
        params = auth_params(challenge)
        assert params["error"] == "insufficient_scope"
        assert params["scope"] == REQUIRED_SCOPE[path]
        assert body["error"] == "insufficient_scope"
        assert body["scope"] == REQUIRED_SCOPE[path]
    elif error == "insufficient_role":
        assert challenge is None
        assert body["error"] == "insufficient_role"
        assert body["required_roles"] == ["admin"]


def test_tokens_carry_what_the_decorators_read(tokens):
    header = unverified_header(tokens["invoker"])
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256"
    reader = decode_unverified(tokens["reader"])
    assert reader["aud"] == AUDIENCE and reader["scope"] == "models:read"
    assert reader["roles"] == ["ml-user"]
    assert set(decode_unverified(tokens["ops"])["roles"]) == {"admin", "ml-user"}
    assert set(decode_unverified(tokens["invoker"])["scope"].split()) == {"models:read",
                                                                         "models:invoke"}


def test_predict_echoes_input_and_usage_counts_it(app, tokens):
    client = app.test_client()
    before = client.get("/v1/admin/usage", headers=bearer(tokens["ops"])).get_json()
    r = call(client, "POST", PREDICT, tokens["invoker"], json={"input": "great and fast"})
    assert r.status_code == 200
    assert r.get_json() == {"model": "sentiment-small", "input": "great and fast",
                            "output": {"label": "positive", "score": 0.9},
                            "client_id": "invoker"}
    after = client.get("/v1/admin/usage", headers=bearer(tokens["ops"])).get_json()

    def count(doc):
        return sum(row["predictions"] for row in doc["usage"]
                   if row["client_id"] == "invoker" and row["model"] == "sentiment-small")

    assert count(after) == count(before) + 1
    assert after["requested_by"] == "ops"


def test_predict_errors_are_json(client, tokens):
    r = call(client, "POST", "/v1/models/no-such-model/predict", tokens["invoker"])
    assert r.status_code == 404 and r.get_json()["error"] == "not_found"
    r = call(client, "POST", PREDICT, tokens["invoker"], json=["not", "an", "object"])
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_request"
    r = client.get(PREDICT, headers=bearer(tokens["invoker"]))
    assert r.status_code == 405 and r.get_json()["error"] == "method_not_allowed"


def test_authorization_header_forms(client, tokens):
    # The scheme is case-insensitive (RFC 9110 §11.1).
    r = client.get("/v1/models", headers={"Authorization": f"bearer {tokens['reader']}"})
    assert r.status_code == 200
    # Another scheme is not a Bearer attempt: plain challenge, no error code.
    r = client.get("/v1/models", headers={"Authorization": "Basic cmVhZGVyOnNlY3JldA=="})
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == f'Bearer realm="inference", {RESOURCE_METADATA}'
    # A malformed Bearer header is a bad request (RFC 6750 §3.1 invalid_request).
    for value in ("Bearer", "Bearer ", f"Bearer {tokens['reader']} extra"):
        r = client.get("/v1/models", headers={"Authorization": value})
        assert r.status_code == 400, value
        assert auth_params(r.headers["WWW-Authenticate"])["error"] == "invalid_request"


def test_roles_limit_the_scope(portcullis, client_secrets, client, tokens):
    """`limited` may ask for models:invoke, but its role ml-reader permits models:read only."""
    assert decode_unverified(tokens["limited"])["scope"] == "models:read"
    assert call(client, "GET", "/v1/models", tokens["limited"]).status_code == 200
    r = call(client, "POST", PREDICT, tokens["limited"])
    assert r.status_code == 403 and r.get_json()["error"] == "insufficient_scope"
    # The seeded role `guest` permits neither scope: no token at all.
    r = portcullis.token_response("guest-bot", client_secrets["guest-bot"],
                                  scope="models:read models:invoke")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope", r.text


def test_rs256_tokens(portcullis, tokens):
    """A resource registered with --signing-alg RS256 gets RS256 tokens; they verify too."""
    token = tokens["rsa-reader"]
    assert unverified_header(token)["alg"] == "RS256"
    app = make_app(portcullis, INFERENCE_AUDIENCE=RSA_AUDIENCE)

    @app.get("/rsa")
    @scope_required("rsa:read")
    def rsa_route():
        return {"sub": current_claims()["sub"]}

    client = app.test_client()
    assert client.get("/rsa", headers=bearer(token)).get_json() == {"sub": "rsa-reader"}
    # The ES256 inference token is for another audience here.
    r = client.get("/rsa", headers=bearer(tokens["reader"]))
    assert r.status_code == 401 and "aud" in r.get_json()["error_description"]


def test_client_cannot_request_scopes_beyond_its_registration(portcullis, client_secrets):
    r = portcullis.token_response("reader", client_secrets["reader"], scope="models:invoke")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


@pytest.fixture(scope="module")
def composed_app(portcullis):
    """Decorators stack: each adds a requirement; the token is verified once per request."""
    app = make_app(portcullis)

    @app.get("/composed")
    @role_required("admin")
    @scope_required("models:read")
    def composed():
        return {"sub": current_claims()["sub"]}

    @app.get("/any-token")
    @token_required
    def any_token():
        return {"client_id": current_claims()["client_id"]}

    @app.get("/undecorated")
    def undecorated():  # current_claims() alone also authenticates
        return {"scope": current_claims().get("scope")}

    @app.get("/both-scopes")
    @scope_required("models:read", "models:invoke")
    def both_scopes():
        return {"ok": True}

    return app


def test_decorators_compose(composed_app, portcullis, client_secrets, tokens):
    client = composed_app.test_client()
    assert client.get("/composed", headers=bearer(tokens["ops"])).status_code == 200
    r = client.get("/composed", headers=bearer(tokens["invoker"]))
    assert r.status_code == 403 and r.get_json()["error"] == "insufficient_role"
    ops_invoke_only = portcullis.token("ops", client_secrets["ops"], scope="models:invoke")
    r = client.get("/composed", headers=bearer(ops_invoke_only))
    assert r.status_code == 403 and r.get_json()["error"] == "insufficient_scope"
    assert client.get("/composed").status_code == 401

    assert client.get("/any-token", headers=bearer(tokens["reader"])).get_json() == {
        "client_id": "reader"}
    assert client.get("/any-token").status_code == 401
    assert client.get("/undecorated", headers=bearer(tokens["reader"])).get_json() == {
        "scope": "models:read"}
    r = client.get("/undecorated", headers=bearer("x.y.z"))
    assert r.status_code == 401 and r.get_json()["error"] == "invalid_token"

    assert client.get("/both-scopes", headers=bearer(tokens["invoker"])).status_code == 200
    r = client.get("/both-scopes", headers=bearer(tokens["reader"]))
    assert r.status_code == 403
    assert auth_params(r.headers["WWW-Authenticate"])["scope"] == "models:read models:invoke"


def test_app_refuses_to_start_without_issuer():
    with pytest.raises(RuntimeError, match="PORTCULLIS_ISSUER"):
        PortcullisAuth(Flask("x"))
