"""A real Portcullis process for the end-to-end tests: start, provision through the CLI, stop.

The same approach as examples/flask-inference-service/tests/harness.py: a temporary SQLite
database, a free port, a random key-encryption key, one environment for the server and every
CLI call; the process dies with the test run.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT = 90.0  # a debug binary on a busy 2-core machine
CLI_TIMEOUT = 60.0


def portcullis_bin() -> Path:
    """The binary (``PORTCULLIS_BIN``, default target/debug/portcullis). Without it: skip, with
    a message saying how to get it, or fail in CI (CI=true), where a skip would hide it."""
    path = Path(os.environ.get("PORTCULLIS_BIN") or REPO / "target" / "debug" / "portcullis")
    if not path.is_absolute():
        path = REPO / path
    if not os.access(path, os.X_OK):
        message = (f"Portcullis binary not found at {path}: build it (cargo build -p portcullis "
                   "--bin portcullis) or set PORTCULLIS_BIN")
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI: {message}")
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Portcullis:
    """One ``portcullis serve`` process."""

    def __init__(self, workdir: Path, settings: dict[str, str] | None = None) -> None:
        self.binary = portcullis_bin()
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "portcullis.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTCULLIS_")}
        env.update({
            "PORTCULLIS_DATABASE_URL": str(workdir / "portcullis.db"),
            "PORTCULLIS_BIND": f"127.0.0.1:{self.port}",
            "PORTCULLIS_ISSUER": f"http://127.0.0.1:{self.port}",
            "PORTCULLIS_KEY_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "PORTCULLIS_KEY_ENCRYPTION_KEY_FILE": str(workdir / "unused-kek-file"),
            "PORTCULLIS_KEYRING_POLL_INTERVAL": "1",
            "RUST_LOG": "info,portcullis::access=off",
        })
        env.update(settings or {})
        self.env = env

    @property
    def issuer(self) -> str:
        return self.env["PORTCULLIS_ISSUER"]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Portcullis:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "serve"], env=self.env, cwd=self.workdir,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if requests.get(f"{self.base_url}/healthz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"portcullis did not become healthy:\n{self.log_tail()}")

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

    def cli(self, *args: str) -> str:
        result = subprocess.run([str(self.binary), *args], env=self.env, cwd=self.workdir,
                                capture_output=True, text=True, timeout=CLI_TIMEOUT)
        if result.returncode != 0:
            pytest.fail(f"`portcullis {' '.join(args)}` exited {result.returncode}:\n"
                        f"{result.stderr.strip()}\n{result.stdout.strip()}")
        return result.stdout

    def create_client(self, client_id: str, *, scopes: str, audience: str,
                      roles: tuple[str, ...] = ()) -> str:
        args = ["client", "create", "--id", client_id, "--name", client_id,
                "--grant-type", "client_credentials", "--scope", scopes, "--audience", audience]
        for role in roles:
            args += ["--role", role]
        secret: str = json.loads(self.cli(*args))["client_secret"]
        return secret

    def token_response(self, client_id: str, secret: str, *, scope: str, resource: str,
                       dpop: str | None = None, endpoint: str | None = None) -> Any:
        return requests.post(endpoint or f"{self.base_url}/token", auth=(client_id, secret),
                             data={"grant_type": "client_credentials", "scope": scope,
                                   "resource": resource},
                             headers={"DPoP": dpop} if dpop else {}, timeout=15)
