"""A machine client: gets a client-credentials token from Portcullis, then calls the service.

    PORTCULLIS_ISSUER=http://127.0.0.1:8080 CLIENT_ID=invoker CLIENT_SECRET=... \\
    SERVICE_URL=http://127.0.0.1:5000 python client.py

Optional: SCOPE (default "models:read models:invoke"), INFERENCE_AUDIENCE (the `resource`,
default https://inference.example.test).
"""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import quote_plus

import requests


def token_endpoint(issuer: str) -> str:
    """RFC 8414 §3: the metadata lives at /.well-known/oauth-authorization-server."""
    r = requests.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10)
    r.raise_for_status()
    metadata = r.json()
    if metadata.get("issuer") != issuer:  # RFC 8414 §3.3
        raise SystemExit(f"metadata issuer {metadata.get('issuer')!r} is not {issuer!r}")
    return metadata["token_endpoint"]


def get_token(issuer: str, client_id: str, secret: str, scope: str, resource: str) -> dict:
    r = requests.post(
        token_endpoint(issuer),
        # client_secret_basic: id and secret are form-urlencoded before Basic (RFC 6749 §2.3.1).
        auth=(quote_plus(client_id), quote_plus(secret)),
        data={"grant_type": "client_credentials", "scope": scope, "resource": resource},
        timeout=10,
    )
    if r.status_code != 200:
        raise SystemExit(f"token request failed: {r.status_code} {r.text}")
    return r.json()


def main() -> int:
    issuer = os.environ["PORTCULLIS_ISSUER"].rstrip("/")
    service = os.environ.get("SERVICE_URL", "http://127.0.0.1:5000").rstrip("/")
    scope = os.environ.get("SCOPE", "models:read models:invoke")
    resource = os.environ.get("INFERENCE_AUDIENCE", "https://inference.example.test")
    token = get_token(issuer, os.environ["CLIENT_ID"], os.environ["CLIENT_SECRET"], scope, resource)
    print(f"token: scope={token.get('scope')!r} expires_in={token.get('expires_in')}")

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token['access_token']}"

    def show(label: str, r: requests.Response) -> bool:
        print(f"{label} -> {r.status_code} {r.text.strip()}")
        if "WWW-Authenticate" in r.headers:
            print(f"  WWW-Authenticate: {r.headers['WWW-Authenticate']}")
        return r.status_code == 200

    r = session.get(f"{service}/v1/models", timeout=10)
    ok = show("GET /v1/models", r)
    model = r.json()["data"][0]["id"] if ok else "sentiment-small"
    r = session.post(f"{service}/v1/models/{model}/predict",
                     json={"input": "Portcullis tokens verify locally, great!"}, timeout=10)
    ok = show(f"POST /v1/models/{model}/predict", r) and ok
    print(json.dumps({"ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
