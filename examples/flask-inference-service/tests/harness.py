"""Real Portcullis processes for the tests: start, provision through the CLI, stop."""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from werkzeug.serving import make_server

REPO = Path(__file__).resolve().parents[3]
AUDIENCE = "https://inference.example.test"
OTHER_AUDIENCE = "https://other.example.test"
RSA_AUDIENCE = "https://inference-rsa.example.test"
# RFC 9728 §5.1: every challenge names the service's protected resource metadata.
RESOURCE_METADATA = f'resource_metadata="{AUDIENCE}/.well-known/oauth-protected-resource"'

# Generous: a debug binary on a busy 2-core machine.
START_TIMEOUT = 90.0
CLI_TIMEOUT = 60.0


def portcullis_bin() -> Path:
    path = Path(os.environ.get("PORTCULLIS_BIN") or REPO / "target" / "debug" / "portcullis")
    if not path.is_absolute():
        path = REPO / path
    if not os.access(path, os.X_OK):
        pytest.fail(f"Portcullis binary not found at {path} (build it or set PORTCULLIS_BIN)")
    return path


try:  # loaded here, not in the forked child
    import ctypes

    _PRCTL = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None


def _die_with_parent() -> None:
    """Linux: SIGTERM the server if pytest itself is killed (no finalizer runs then)."""
    if _PRCTL is not None:
        _PRCTL(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def new_kek() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


class Portcullis:
    """One `portcullis serve` process. Every CLI call gets the same environment."""

    def __init__(self, workdir: Path, name: str, *, database_url: str | None = None,
                 kek: str | None = None, issuer: str | None = None,
                 settings: dict[str, str] | None = None):
        self.workdir = workdir
        self.name = name
        self.database_url = database_url or str(workdir / f"{name}.db")
        self.kek = kek or new_kek()
        self._issuer = issuer
        self.settings = dict(settings or {})
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.log_path = workdir / f"{name}.log"
        self.env: dict[str, str] = {}
        self._configure(free_port())

    def _configure(self, port: int) -> None:
        self.port = port
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTCULLIS_")}
        env.update({
            "PORTCULLIS_DATABASE_URL": self.database_url,
            "PORTCULLIS_BIND": f"127.0.0.1:{port}",
            "PORTCULLIS_ISSUER": self._issuer or f"http://127.0.0.1:{port}",
            "PORTCULLIS_KEY_ENCRYPTION_KEY": self.kek,
            # Keep the key-encryption key out of the working directory, whatever happens.
            "PORTCULLIS_KEY_ENCRYPTION_KEY_FILE": str(self.workdir / "unused-kek-file"),
            "RUST_LOG": "info,portcullis::access=off",
        })
        env.update(self.settings)
        self.env = env

    @property
    def issuer(self) -> str:
        return self.env["PORTCULLIS_ISSUER"]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/.well-known/jwks.json"

    # -- process --------------------------------------------------------------------------

    def start(self) -> "Portcullis":
        binary = portcullis_bin()
        for attempt in range(3):
            if attempt:
                self._configure(free_port())  # the port was taken between pick and bind
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [str(binary), "serve"], env=self.env, cwd=self.workdir,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True, preexec_fn=_die_with_parent if _PRCTL else None,
                )
            if self._wait_healthy():
                return self
            if "in use" not in self.log_tail():
                break
        self.stop()
        pytest.fail(f"portcullis ({self.name}) did not become healthy:\n{self.log_tail()}")

    def _wait_healthy(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if requests.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=15)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- CLI --------------------------------------------------------------------------------

    def cli(self, *args: str, check: bool = True, stdin: str | None = None,
            ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(portcullis_bin()), *args], env=self.env, cwd=self.workdir, input=stdin,
            capture_output=True, text=True, timeout=CLI_TIMEOUT,
        )
        if check and result.returncode != 0:
            pytest.fail(f"`portcullis {' '.join(args)}` exited {result.returncode}:\n"
                        f"{result.stderr.strip()}\n{result.stdout.strip()}")
        return result

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args).stdout)

    def create_client(self, client_id: str, *, scopes: str, audience: str,
                      roles: tuple[str, ...] = ()) -> str:
        args = ["client", "create", "--id", client_id, "--name", client_id,
                "--grant-type", "client_credentials", "--scope", scopes, "--audience", audience]
        for role in roles:
            args += ["--role", role]
        return self.cli_json(*args)["client_secret"]

    # -- HTTP -------------------------------------------------------------------------------

    def token_response(self, client_id: str, secret: str, *, scope: str | None = None,
                       resource: str | None = AUDIENCE) -> requests.Response:
        data = {"grant_type": "client_credentials"}
        if scope is not None:
            data["scope"] = scope
        if resource is not None:
            data["resource"] = resource
        return requests.post(f"{self.base_url}/token", data=data, auth=(client_id, secret),
                             timeout=15)

    def token(self, client_id: str, secret: str, **kwargs: Any) -> str:
        r = self.token_response(client_id, secret, **kwargs)
        assert r.status_code == 200, f"token request for {client_id}: {r.status_code} {r.text}"
        return r.json()["access_token"]

    def jwks_kids(self) -> set[str]:
        r = requests.get(self.jwks_url, timeout=10)
        r.raise_for_status()
        return {k["kid"] for k in r.json()["keys"]}


class ServedApp:
    """A Flask app on a real socket (threaded werkzeug), for concurrency and client.py."""

    def __init__(self, app):
        self.app = app
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def wait_until(condition, *, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def make_app(portcullis: Portcullis, **config):
    """The example service, configured for ``portcullis`` (keyword args override settings)."""
    import app as service

    settings = {"PORTCULLIS_ISSUER": portcullis.issuer, "INFERENCE_AUDIENCE": AUDIENCE,
                "TESTING": True}
    settings.update(config)
    return service.create_app(settings)


def decode_unverified(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def unverified_header(token: str) -> dict:
    return jwt.get_unverified_header(token)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
