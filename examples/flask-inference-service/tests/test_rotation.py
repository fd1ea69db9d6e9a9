"""Key rotation under load: the service keeps verifying every valid token.

A dedicated Portcullis with compressed timings:

    jwks_max_age 2 s, keyring_poll_interval 1 s, access/id token TTL 6 s, rotation period 5 s
    => publish_before_use = 2 + 1 + 1 = 4 s; keep_retired_for = 6 + 2 + 1 + 1 = 10 s
    (the last second is the server's margin for its whole-second clock)

(``max_access_token_ttl`` is set to 6 as well: it also counts as a token lifetime, and its
default of 3600 s would keep retired keys published for an hour.)

For ~30 s a loop takes client-credentials tokens and calls the Flask service with each new
token and with the oldest still-valid one (often signed by a retired key), while keys rotate
by themselves every ~5 s and, for a while, on demand with ``portcullis keys rotate``. A
second thread polls the JWKS every 0.25 s.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import pytest
import requests

from harness import AUDIENCE, Portcullis, bearer, decode_unverified, make_app, unverified_header

MAX_AGE, POLL, TTL, PERIOD = 2, 1, 6, 5
DURATION = 30.0
ON_DEMAND = (11.0, 21.0)  # seconds into the run during which `keys rotate` is tried
JWKS_POLL = 0.25


@dataclass
class KidSeen:
    first_seen: float | None = None  # first JWKS poll that listed it (response time)
    last_present: float | None = None  # request time of the last poll that listed it
    gone: float | None = None  # response time of the first poll that no longer listed it


@dataclass
class Run:
    failures: list = field(default_factory=list)
    tokens: list = field(default_factory=list)  # (received, kid, iat, exp)
    kids: dict = field(default_factory=dict)  # kid -> KidSeen
    cli_rotated: list = field(default_factory=list)  # kids announced by `keys rotate`
    cli_waits: int = 0
    cli_errors: list = field(default_factory=list)
    jwks_errors: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def rotating(workdir):
    server = Portcullis(workdir, "rotation", settings={
        "PORTCULLIS_JWKS_MAX_AGE": str(MAX_AGE),
        "PORTCULLIS_KEYRING_POLL_INTERVAL": str(POLL),
        "PORTCULLIS_ACCESS_TOKEN_TTL": str(TTL),
        "PORTCULLIS_MAX_ACCESS_TOKEN_TTL": str(TTL),
        "PORTCULLIS_ID_TOKEN_TTL": str(TTL),
        "PORTCULLIS_KEY_ROTATION_PERIOD": str(PERIOD),
    })
    try:
        yield server.start()
    finally:
        server.stop()


def poll_jwks(server: Portcullis, run: Run, stop: threading.Event) -> None:
    session = requests.Session()
    while not stop.is_set():
        sent = time.time()
        try:
            r = session.get(server.jwks_url, timeout=10)
            r.raise_for_status()
            kids = {k["kid"] for k in r.json()["keys"]}
        except (requests.RequestException, ValueError) as e:
            run.jwks_errors.append(repr(e))
            stop.wait(JWKS_POLL)
            continue
        received = time.time()
        with run.lock:
            for kid in kids:
                seen = run.kids.setdefault(kid, KidSeen())
                if seen.first_seen is None:
                    seen.first_seen = received
                seen.last_present = sent
            for kid, seen in run.kids.items():
                if kid not in kids and seen.gone is None:
                    seen.gone = received
        stop.wait(JWKS_POLL)


def rotate_on_demand(server: Portcullis, run: Run, started: float, stop: threading.Event) -> None:
    if stop.wait(ON_DEMAND[0]):
        return
    while not stop.is_set() and time.monotonic() - started < ON_DEMAND[1]:
        result = server.cli("keys", "rotate", check=False)
        for line in result.stdout.splitlines():
            if line.startswith("ES256: now signing with "):
                run.cli_rotated.append(line.rsplit(" ", 1)[1])
        if result.returncode == 0:
            pass
        elif "rotation must wait" in result.stderr:
            run.cli_waits += 1
        else:
            run.cli_errors.append((result.returncode, result.stderr.strip()))
        stop.wait(1.0)


def test_rotation_never_breaks_verification(rotating):
    server = rotating
    secret = server.create_client("rot", scopes="models:read models:invoke", audience=AUDIENCE)
    app = make_app(server, JWKS_MIN_REFRESH_INTERVAL=1)
    cache = app.extensions["portcullis_auth"].jwks
    client = app.test_client()
    r = requests.get(server.jwks_url, timeout=10)
    assert r.headers["Cache-Control"] == f"public, max-age={MAX_AGE}"

    run = Run()
    stop = threading.Event()
    started = time.monotonic()
    threads = [
        threading.Thread(target=poll_jwks, args=(server, run, stop), daemon=True),
        threading.Thread(target=rotate_on_demand, args=(server, run, started, stop), daemon=True),
    ]
    for t in threads:
        t.start()
    pool: deque = deque()  # (exp, kid, token), oldest first
    calls = 0

    def check(token: str, kid: str, exp: int, what: str) -> None:
        nonlocal calls
        calls += 1
        resp = client.get("/v1/models", headers=bearer(token))
        if resp.status_code != 200 and time.time() < exp:
            run.failures.append((what, kid, resp.status_code, resp.get_json(),
                                 round(time.monotonic() - started, 2)))

    try:
        for _ in range(5000):  # bounded: the clock below ends it long before this
            if time.monotonic() - started >= DURATION:
                break
            token = server.token("rot", secret, scope="models:read")
            received = time.time()
            kid = unverified_header(token)["kid"]
            claims = decode_unverified(token)
            with run.lock:
                run.tokens.append((received, kid, claims["iat"], claims["exp"]))
            check(token, kid, claims["exp"], "new token")
            pool.append((claims["exp"], kid, token))
            while pool and pool[0][0] - time.time() < 1.5:
                pool.popleft()  # about to expire: a late answer would prove nothing
            if pool:
                exp, old_kid, old = pool[0]
                check(old, old_kid, exp, "oldest valid token")
            time.sleep(0.05)
        keys = server.cli_json("keys", "list", "--json")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)

    signing_kids = list(dict.fromkeys(kid for _, kid, _, _ in run.tokens))
    last_exp: dict[str, int] = {}
    first_used: dict[str, float] = {}
    for received, kid, _, exp in run.tokens:
        last_exp[kid] = max(exp, last_exp.get(kid, 0))
        first_used.setdefault(kid, received)
    automatic = [k for k in signing_kids[1:] if k not in run.cli_rotated]
    gone = {kid: run.kids[kid] for kid in signing_kids
            if kid in run.kids and run.kids[kid].gone is not None}
    summary = {
        "tokens": len(run.tokens), "service calls": calls, "signing kids": len(signing_kids),
        "on-demand rotations": len(run.cli_rotated), "on-demand refused": run.cli_waits,
        "automatic rotations (seen)": len(automatic), "kids removed": len(gone),
        "removal margin (s)": {k[:8]: round(s.gone - last_exp[k], 2) for k, s in gone.items()},
        "published before first use (s)": {
            k[:8]: round(first_used[k] - run.kids[k].first_seen, 2)
            for k in signing_kids[1:] if k in run.kids and run.kids[k].first_seen},
        "service JWKS stats": cache.stats,
    }
    print("rotation summary:", summary)

    assert not run.cli_errors, run.cli_errors
    assert not run.failures, (run.failures, summary)
    assert len(signing_kids) >= 3, summary
    assert run.cli_rotated, f"no on-demand rotation succeeded: {summary}"
    assert automatic, f"no automatic rotation was seen: {summary}"
    # A kid leaves the JWKS only after every token it signed has expired.
    assert gone, f"no signing key was removed during the run: {summary}"
    for kid, seen in gone.items():
        assert seen.gone >= last_exp[kid], (kid, seen, last_exp[kid], summary)
    # Every signing kid was published before its first token (the first one signs at once).
    for kid in signing_kids[1:]:
        seen = run.kids.get(kid)
        assert seen and seen.first_seen is not None, (kid, summary)
        assert seen.first_seen <= first_used[kid], (kid, seen, first_used[kid], summary)
    # `keys list --json` shows the three states, and the retirement timing.
    states = {k["state"] for k in keys}
    assert {"next", "active", "retired"} <= states, keys
    for alg in ("ES256", "RS256"):
        of_alg = [k for k in keys if k["alg"] == alg]
        assert [k["state"] for k in of_alg].count("active") == 1, of_alg
        assert [k["state"] for k in of_alg].count("next") == 1, of_alg
    for k in keys:
        if k["state"] == "retired":
            # +1: the server's margin for its whole-second clock.
            assert k["remove_after"] - k["retired_at"] == TTL + MAX_AGE + POLL + 1, k
