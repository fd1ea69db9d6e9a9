"""client.py end to end: discovery, client_secret_basic, then the service over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness import ServedApp, make_app

CLIENT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "client.py")


@pytest.fixture(scope="module")
def served(portcullis):
    served = ServedApp(make_app(portcullis))
    try:
        yield served
    finally:
        served.close()


def run_client(portcullis, served, client_id, secret, **env):
    environment = {**os.environ, "PORTCULLIS_ISSUER": portcullis.issuer, "CLIENT_ID": client_id,
                   "CLIENT_SECRET": secret, "SERVICE_URL": served.url, **env}
    return subprocess.run([sys.executable, CLIENT], env=environment, capture_output=True,
                          text=True, timeout=60)


def test_invoker_lists_and_predicts(portcullis, served, client_secrets):
    result = run_client(portcullis, served, "invoker", client_secrets["invoker"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "GET /v1/models -> 200" in result.stdout
    assert "POST /v1/models/sentiment-small/predict -> 200" in result.stdout
    assert '"client_id":"invoker"' in result.stdout


def test_reader_is_refused_prediction(portcullis, served, client_secrets):
    result = run_client(portcullis, served, "reader", client_secrets["reader"],
                        SCOPE="models:read")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "GET /v1/models -> 200" in result.stdout
    assert "predict -> 403" in result.stdout
    assert 'error="insufficient_scope", error_description="the token lacks a required scope", ' \
           'scope="models:invoke"' in result.stdout


def test_wrong_secret_fails_cleanly(portcullis, served):
    result = run_client(portcullis, served, "invoker", "x" * 43)
    assert result.returncode != 0
    assert "token request failed: 401" in result.stdout + result.stderr
