"""An agent end to end (issue 12 §6), as an MCP client does it: starting from nothing but an
inference service's URL, it gets a 401, reads the service's RFC 9728 metadata, then Portcullis's
RFC 8414 metadata, registers itself (once by a client ID metadata document it serves over
https, once by RFC 7591 dynamic registration), signs a person in with PKCE and `resource` in
real Chromium (a loopback redirect URI on a port chosen at request time, RFC 8252 §7.3), calls
the service, and then an agent the person delegated to exchanges the person's token (RFC 8693)
for one to a second service, which sees the person as `sub` and the agent in `act`.

Skipped without the binary or Chromium on a developer's machine; failed instead in CI."""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import ipaddress
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.serving import make_server

from portcullis_process import Portcullis, free_port, portcullis_bin
from webapps import flask_app

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
PASSWORD = "correct horse battery staple"
AGENT = "research-agent"
# What the MCP client asks for: the inference service's scope, the reports scope the agent
# will use for the person (an exchange never gets more than the person granted), and the
# person's delegation to the agent (docs/agents.md).
MCP_SCOPE = f"models:read reports:read delegate:{AGENT}"
# The MCP client's registered redirect URI: loopback without a port; any port works at
# request time (RFC 8252 §7.3).
REGISTERED_CALLBACK = "http://127.0.0.1/callback"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def browser_tools() -> tuple[str, str]:
    """Chromium and ChromeDriver (PORTCULLIS_TEST_CHROMIUM, PORTCULLIS_TEST_CHROMEDRIVER, as
    the Rust browser tests). Missing: skip, or fail in CI."""
    chromium = os.environ.get("PORTCULLIS_TEST_CHROMIUM") or shutil.which("chromium") \
        or "/usr/bin/chromium"
    driver = os.environ.get("PORTCULLIS_TEST_CHROMEDRIVER") or shutil.which("chromedriver") \
        or "/usr/bin/chromedriver"
    if not (os.access(chromium, os.X_OK) and os.access(driver, os.X_OK)):
        message = "Chromium and ChromeDriver are needed: apt-get install chromium chromium-driver"
        if in_ci():
            pytest.fail(f"CI: {message}")
        pytest.skip(message)
    try:
        import selenium  # noqa: F401
    except ImportError:
        message = "selenium is needed: pip install -e 'clients/python[test]'"
        if in_ci():
            pytest.fail(f"CI: {message}")
        pytest.skip(message)
    return chromium, driver


# --- A test CA and an https server for the client ID metadata document ----------------------


@dataclass
class Tls:
    ca_file: Path
    context: ssl.SSLContext


