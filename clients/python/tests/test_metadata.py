"""RFC 9728: the metadata URL (§3.1), the document (§2, §3.2), and resource_metadata in every
challenge (§5.1), in both frameworks."""

from __future__ import annotations

import pytest

from helpers import ALGS, AUDIENCE, ISSUER, METADATA_URL, Holder, Keys, bound_token, challenges
from helpers import server as make_server
from portcullis_verifier import (
    ProtectedResourceMetadata,
    ResourceServer,
    check_resource_identifier,
    metadata_path,
    metadata_url,
)
from webapps import FRAMEWORKS, make_web

WK = "/.well-known/oauth-protected-resource"


@pytest.mark.parametrize(("resource", "url"), [
    ("https://api.example.com", f"https://api.example.com{WK}"),
    ("https://api.example.com/", f"https://api.example.com{WK}"),
    ("https://api.example.com/inference", f"https://api.example.com{WK}/inference"),
    ("https://api.example.com/inference/", f"https://api.example.com{WK}/inference"),
    ("https://api.example.com/a/b", f"https://api.example.com{WK}/a/b"),
    ("https://api.example.com:8443/mcp", f"https://api.example.com:8443{WK}/mcp"),
    ("https://api.example.com/x?tenant=1", f"https://api.example.com{WK}/x?tenant=1"),
    ("http://127.0.0.1:5000", f"http://127.0.0.1:5000{WK}"),
])
def test_metadata_url(resource: str, url: str) -> None:
    assert metadata_url(resource) == url


def test_metadata_path() -> None:
    assert metadata_path("https://api.example.com/inference/") == f"{WK}/inference"
    assert metadata_path("https://api.example.com?x=1") == WK


@pytest.mark.parametrize("resource", ["urn:example:api", "api.example.com", "ftp://x.test",
                                      "https://x.test/#frag", "https://u@x.test/", "https://",
                                      "https://x.test:99999/"])
def test_not_a_resource_identifier(resource: str) -> None:
    with pytest.raises(ValueError):
        check_resource_identifier(resource)


def test_document_members() -> None:
    doc = ProtectedResourceMetadata(
        resource="https://api.example.com", authorization_servers=["https://as.example.com"],
        scopes_supported=["a", "b"], dpop_signing_alg_values_supported=["ES256"],
        dpop_bound_access_tokens_required=False, resource_name="API",
        resource_documentation="https://docs.example.com", extra={"x_custom": 1},
    ).to_dict()
    assert doc == {
        "resource": "https://api.example.com",
        "authorization_servers": ["https://as.example.com"],
        "scopes_supported": ["a", "b"],
        "bearer_methods_supported": ["header"],
        "resource_name": "API",
        "resource_documentation": "https://docs.example.com",
        "dpop_signing_alg_values_supported": ["ES256"],
        "dpop_bound_access_tokens_required": False,
        "x_custom": 1,
    }
    minimal = ProtectedResourceMetadata(resource="https://api.example.com",
                                        bearer_methods_supported=None).to_dict()
    assert minimal == {"resource": "https://api.example.com"}


def test_resource_server_metadata(keys: Keys) -> None:
    server = make_server(keys)
    assert server.resource_metadata_url == METADATA_URL
    assert server.resource_metadata_path == WK
    metadata = server.metadata()
    assert metadata is not None
    assert metadata.to_dict() == {
        "resource": AUDIENCE, "authorization_servers": [ISSUER],
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": ALGS.split(),
        "dpop_bound_access_tokens_required": False,
    }
    required = make_server(keys, dpop_mode="required", scopes_supported=["s"],
                           resource_name="Inference")
    doc = required.metadata(["ignored"])
    assert doc is not None and doc.to_dict()["dpop_bound_access_tokens_required"] is True
    assert doc.to_dict()["scopes_supported"] == ["s"]
    assert doc.to_dict()["resource_name"] == "Inference"
    disabled = make_server(keys, dpop_mode="disabled").metadata()
    assert disabled is not None and "dpop_signing_alg_values_supported" not in disabled.to_dict()


def test_resource_defaults_to_the_audience_and_can_differ(keys: Keys) -> None:
    server = make_server(keys, resource="https://api.example.com/inference")
    assert server.resource_metadata_url == f"https://api.example.com{WK}/inference"


def test_auto_mode(keys: Keys) -> None:
    """Metadata is served by default only when the resource identifier is an http(s) URL."""
    urn = ResourceServer(issuer=ISSUER, audience="urn:example:inference",
                         jwks=make_server(keys).jwks)
    assert urn.resource_metadata_url is None and urn.metadata() is None
    with pytest.raises(ValueError):
        ResourceServer(issuer=ISSUER, audience="urn:example:inference", resource_metadata=True,
                       jwks=urn.jwks)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_served_document(framework: str, keys: Keys) -> None:
    web = make_web(framework, keys)
    r = web.call("GET", WK)
    assert r.status == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["access-control-allow-origin"] == "*"
    assert "max-age" in r.headers["cache-control"]
    # §3.3: resource is exactly the identifier the URL was derived from.
    assert r.body["resource"] == AUDIENCE
    assert r.body["authorization_servers"] == [ISSUER]
    assert r.body["bearer_methods_supported"] == ["header"]
    assert r.body["dpop_signing_alg_values_supported"] == ALGS.split()
    assert r.body["dpop_bound_access_tokens_required"] is False
    # Without a configured list: the scopes the app's views require.
    assert r.body["scopes_supported"] == ["models:invoke", "models:read"]
    # No token needed, and the well-known path is not behind the resource's own path.
    assert web.call("GET", WK + "/v1").status == 404


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_served_under_a_path_resource(framework: str, keys: Keys) -> None:
    web = make_web(framework, keys, resource="https://api.example.test/inference",
                   scopes_supported=["models:read"], resource_name="Inference API")
    r = web.call("GET", WK + "/inference")
    assert r.status == 200 and r.body["resource"] == "https://api.example.test/inference"
    assert r.body["scopes_supported"] == ["models:read"]
    assert r.body["resource_name"] == "Inference API"
    assert web.call("GET", WK).status == 404
    [(_, params)] = challenges(web.call("GET", "/v1/models").challenges[:1])
    assert params["resource_metadata"] == f"https://api.example.test{WK}/inference"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_every_challenge_names_the_metadata(framework: str, keys: Keys,
                                            holder: Holder) -> None:
    """401s without credentials, with a bad token, with a bad proof, in either scheme; 400s
    for a malformed header; 403s for a missing scope (MCP's scope step-up)."""
    web = make_web(framework, keys)
    token = bound_token(keys, holder, scope="models:read")
    unbound = bound_token(keys, None, scope="models:read")
    cases = [
        ([], 401),
        ([("Authorization", "Bearer x.y.z")], 401),
        ([("Authorization", f"Bearer {token}")], 401),  # bound token as bearer
        ([("Authorization", f"DPoP {token}")], 401),  # no proof
        ([("Authorization", f"DPoP {unbound}"), ("DPoP", holder.proof(token=unbound))], 401),
        ([("Authorization", "Bearer")], 400),
        ([("Authorization", f"Bearer {unbound}")], 403),
    ]
    for headers, status in cases:
        r = web.call("POST", "/v1/models/m/predict", headers, json={"input": 1})
        assert r.status == status, (headers, r.body)
        assert r.challenges, headers
        for scheme, params in challenges(r.challenges):
            assert params["resource_metadata"] == METADATA_URL, (headers, r.challenges)
