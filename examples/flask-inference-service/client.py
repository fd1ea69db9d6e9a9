"""A machine client: gets a client-credentials token from Portcullis, then calls the service.

    PORTCULLIS_ISSUER=http://127.0.0.1:8080 CLIENT_ID=invoker CLIENT_SECRET=... \\
    SERVICE_URL=http://127.0.0.1:5000 python client.py [--dpop]

Optional: SCOPE (default "models:read models:invoke"), INFERENCE_AUDIENCE (the `resource`,
default https://inference.example.test).

``--dpop``: sender-constrained tokens (RFC 9449). The client makes an EC P-256 key, sends a
DPoP proof with the token request, and signs a fresh proof (with ``ath``) for every call to
the service, which it makes with ``Authorization: DPoP``. The key lives in memory only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import sys
import time
from urllib.parse import quote_plus, urlsplit, urlunsplit

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec


class DPoPKey:
    """A client's DPoP key pair and the proofs it signs (RFC 9449 §4.2)."""

    def __init__(self):
        self._private = ec.generate_private_key(ec.SECP256R1())
        self.public_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self._private.public_key()))

    def proof(self, method: str, url: str, access_token: str | None = None) -> str:
        scheme, netloc, path, _, _ = urlsplit(url)
        claims = {
            "jti": secrets.token_urlsafe(16),  # single use: the server remembers it
            "htm": method,
            "htu": urlunsplit((scheme, netloc, path, "", "")),  # no query, no fragment
            "iat": int(time.time()),
        }
        if access_token is not None:  # at a resource server: bind the proof to the token
            digest = hashlib.sha256(access_token.encode("ascii")).digest()
            claims["ath"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        return jwt.encode(claims, self._private, algorithm="ES256",
                          headers={"typ": "dpop+jwt", "jwk": self.public_jwk})


def token_endpoint(issuer: str) -> str:
    """RFC 8414 §3: the metadata lives at /.well-known/oauth-authorization-server."""
    r = requests.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10)
    r.raise_for_status()
    metadata = r.json()
    if metadata.get("issuer") != issuer:  # RFC 8414 §3.3
        raise SystemExit(f"metadata issuer {metadata.get('issuer')!r} is not {issuer!r}")
    return metadata["token_endpoint"]


def get_token(issuer: str, client_id: str, secret: str, scope: str, resource: str,
              dpop: DPoPKey | None = None) -> dict:
    endpoint = token_endpoint(issuer)
    headers = {"DPoP": dpop.proof("POST", endpoint)} if dpop else {}
    r = requests.post(
        endpoint,
        # client_secret_basic: id and secret are form-urlencoded before Basic (RFC 6749 §2.3.1).
        auth=(quote_plus(client_id), quote_plus(secret)),
        data={"grant_type": "client_credentials", "scope": scope, "resource": resource},
        headers=headers,
        timeout=10,
    )
    if r.status_code != 200:
        raise SystemExit(f"token request failed: {r.status_code} {r.text}")
    token = r.json()
    token_type = str(token.get("token_type", "")).lower()
    if dpop and token_type != "dpop":
        # RFC 9449 §5: a server without DPoP support answers with a plain bearer token.
        raise SystemExit(f"--dpop: the token endpoint answered token_type "
                         f"{token.get('token_type')!r}, not 'DPoP': it did not bind the token")
    return token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dpop", action="store_true",
                        help="get a DPoP-bound token and prove possession of its key on each call")
    args = parser.parse_args(argv)

    issuer = os.environ["PORTCULLIS_ISSUER"].rstrip("/")
    service = os.environ.get("SERVICE_URL", "http://127.0.0.1:5000").rstrip("/")
    scope = os.environ.get("SCOPE", "models:read models:invoke")
    resource = os.environ.get("INFERENCE_AUDIENCE", "https://inference.example.test")
    dpop = DPoPKey() if args.dpop else None
    token = get_token(issuer, os.environ["CLIENT_ID"], os.environ["CLIENT_SECRET"], scope,
                      resource, dpop)
    kind = f"token_type={token.get('token_type')!r} " if dpop else ""
    print(f"token: {kind}scope={token.get('scope')!r} expires_in={token.get('expires_in')}")
    access_token = token["access_token"]

    def call(method: str, url: str, **kwargs) -> requests.Response:
        if dpop:  # a fresh proof per request: each one is single use
            headers = {"Authorization": f"DPoP {access_token}",
                       "DPoP": dpop.proof(method, url, access_token)}
        else:
            headers = {"Authorization": f"Bearer {access_token}"}
        return requests.request(method, url, headers=headers, timeout=10, **kwargs)

    def show(label: str, r: requests.Response) -> bool:
        print(f"{label} -> {r.status_code} {r.text.strip()}")
        if "WWW-Authenticate" in r.headers:
            print(f"  WWW-Authenticate: {r.headers['WWW-Authenticate']}")
        return r.status_code == 200

    r = call("GET", f"{service}/v1/models")
    ok = show("GET /v1/models", r)
    model = r.json()["data"][0]["id"] if ok else "sentiment-small"
    r = call("POST", f"{service}/v1/models/{model}/predict",
             json={"input": "Portcullis tokens verify locally, great!"})
    ok = show(f"POST /v1/models/{model}/predict", r) and ok
    print(json.dumps({"ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