def make_tls(directory: Path) -> Tls:
    """A CA and a certificate for localhost signed by it; Portcullis trusts the CA through
    its extra-CA setting, as a test deployment would."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent e2e test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file = directory / "localhost.pem"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file = directory / "localhost-key.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return Tls(ca_file, context)


class Documents:
    """An https server on localhost answering GET <path> with a JSON document; counts hits."""

    def __init__(self, tls: Tls) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        self.hits: dict[str, int] = {}
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                document = owner.documents.get(self.path)
                owner.hits[self.path] = owner.hits.get(self.path, 0) + 1
                body = json.dumps(document).encode() if document is not None else b"{}"
                self.send_response(200 if document is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "max-age=300")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = tls.context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"https://localhost:{self.port}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Callback:
    """The MCP client's loopback redirect URI: records the query it is sent to."""

    def __init__(self) -> None:
        self.queries: list[dict[str, str]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/callback":  # not the browser's /favicon.ico
                    owner.queries.append(dict(urllib.parse.parse_qsl(url.query)))
                body = b"<!doctype html><title>Signed in</title><p>You may close this tab."
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/callback"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- The world: Portcullis, two services, an agent, a person ---------------------------------


@dataclass
class World:
    server: Portcullis
    inference: str  # the first service: its URL is its resource identifier
    reports: str  # the second service, reached only through token exchange
    agent_secret: str
    documents: Documents
    callback: Callback
    chromium: str
    chromedriver: str


def serve(app: Any, port: int) -> Any:
    httpd = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    portcullis_bin()
    chromium, chromedriver = browser_tools()
    workdir = Path(tmp_path_factory.mktemp("agent-e2e"))
    tls = make_tls(workdir)
    inference_port, reports_port = free_port(), free_port()
    inference = f"http://127.0.0.1:{inference_port}"
    reports = f"http://127.0.0.1:{reports_port}"
    server = Portcullis(workdir, {
        # Anyone may register a public code-flow client (the MCP default), within these
        # scopes and this audience.
        "PORTCULLIS_REGISTRATION": "open",
        "PORTCULLIS_DYNAMIC_CLIENT_SCOPES": f"openid profile {MCP_SCOPE}",
        "PORTCULLIS_DYNAMIC_CLIENT_AUDIENCES": inference,
        # The metadata documents are served by this test on localhost with a test CA: a
        # deployment would allow neither.
        "PORTCULLIS_CLIENT_METADATA_FETCH_ALLOW_PRIVATE_HOSTS": "localhost",
        "PORTCULLIS_CLIENT_METADATA_FETCH_CA_FILE": str(tls.ca_file),
    }).start()
    documents = Documents(tls)
    callback = Callback()
    services = []
    try:
        server.cli("resource", "create", "--audience", inference, "--scope",
                   "models:read models:invoke")
        server.cli("resource", "create", "--audience", reports, "--scope", "reports:read")
        server.cli("role", "create", "analyst", "--scope", "models:read reports:read")
        server.cli("role", "create", "reporting-agent", "--scope", "reports:read")
        agent_secret = json.loads(server.cli(
            "client", "create", "--id", AGENT, "--name", "Research Agent",
            "--grant-type", "client_credentials", "--grant-type", EXCHANGE,
            "--scope", "reports:read", "--audience", reports, "--role", "reporting-agent",
        ))["client_secret"]
        created = subprocess.run(
            [str(server.binary), "user", "create", "--username", "ada", "--email",
             "ada@example.com", "--name", "Ada Lovelace", "--role", "analyst",
             "--password-stdin"],
            input=PASSWORD, env=server.env, cwd=workdir, capture_output=True, text=True,
            timeout=60)
        assert created.returncode == 0, created.stderr
        # CLI changes reach the running server within its 1 s poll interval.
        deadline = time.monotonic() + 30
        while server.token_response(AGENT, agent_secret, scope="reports:read",
                                    resource=reports).status_code != 200:
            assert time.monotonic() < deadline, "the agent never became usable"
            time.sleep(0.2)
        for url, port in ((inference, inference_port), (reports, reports_port)):
            services.append(serve(flask_app({"realm": "inference"}, config={
                "PORTCULLIS_ISSUER": server.issuer, "PORTCULLIS_AUDIENCE": url}), port))
        yield World(server, inference, reports, agent_secret, documents, callback, chromium,
                    chromedriver)
    finally:
        for httpd in services:
            httpd.shutdown()
            httpd.server_close()
        callback.stop()
        documents.stop()
        server.stop()


# --- What an MCP client does --------------------------------------------------------------------


def challenge_params(challenge: str) -> dict[str, str]:
    return dict(re.findall(r'(\w+)="([^"]*)"', challenge))


@dataclass
class Discovered:
    resource: str
    issuer: str
    metadata: dict[str, Any]


def discover(service_url: str) -> Discovered:
    """MCP authorization: 401 → resource_metadata (RFC 9728 §5.1) → the authorization
    server's metadata (RFC 8414 §3)."""
    r = requests.get(f"{service_url}/v1/models", timeout=15)
    assert r.status_code == 401
    challenge = r.headers["WWW-Authenticate"]
    metadata_url = challenge_params(challenge)["resource_metadata"]
    resource_metadata = requests.get(metadata_url, timeout=15).json()
    assert resource_metadata["resource"] == service_url
    issuer = resource_metadata["authorization_servers"][0]
    metadata = requests.get(f"{issuer}/.well-known/oauth-authorization-server",
                            timeout=15).json()
    assert metadata["issuer"] == issuer  # RFC 8414 §3.3
    assert "S256" in metadata["code_challenge_methods_supported"]
    return Discovered(service_url, issuer, metadata)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def sign_in_with_chromium(world: World, authorize_url: str) -> tuple[dict[str, str], str]:
    """Ada signs in and consents in real Chromium; the query the callback got, and the
    consent page's text."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = world.chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1200,900"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(executable_path=world.chromedriver),
                               options=options)
    try:
        wait = WebDriverWait(browser, 30)
        seen = len(world.callback.queries)
        browser.get(authorize_url)
        wait.until(expected_conditions.presence_of_element_located((By.ID, "username")))
        browser.find_element(By.ID, "username").send_keys("ada")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "sign-in").click()
        allow = wait.until(expected_conditions.element_to_be_clickable((By.ID, "allow")))
        consent = browser.find_element(By.TAG_NAME, "body").text
        allow.click()
        wait.until(lambda _: len(world.callback.queries) > seen)
        return world.callback.queries[-1], consent
    finally:
        browser.quit()


def authorize_and_redeem(world: World, found: Discovered,
                         client_id: str) -> tuple[dict[str, Any], str]:
    """The code flow with PKCE S256 and `resource` (RFC 8707); the token response and the
    consent page's text."""
    verifier, challenge = pkce()
    state = secrets.token_urlsafe(16)
    query = urllib.parse.urlencode({
        "response_type": "code", "client_id": client_id,
        "redirect_uri": world.callback.redirect_uri, "scope": MCP_SCOPE, "state": state,
        "code_challenge": challenge, "code_challenge_method": "S256",
        "resource": found.resource,
    })
    answer, consent = sign_in_with_chromium(
        world, f"{found.metadata['authorization_endpoint']}?{query}")
    assert answer.get("state") == state, answer
    assert answer.get("iss") == found.issuer, "RFC 9207 iss in the response"
    r = requests.post(found.metadata["token_endpoint"], data={
        "grant_type": "authorization_code", "code": answer["code"], "client_id": client_id,
        "redirect_uri": world.callback.redirect_uri, "code_verifier": verifier,
        "resource": found.resource,
    }, timeout=15)
    assert r.status_code == 200, r.text
    return r.json(), consent


def act_for_the_person(world: World, found: Discovered, person_token: str) -> None:
    """The MCP client's token works at the service; the agent exchanges it for the second
    service, which sees Ada as `sub` and the agent in `act`."""
    claims = jwt.decode(person_token, options={"verify_signature": False})
    assert claims["aud"] == world.inference
    assert claims["may_act"] == {"sub": AGENT}, claims
    assert "reports:read" not in claims["scope"].split(), "narrowed to its audience"
    r = requests.get(f"{world.inference}/v1/models",
                     headers={"Authorization": f"Bearer {person_token}"}, timeout=15)
    assert r.status_code == 200, r.text
    ada = r.json()["sub"]
    assert ada == claims["sub"] and r.json()["actor"] is None

    exchanged = requests.post(found.metadata["token_endpoint"],
                              auth=(AGENT, world.agent_secret),
                              data={"grant_type": EXCHANGE, "subject_token": person_token,
                                    "subject_token_type": ACCESS_TOKEN_TYPE,
                                    "resource": world.reports}, timeout=15)
    assert exchanged.status_code == 200, exchanged.text
    assert exchanged.json()["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert "refresh_token" not in exchanged.json()
    agent_token = exchanged.json()["access_token"]
    seen = requests.get(f"{world.reports}/any",
                        headers={"Authorization": f"Bearer {agent_token}"}, timeout=15)
    assert seen.status_code == 200, seen.text
    assert seen.json()["sub"] == ada, "the second service sees the person"
    assert seen.json()["actor"] == AGENT, "and the agent acting for them"
    assert seen.json()["actor_chain"] == [AGENT]
    assert seen.json()["scopes"] == ["reports:read"]
    # The person's own token is not for the second service.
    wrong = requests.get(f"{world.reports}/any",
                         headers={"Authorization": f"Bearer {person_token}"}, timeout=15)
    assert wrong.status_code == 401


def test_an_mcp_client_registered_by_its_metadata_document(world: World) -> None:
    found = discover(world.inference)
    assert found.metadata.get("client_id_metadata_document_supported") is True
    client_id = world.documents.url("/mcp/client.json")
    world.documents.documents["/mcp/client.json"] = {
        "client_id": client_id,
        "client_name": "Notebook MCP client",
        "redirect_uris": [REGISTERED_CALLBACK],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": f"openid profile {MCP_SCOPE}",
    }
    tokens, consent = authorize_and_redeem(world, found, client_id)
    assert "Notebook MCP client" in consent, consent
    assert "localhost" in consent, "the consent page shows where the client comes from"
    assert "returns only to a program on this device" in consent, "and warns: loopback only"
    assert "Research Agent" in consent, "and names the agent the person delegates to"
    act_for_the_person(world, found, tokens["access_token"])
    assert world.documents.hits["/mcp/client.json"] >= 1


def test_an_mcp_client_registered_dynamically(world: World) -> None:
    found = discover(world.inference)
    registered = requests.post(found.metadata["registration_endpoint"], json={
        "client_name": "Terminal MCP client",
        "redirect_uris": [REGISTERED_CALLBACK],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": MCP_SCOPE,
    }, timeout=15)
    assert registered.status_code == 201, registered.text
    client = registered.json()
    assert "client_secret" not in client, "a public client (RFC 7591 §3.2.1)"
    assert client["redirect_uris"] == [REGISTERED_CALLBACK]
    tokens, consent = authorize_and_redeem(world, found, client["client_id"])
    assert "Terminal MCP client" in consent, consent
    assert "returns only to a program on this device" in consent, consent
    act_for_the_person(world, found, tokens["access_token"])
    # RFC 7592: the client reads its registration with its registration access token.
    read = requests.get(client["registration_client_uri"], headers={
        "Authorization": f"Bearer {client['registration_access_token']}"}, timeout=15)
    assert read.status_code == 200, read.text
    assert read.json()["client_id"] == client["client_id"]
