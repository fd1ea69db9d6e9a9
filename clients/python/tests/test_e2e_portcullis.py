"""End to end: tokens from a real Portcullis process, verified by the package in Flask (on a
real socket) and FastAPI (in process), including DPoP-bound tokens and the RFC 9728 discovery
an MCP client makes. Skipped without the binary (PORTCULLIS_BIN), failed instead in CI."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from fastapi.testclient import TestClient
from werkzeug.serving import make_server

from helpers import ALGS, Holder
from portcullis_process import Portcullis, free_port, portcullis_bin
from portcullis_verifier import Principal
from webapps import fastapi_app, flask_app

SCOPES = "models:read models:invoke"
WK = "/.well-known/oauth-protected-resource"


class Setup:
    def __init__(self, server: Portcullis, port: int, secrets: dict[str, str]) -> None:
        self.server = server
        self.port = port  # where the Flask service listens
        self.resource = f"http://127.0.0.1:{port}"  # its resource identifier: its own URL
        self.secrets = secrets

    def token(self, client_id: str, scope: str = SCOPES, dpop: Holder | None = None) -> str:
        endpoint = f"{self.server.base_url}/token"
        proof = dpop.proof("POST", endpoint) if dpop else None
        r = self.server.token_response(client_id, self.secrets[client_id], scope=scope,
                                       resource=self.resource, dpop=proof)
        assert r.status_code == 200, r.text
        assert r.json()["token_type"] == ("DPoP" if dpop else "Bearer")
        token: str = r.json()["access_token"]
        return token


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    portcullis_bin()  # skip (or fail in CI) before anything else
    server = Portcullis(Path(tmp_path_factory.mktemp("portcullis"))).start()
    try:
        port = free_port()
        resource = f"http://127.0.0.1:{port}"
        server.cli("resource", "create", "--audience", resource, "--scope", SCOPES)
        server.cli("role", "create", "ml-user", "--scope", SCOPES)
        secrets = {
            "invoker": server.create_client("invoker", scopes=SCOPES, audience=resource,
                                            roles=("ml-user",)),
            "ops": server.create_client("ops", scopes=SCOPES, audience=resource,
                                        roles=("admin", "ml-user")),
        }
        setup = Setup(server, port, secrets)
        # CLI changes reach the running server within its 1 s poll interval.
        deadline = time.monotonic() + 30
        while True:
            r = server.token_response("ops", secrets["ops"], scope="models:read",
                                      resource=resource)
            if r.status_code == 200 and "admin" in (jwt.decode(
                    r.json()["access_token"], options={"verify_signature": False})
                    .get("roles") or ()):
                break
            assert time.monotonic() < deadline, f"provisioning never took: {r.text}"
            time.sleep(0.2)
        yield setup
    finally:
        server.stop()


@pytest.fixture(scope="module")
def flask_service(setup: Setup) -> Iterator[str]:
    """The package's Flask layer on a real socket, at the URL that is its resource identifier."""
    app = flask_app({"realm": "inference"}, config={
        "PORTCULLIS_ISSUER": setup.server.issuer, "PORTCULLIS_AUDIENCE": setup.resource})
    httpd = make_server("127.0.0.1", setup.port, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield setup.resource
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def fastapi_service(setup: Setup) -> TestClient:
    app = fastapi_app({"issuer": setup.server.issuer, "audience": setup.resource,
                       "realm": "inference"})
    return TestClient(app, base_url=setup.resource)


def params(challenge: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', challenge))


def test_mcp_style_discovery(setup: Setup, flask_service: str) -> None:
    """401 -> resource_metadata -> authorization server metadata -> token for the resource
    -> 200: everything a client learns, it learns from the service and Portcullis."""
    r = requests.get(f"{flask_service}/v1/models", timeout=15)
    assert r.status_code == 401
    challenges = r.raw.headers.getlist("WWW-Authenticate")
    assert [c.split(" ", 1)[0] for c in challenges] == ["Bearer", "DPoP"]
    metadata_url = params(challenges[0])["resource_metadata"]
    assert metadata_url == f"{flask_service}{WK}"
    assert params(challenges[1])["resource_metadata"] == metadata_url
    metadata = requests.get(metadata_url, timeout=15).json()
    assert metadata["resource"] == flask_service  # RFC 9728 §3.3
    assert metadata["authorization_servers"] == [setup.server.issuer]
    assert metadata["dpop_signing_alg_values_supported"] == ALGS.split()
    assert set(metadata["scopes_supported"]) >= set(SCOPES.split())
    issuer = metadata["authorization_servers"][0]
    as_metadata = requests.get(f"{issuer}/.well-known/oauth-authorization-server",
                               timeout=15).json()
    assert as_metadata["issuer"] == issuer  # RFC 8414 §3.3
    r = setup.server.token_response("invoker", setup.secrets["invoker"], scope="models:read",
                                    resource=metadata["resource"],
                                    endpoint=as_metadata["token_endpoint"])
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == flask_service
    r = requests.get(f"{flask_service}/v1/models", headers={"Authorization": f"Bearer {token}"},
                     timeout=15)
    assert r.status_code == 200, r.text
    assert r.json()["sub"] == "invoker"


@pytest.mark.parametrize("framework", ["flask", "fastapi"])
def test_bearer_tokens(setup: Setup, flask_service: str, fastapi_service: TestClient,
                       framework: str) -> None:
    def get(path: str, token: str | None = None, method: str = "GET") -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if framework == "flask":
            return requests.request(method, flask_service + path, headers=headers,
                                    json={"input": 1}, timeout=15)
        return fastapi_service.request(method, path, headers=headers, json={"input": 1})

    invoker, ops_read = setup.token("invoker"), setup.token("ops", "models:read")
    r = get("/v1/models", invoker)
    assert r.status_code == 200 and r.json()["roles"] == ["ml-user"]
    assert get("/v1/models/m/predict", invoker, "POST").status_code == 200
    r = get("/v1/models/m/predict", ops_read, "POST")
    assert r.status_code == 403
    assert params(r.headers["WWW-Authenticate"])["scope"] == "models:invoke"
    assert get("/admin", ops_read).status_code == 200
    r = get("/admin", invoker)
    assert r.status_code == 403 and r.json()["error"] == "insufficient_role"
    r = get("/v1/models", invoker[:-4] + "AAAA")
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


@pytest.mark.parametrize("framework", ["flask", "fastapi"])
def test_dpop_bound_tokens(setup: Setup, flask_service: str, fastapi_service: TestClient,
                           framework: str) -> None:
    holder = Holder()
    token = setup.token("invoker", dpop=holder)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["cnf"] == {"jkt": holder.jkt}
    url = f"{setup.resource}/v1/models"

    def get(headers: dict[str, str]) -> Any:
        if framework == "flask":
            return requests.get(url, headers=headers, timeout=15)
        return fastapi_service.get("/v1/models", headers=headers)

    proof = holder.proof("GET", url, token)
    r = get({"Authorization": f"DPoP {token}", "DPoP": proof})
    assert r.status_code == 200, r.text
    assert r.json()["scheme"] == "DPoP" and r.json()["jkt"] == holder.jkt
    r = get({"Authorization": f"DPoP {token}", "DPoP": proof})  # replayed
    assert r.status_code == 401 and r.json()["error"] == "invalid_dpop_proof"
    r = get({"Authorization": f"Bearer {token}"})  # RFC 9449 §7.2
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"
    thief = Holder()
    r = get({"Authorization": f"DPoP {token}", "DPoP": thief.proof("GET", url, token)})
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


def test_principal_of_a_real_token(setup: Setup) -> None:
    """The core alone (no framework): a ResourceServer against the real JWKS."""
    from portcullis_verifier import ResourceServer

    server = ResourceServer(issuer=setup.server.issuer, audience=setup.resource)
    principal = server.authenticate(method="GET", url=f"{setup.resource}/x",
                                    authorization=f"Bearer {setup.token('ops')}")
    assert isinstance(principal, Principal)
    assert principal.subject == "ops" and principal.roles == {"admin", "ml-user"}
    assert principal.scopes == set(SCOPES.split()) and principal.actor is None
