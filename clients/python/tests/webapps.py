"""The same small service built with Flask and with FastAPI, behind one test-client adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import fastapi
import flask
from fastapi.testclient import TestClient

from helpers import AUDIENCE, ISSUER, Keys, memory_jwks
from portcullis_verifier import Principal, ResourceServer
from portcullis_verifier import fastapi as pv_fastapi
from portcullis_verifier import flask as pv_flask

FRAMEWORKS = ("flask", "fastapi")


def describe(p: Principal) -> dict[str, Any]:
    """What the views answer: what a view can see of its caller."""
    return {"sub": p.subject, "client_id": p.client_id, "scheme": p.scheme, "jkt": p.dpop_jkt,
            "scopes": sorted(p.scopes), "roles": sorted(p.roles), "actor": p.actor_sub,
            "actor_chain": p.actor_subs, "delegated": p.delegated, "may_act": p.may_act}


@dataclass
class Answer:
    status: int
    body: Any
    challenges: list[str]
    headers: dict[str, str]


class Web:
    """A test client of either framework: call(method, path, headers) -> Answer."""

    def __init__(self, framework: str, app: Any) -> None:
        self.framework = framework
        self.app = app
        self.client: Any = app.test_client() if framework == "flask" \
            else TestClient(app, base_url="http://localhost")

    def call(self, method: str, path: str, headers: list[tuple[str, str]] | None = None,
             **kwargs: Any) -> Answer:
        headers = headers or []
        if self.framework == "flask":
            r = self.client.open(path, method=method, headers=headers, **kwargs)
            return Answer(r.status_code, r.get_json(silent=True),
                          r.headers.getlist("WWW-Authenticate"),
                          {k.lower(): v for k, v in r.headers.items()})
        r = self.client.request(method, path, headers=headers, **kwargs)
        try:
            body = r.json()
        except ValueError:
            body = None
        return Answer(r.status_code, body, r.headers.get_list("www-authenticate"),
                      {k.lower(): v for k, v in r.headers.items()})


def flask_app(server_options: dict[str, Any], config: dict[str, Any] | None = None) -> Any:
    from portcullis_verifier.flask import (
        current_principal,
        role_required,
        scope_required,
        token_required,
    )

    app = flask.Flask("pv-test")
    app.config.update({"PORTCULLIS_ISSUER": ISSUER, "PORTCULLIS_AUDIENCE": AUDIENCE,
                       "TESTING": True, **(config or {})})
    pv_flask.PortcullisAuth(app, **server_options)

    @app.get("/v1/models")
    @scope_required("models:read")
    def models() -> Any:
        return describe(current_principal())

    @app.post("/v1/models/<model_id>/predict")
    @scope_required("models:invoke")
    def predict(model_id: str) -> Any:
        return {"model": model_id, **describe(current_principal())}

    @app.get("/admin")
    @role_required("admin")
    def admin() -> Any:
        return describe(current_principal())

    @app.get("/composed")
    @role_required("admin")
    @scope_required("models:read", "models:invoke")
    def composed() -> Any:
        return describe(current_principal())

    @app.get("/any")
    @token_required
    def any_token() -> Any:
        return describe(current_principal())

    @app.get("/undecorated")
    def undecorated() -> Any:  # current_principal() alone also authenticates
        return describe(current_principal())

    @app.get("/public")
    def public() -> Any:
        return {"ok": True}

    return app


def fastapi_app(server_options: dict[str, Any]) -> Any:
    auth = pv_fastapi.PortcullisAuth(**server_options)
    app = fastapi.FastAPI()
    auth.install(app)
    Depends = fastapi.Depends

    @app.get("/v1/models")
    def models(p: Principal = Depends(auth.scope_required("models:read"))) -> Any:
        return describe(p)

    @app.post("/v1/models/{model_id}/predict")
    def predict(model_id: str,
                p: Principal = Depends(auth.scope_required("models:invoke"))) -> Any:
        return {"model": model_id, **describe(p)}

    @app.get("/admin")
    def admin(p: Principal = Depends(auth.role_required("admin"))) -> Any:
        return describe(p)

    # Two dependencies: the token (and a DPoP proof) is verified once per request.
    @app.get("/composed")
    def composed(p: Principal = Depends(auth.role_required("admin")),
                 q: Principal = Depends(auth.scope_required("models:read models:invoke"))) -> Any:
        assert p is q
        return describe(p)

    @app.get("/any")
    def any_token(p: Principal = Depends(auth.token_required)) -> Any:
        return describe(p)

    @app.get("/undecorated")
    def undecorated(request: fastapi.Request) -> Any:
        return describe(auth.principal(request))

    @app.get("/public")
    def public() -> Any:
        return {"ok": True}

    app.state.auth = auth
    return app


def make_web(framework: str, keys: Keys, **options: Any) -> Web:
    """The service with an issuer JWKS from memory. ``options``: ResourceServer arguments."""
    options.setdefault("jwks", memory_jwks(keys.jwks()))
    options.setdefault("realm", "inference")
    if framework == "flask":
        return Web(framework, flask_app(options))
    return Web(framework, fastapi_app({"issuer": ISSUER, "audience": AUDIENCE, **options}))


def server_of(web: Web) -> ResourceServer:
    if web.framework == "flask":
        ext = web.app.extensions["portcullis_auth"]
        assert isinstance(ext, pv_flask.PortcullisAuth)
        return ext.server
    auth = web.app.state.auth
    assert isinstance(auth, pv_fastapi.PortcullisAuth)
    return auth.server
