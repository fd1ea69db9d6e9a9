"""A toy inference service that accepts only Portcullis access tokens, verified locally.

    PORTCULLIS_ISSUER=http://127.0.0.1:8080 flask --app app run --port 5000

Settings come from the environment (or the ``config`` mapping given to ``create_app``), under
the names below; ``create_app`` hands them to ``portcullis_verifier.flask.PortcullisAuth`` as its
``PORTCULLIS_*`` settings: ``PORTCULLIS_ISSUER`` (required), ``INFERENCE_AUDIENCE`` (default
``https://inference.example.test``, also the RFC 9728 resource identifier),
``JWKS_MIN_REFRESH_INTERVAL`` (seconds, default 10), and the optional ones in ``_ENV_SETTINGS``,
DPoP's among them (``DPOP_MODE``, ``EXTERNAL_BASE_URL``, …). Bearer and DPoP-bound tokens are
both accepted. ``/.well-known/oauth-protected-resource`` serves the RFC 9728 metadata.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from typing import Any, Mapping

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from portcullis_verifier.flask import (
    PortcullisAuth,
    current_claims,
    role_required,
    scope_required,
)

DEFAULT_AUDIENCE = "https://inference.example.test"

#: Environment variable -> (portcullis_verifier.flask setting, type), read by create_app.
_ENV_SETTINGS = {
    "PORTCULLIS_ISSUER": ("PORTCULLIS_ISSUER", str),
    "INFERENCE_AUDIENCE": ("PORTCULLIS_AUDIENCE", str),
    "JWKS_URL": ("PORTCULLIS_JWKS_URL", str),
    "JWKS_MIN_REFRESH_INTERVAL": ("PORTCULLIS_JWKS_MIN_REFRESH_INTERVAL", float),
    "JWKS_DEFAULT_MAX_AGE": ("PORTCULLIS_JWKS_DEFAULT_MAX_AGE", float),
    "JWT_LEEWAY": ("PORTCULLIS_LEEWAY", float),
    "JWT_EXP_LEEWAY": ("PORTCULLIS_EXP_LEEWAY", float),
    "AUTH_REALM": ("PORTCULLIS_REALM", str),
    "DPOP_MODE": ("PORTCULLIS_DPOP_MODE", str),
    "DPOP_MAX_AGE": ("PORTCULLIS_DPOP_MAX_AGE", float),
    "DPOP_MAX_FUTURE": ("PORTCULLIS_DPOP_MAX_FUTURE", float),
    "DPOP_REPLAY_CACHE_SIZE": ("PORTCULLIS_DPOP_REPLAY_CACHE_SIZE", int),
    "EXTERNAL_BASE_URL": ("PORTCULLIS_EXTERNAL_BASE_URL", str),
    "RESOURCE_NAME": ("PORTCULLIS_RESOURCE_NAME", str),
}

MODELS = {
    "sentiment-small": {"id": "sentiment-small", "task": "text-classification",
                        "labels": ["negative", "positive"]},
    "echo-tiny": {"id": "echo-tiny", "task": "text-generation"},
}

_POSITIVE = {"good", "great", "love", "excellent", "nice", "happy", "fast"}


def _fake_predict(model_id: str, inputs: Any) -> dict[str, Any]:
    """Deterministic nonsense standing in for a model."""
    if model_id == "echo-tiny":
        return {"generated_text": str(inputs)}
    words = str(inputs).lower().split()
    hits = sum(w.strip(".,!?") in _POSITIVE for w in words)
    score = round(min(0.99, 0.5 + 0.2 * hits), 2)
    return {"label": "positive" if hits else "negative", "score": score if hits else 0.5}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.json.sort_keys = False
    settings: dict[str, Any] = {"INFERENCE_AUDIENCE": DEFAULT_AUDIENCE, "AUTH_REALM": "inference",
                                "RESOURCE_NAME": "Inference service (example)"}
    for name, (_, kind) in _ENV_SETTINGS.items():
        if os.environ.get(name):
            settings[name] = kind(os.environ[name])
    settings.update(config or {})
    for name, value in settings.items():
        # Our names become the package's; anything else (TESTING, …) is Flask's own config.
        app.config[_ENV_SETTINGS[name][0] if name in _ENV_SETTINGS else name] = value
    auth = PortcullisAuth(app)

    usage: Counter[tuple[str, str]] = Counter()
    usage_lock = threading.Lock()

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/v1/models")
    @scope_required("models:read")
    def list_models():
        return {"object": "list", "data": list(MODELS.values())}

    @app.post("/v1/models/<model_id>/predict")
    @scope_required("models:invoke")
    def predict(model_id: str):
        if model_id not in MODELS:
            return jsonify(error="not_found", error_description=f"no model {model_id!r}"), 404
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or "input" not in body:
            return jsonify(error="invalid_request",
                           error_description='send a JSON object with an "input" member'), 400
        claims = current_claims()
        client = claims.get("client_id") or claims["sub"]
        with usage_lock:
            usage[(client, model_id)] += 1
        return {
            "model": model_id,
            "input": body["input"],
            "output": _fake_predict(model_id, body["input"]),
            "client_id": client,
        }

    @app.get("/v1/admin/usage")
    @role_required("admin")
    def admin_usage():
        with usage_lock:
            rows = [{"client_id": c, "model": m, "predictions": n}
                    for (c, m), n in sorted(usage.items())]
        return {"usage": rows, "requested_by": current_claims()["sub"],
                "jwks": dict(getattr(auth.jwks, "stats", {}))}

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.code or 500, "error")
        resp = jsonify(error=code, error_description=e.description)
        resp.status_code = e.code or 500
        if e.code == 405 and e.valid_methods:
            resp.headers["Allow"] = ", ".join(e.valid_methods)
        return resp

    return app


if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=int(os.environ.get("PORT", "5000")))
