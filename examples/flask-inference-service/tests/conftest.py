"""Fixtures: real Portcullis processes, provisioned through the CLI, and the Flask app.

Server layout (every process is killed at the end of the session, also on failure):

* ``portcullis``: the main server, its own SQLite database and key-encryption key.
* ``foreign_issuer``: a second process on the SAME database and KEK but another issuer, so
  its tokens carry kids the main JWKS publishes and differ only in ``iss``.
* ``short_ttl``: a third process on the same database with the main issuer, 2 s access
  tokens and ``jwks_max_age = 1``: expired tokens that differ only in ``exp``, and a real
  server that answers 304 quickly.
* The rotation test starts its own server with short key timings (``test_rotation.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1]
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

from harness import (  # noqa: E402
    AUDIENCE, OTHER_AUDIENCE, RSA_AUDIENCE, Portcullis, decode_unverified, make_app, wait_until,
)

# Resources: audience -> (scopes, extra `resource create` args). A scope belongs to one resource.
RESOURCES = {
    AUDIENCE: ("models:read models:invoke", ()),
    RSA_AUDIENCE: ("rsa:read", ("--signing-alg", "RS256")),
}
ROLES = {"ml-user": "models:read models:invoke", "ml-reader": "models:read",
         "rsa-user": "rsa:read"}
# Clients: id -> (scopes the client may request, audience, roles).
CLIENTS = {
    "reader": ("models:read", AUDIENCE, ("ml-user",)),
    "invoker": ("models:read models:invoke", AUDIENCE, ("ml-user",)),
    "ops": ("models:read models:invoke", AUDIENCE, ("admin", "ml-user")),
    # May ask for both scopes, but its role permits models:read only.
    "limited": ("models:read models:invoke", AUDIENCE, ("ml-reader",)),
    # Seeded role `guest` permits neither.
    "guest-bot": ("models:read models:invoke", AUDIENCE, ("guest",)),
    # Another API: its own (resource-less) scope, no roles.
    "other-api": ("reports:read", OTHER_AUDIENCE, ()),
    "rsa-reader": ("rsa:read", RSA_AUDIENCE, ("rsa-user",)),
}


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("portcullis")


@pytest.fixture(scope="session")
def portcullis(workdir):
    # A 1 s poll so CLI changes reach the running server quickly.
    server = Portcullis(workdir, "main", settings={"PORTCULLIS_KEYRING_POLL_INTERVAL": "1"})
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def client_secrets(portcullis) -> dict[str, str]:
    """Provisions the resource, the role and the clients; returns client id -> secret.

    Uses `resource create`, `role create` and `client create --role`: a binary without them
    fails here (every test that needs a client errors), it is never skipped.
    """
    for audience, (scopes, extra) in RESOURCES.items():
        portcullis.cli("resource", "create", "--audience", audience, "--scope", scopes, *extra)
    for role, scopes in ROLES.items():
        portcullis.cli("role", "create", role, "--scope", scopes)
    created = {
        client_id: portcullis.create_client(client_id, scopes=scopes, audience=audience,
                                            roles=roles)
        for client_id, (scopes, audience, roles) in CLIENTS.items()
    }

    # CLI changes reach the running server within its poll interval: wait until both the
    # clients' roles and the resource/role model are in effect.
    def provisioned():
        ops = portcullis.token_response("ops", created["ops"], scope="models:read")
        limited = portcullis.token_response("limited", created["limited"],
                                            scope="models:read models:invoke")
        if ops.status_code != 200 or limited.status_code != 200:
            return False
        roles = set(decode_unverified(ops.json()["access_token"]).get("roles") or ())
        return roles >= {"admin", "ml-user"} and limited.json().get("scope") == "models:read"

    wait_until(provisioned, timeout=30, what="roles and resources to reach the server")
    return created


@pytest.fixture(scope="session")
def tokens(portcullis, client_secrets) -> dict[str, str]:
    """One access token per case (the main server's tokens live 15 minutes)."""
    return {
        "reader": portcullis.token("reader", client_secrets["reader"], scope="models:read"),
        "invoker": portcullis.token("invoker", client_secrets["invoker"],
                                    scope="models:read models:invoke"),
        "invoke-only": portcullis.token("invoker", client_secrets["invoker"], scope="models:invoke"),
        "ops": portcullis.token("ops", client_secrets["ops"], scope="models:read"),
        "other-api": portcullis.token("other-api", client_secrets["other-api"],
                                      scope="reports:read", resource=OTHER_AUDIENCE),
        "limited": portcullis.token("limited", client_secrets["limited"],
                                    scope="models:read models:invoke"),
        "rsa-reader": portcullis.token("rsa-reader", client_secrets["rsa-reader"],
                                       scope="rsa:read", resource=RSA_AUDIENCE),
    }


@pytest.fixture(scope="session")
def foreign_issuer(portcullis, workdir, client_secrets):
    server = Portcullis(workdir, "foreign-issuer", database_url=portcullis.database_url,
                        kek=portcullis.kek,
                        settings={"PORTCULLIS_KEYRING_POLL_INTERVAL": "1"})
    assert server.issuer != portcullis.issuer
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def short_ttl(portcullis, workdir, client_secrets):
    server = Portcullis(workdir, "short-ttl", database_url=portcullis.database_url,
                        kek=portcullis.kek, issuer=portcullis.issuer,
                        settings={"PORTCULLIS_ACCESS_TOKEN_TTL": "2",
                                  "PORTCULLIS_JWKS_MAX_AGE": "1",
                                  "PORTCULLIS_KEYRING_POLL_INTERVAL": "1"})
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def app(portcullis):
    return make_app(portcullis)


@pytest.fixture
def client(app):
    return app.test_client()
