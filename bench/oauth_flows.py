#!/usr/bin/env python3
"""HTTP-level OAuth flows against Portcullis for bench/database and bench/soak (stdlib only).

    oauth_flows.py jwt-check --alg ES256 --aud URI        < token response (JSON)
    oauth_flows.py mint --kind codes|refresh-tokens --n N --out FILE   (settings in BENCH_* env)
    oauth_flows.py soak-drive --out-dir DIR ...            the soak's flows and sampler
    oauth_flows.py soak-report --out-dir DIR ...           the soak's summary and verdict

The browser part is the real one: GET /authorize, the login page and its CSRF token, POST
/login, the consent page, POST /consent; the session cookie is kept, so once consent is
remembered a new GET /authorize answers 303 to the redirect URI with a code at once.

Settings shared by `mint` and `soak-drive` come from the environment:
    BENCH_URL            the server, http://127.0.0.1:PORT
    BENCH_CLIENT_ID, BENCH_CLIENT_SECRET, BENCH_REDIRECT_URI, BENCH_SCOPE
    BENCH_USERNAME, BENCH_PASSWORD
    BENCH_VERIFIER       optional: the PKCE code verifier
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import random
import re
import statistics
import sys
import threading
import time
import urllib.parse

# One PKCE pair for every flow (RFC 7636 §4.1: 43 to 128 unreserved characters). bench/database
# passes its own in BENCH_VERIFIER, which its wrk script sends with each code.
VERIFIER = os.environ.get("BENCH_VERIFIER") or "bench-pkce-verifier-" + "x" * 43
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()


class FlowError(Exception):
    pass


class Http:
    """One keep-alive connection with a cookie jar (name → value; paths and expiry ignored:
    every cookie Portcullis sets has Path=/)."""

    def __init__(self, base, timeout=30.0):
        url = urllib.parse.urlsplit(base)
        self.host, self.port = url.hostname, url.port or 80
        self.timeout = timeout
        self.conn = None
        self.last_used = 0.0
        self.cookies = {}
        self.reconnects = 0

    def _connect(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(self, method, path, form=None, headers=None, basic=None):
        body = urllib.parse.urlencode(form) if form is not None else None
        hdrs = dict(headers or {})
        if body is not None:
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        if basic is not None:
            hdrs["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        # A keep-alive connection idle for a while may have been closed by the server (actix
        # closes after 5 s): such a request never reached it, so it is sent again once.
        for attempt in (1, 2):
            stale = self.conn is not None and time.monotonic() - self.last_used > 2.0
            if self.conn is None:
                self._connect()
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                resp = self.conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt == 1 and stale:
                    self.reconnects += 1
                    continue
                raise
            except Exception:
                self.conn.close()
                self.conn = None
                raise
            self.last_used = time.monotonic()
            for name, value in resp.getheaders():
                if name.lower() == "set-cookie":
                    pair = value.split(";", 1)[0]
                    k, _, v = pair.partition("=")
                    if "max-age=0" in value.lower() or v == "":
                        self.cookies.pop(k.strip(), None)
                    else:
                        self.cookies[k.strip()] = v.strip()
            if resp.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            return resp.status, resp, data
        raise AssertionError("unreachable")


def hidden(html, name):
    m = re.search(r'name="%s" value="([^"]*)"' % re.escape(name), html)
    if not m:
        raise FlowError(f"no hidden field {name} in the page: {html[:300]!r}")
    return m.group(1)


class Flow:
    def __init__(self, env=os.environ):
        self.url = env["BENCH_URL"]
        self.client_id = env["BENCH_CLIENT_ID"]
        self.client_secret = env["BENCH_CLIENT_SECRET"]
        self.redirect_uri = env["BENCH_REDIRECT_URI"]
        self.scope = env["BENCH_SCOPE"]
        self.username = env.get("BENCH_USERNAME", "")
        self.password = env.get("BENCH_PASSWORD", "")

    def authorize_path(self, state):
        return "/authorize?" + urllib.parse.urlencode({
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scope,
            "state": state,
            "code_challenge": CHALLENGE,
            "code_challenge_method": "S256",
        })

    def code_from(self, location, state):
        if not location.startswith(self.redirect_uri + "?"):
            raise FlowError(f"redirected to {location!r}, not to the redirect URI")
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
        if "error" in q:
            raise FlowError(f"authorization error: {q}")
        if q.get("state") != [state]:
            raise FlowError(f"state mismatch in {location!r}")
        return q["code"][0]

    def sign_in(self, http):
        """The whole browser flow once: sign in, consent. Returns the first code."""
        state = "s-sign-in"
        st, resp, body = http.request("GET", self.authorize_path(state))
        loc = resp.getheader("Location", "")
        if st != 303:
            raise FlowError(f"GET /authorize: {st} {body[:300]!r}")
        if loc.startswith(self.redirect_uri):
            return self.code_from(loc, state)  # already signed in and consented
        if not loc.startswith("/login?"):
            raise FlowError(f"GET /authorize redirected to {loc!r}, not to /login")
        st, resp, body = http.request("GET", loc)
        if st != 200:
            raise FlowError(f"GET {loc}: {st} {body[:300]!r}")
        page = body.decode()
        st, resp, body = http.request("POST", "/login", form={
            "csrf_token": hidden(page, "csrf_token"),
            "request": hidden(page, "request"),
            "username": self.username,
            "password": self.password,
        })
        loc = resp.getheader("Location", "")
        if st != 303 or not loc.startswith("/authorize/resume"):
            raise FlowError(f"POST /login: {st} {loc!r} {body[:300]!r}")
        st, resp, body = http.request("GET", loc)
        if st == 303:
            return self.code_from(resp.getheader("Location", ""), state)
        if st != 200:
            raise FlowError(f"GET {loc}: {st} {body[:300]!r}")
        page = body.decode()
        st, resp, body = http.request("POST", "/consent", form={
            "csrf_token": hidden(page, "csrf_token"),
            "request": hidden(page, "request"),
            "decision": "allow",
        })
        if st != 303:
            raise FlowError(f"POST /consent: {st} {body[:300]!r}")
        return self.code_from(resp.getheader("Location", ""), state)

    def authorize(self, http, state):
        """The cheap path: signed in, consent remembered → (status, code or None, body)."""
        st, resp, body = http.request("GET", self.authorize_path(state))
        if st != 303:
            return st, None, body
        return st, self.code_from(resp.getheader("Location", ""), state), body

    def exchange(self, http, code):
        return http.request("POST", "/token", form={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": VERIFIER,
        }, basic=(self.client_id, self.client_secret))

    def refresh(self, http, refresh_token):
        return http.request("POST", "/token", form={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }, basic=(self.client_id, self.client_secret))


def b64json(part):
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# ---------------------------------------------------------------------------------------------
def cmd_jwt_check(args):
    """Token response on stdin: 200-body JSON with a JWT access token of the right alg and aud."""
    raw = sys.stdin.read()
    try:
        token = json.loads(raw)["access_token"]
        header, payload = (b64json(p) for p in token.split(".")[:2])
    except Exception as e:  # noqa: BLE001
        sys.exit(f"not a token response with a JWT access token ({e}): {raw[:300]}")
    aud = payload.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if header.get("alg") != args.alg:
        sys.exit(f"access token header alg is {header.get('alg')!r}, expected {args.alg}")
    if args.aud not in auds:
        sys.exit(f"access token aud is {aud!r}, expected {args.aud}")
    print(f"alg={header['alg']} typ={header.get('typ')} aud={aud} scope={payload.get('scope')} "
          f"exp-iat={payload.get('exp', 0) - payload.get('iat', 0)}s bytes={len(token)}")


def cmd_mint(args):
    """Signs in once, then mints N codes (cheap /authorize) or N refresh tokens (code + exchange)
    with several threads sharing the session cookie, one per line into --out."""
    flow = Flow()
    first = Http(flow.url)
    t0 = time.monotonic()
    code = flow.sign_in(first)
    cookies = dict(first.cookies)
    results = [None] * args.n
    errors = []
    if args.kind == "codes":
        results[0] = code
        start = 1
    else:
        start = 0
        # The sign-in code is simply dropped: unused codes expire.

    def work(worker):
        http = Http(flow.url)
        http.cookies = dict(cookies)
        for i in range(start + worker, args.n, args.threads):
            if errors:
                return
            try:
                st, code, body = flow.authorize(http, f"s{i}")
                if code is None:
                    raise FlowError(f"GET /authorize: {st} {body[:300]!r}")
                if args.kind == "codes":
                    results[i] = code
                    continue
                st, _, body = flow.exchange(http, code)
                if st != 200:
                    raise FlowError(f"code exchange: {st} {body[:300]!r}")
                rt = json.loads(body).get("refresh_token")
                if not rt:
                    raise FlowError(f"no refresh_token in {body[:300]!r} (offline_access in the scope?)")
                results[i] = rt
            except Exception as e:  # noqa: BLE001
                errors.append(e)
                return

    threads = [threading.Thread(target=work, args=(w,)) for w in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit(f"mint {args.kind}: {errors[0]}")
    with open(args.out, "w") as f:
        f.write("\n".join(results) + "\n")
    elapsed = time.monotonic() - t0
    print(f"{args.n} {args.kind} in {elapsed:.1f} s ({args.n / elapsed:.0f}/s, {args.threads} threads)")


# ---------------------------------------------------------------------------------------------
# Soak: flows at fixed moderate rates, a sampler of the server's resources.

EXPECTED = {
    "authorize": {303},
    "token:code": {200},
    "token:refresh": {200},
    "introspect": {200},
    "jwks": {200},
    "login-page": {200},
    "login-failed": {401, 429},
}


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}          # "kind status" -> n
        self.errors = {}          # "kind: what" -> n
        self.samples = []         # first few unexpected answers, verbatim
        self.latencies = {}       # kind -> [seconds]

    def add(self, kind, status, seconds=None, body=b""):
        with self.lock:
            key = f"{kind} {status}"
            self.counts[key] = self.counts.get(key, 0) + 1
            if seconds is not None:
                self.latencies.setdefault(kind, []).append(seconds)
            if status not in EXPECTED.get(kind, ()):
                self.errors[f"{kind}: status {status}"] = self.errors.get(f"{kind}: status {status}", 0) + 1
                if len(self.samples) < 20:
                    self.samples.append(f"{time.strftime('%H:%M:%S')} {kind} {status} {body[:300]!r}")

    def error(self, kind, what):
        with self.lock:
            key = f"{kind}: {what}"
            self.errors[key] = self.errors.get(key, 0) + 1
            if len(self.samples) < 20:
                self.samples.append(f"{time.strftime('%H:%M:%S')} {kind} {what}")


def paced(rate, deadline, stop):
    """Yields at `rate` per second until the deadline; never bursts to catch up."""
    interval = 1.0 / rate
    nxt = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        if now >= deadline:
            return
        if nxt > now:
            time.sleep(min(nxt - now, deadline - now))
            continue
        yield
        nxt = max(nxt + interval, time.monotonic() - 1.0)


def socket_inodes(pid):
    inodes = set()
    fds = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        fds += 1
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return fds, inodes


def tcp_counts(pid, server_port, pg_port, redis_port):
    fds, inodes = socket_inodes(pid)
    counts = {"postgres": 0, "redis": 0, "clients": 0, "not_established": 0}
    for table in ("tcp", "tcp6"):
        try:
            lines = open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[9] not in inodes:
                continue
            state = f[3]
            if state == "0A":  # LISTEN
                continue
            if state != "01":  # not ESTABLISHED: CLOSE_WAIT and friends would be leaks
                counts["not_established"] += 1
                continue
            lport = int(f[1].rsplit(":", 1)[1], 16)
            rport = int(f[2].rsplit(":", 1)[1], 16)
            if pg_port and rport == pg_port:
                counts["postgres"] += 1
            elif redis_port and rport == redis_port:
                counts["redis"] += 1
            elif lport == server_port:
                counts["clients"] += 1
            else:
                counts["not_established"] += 0  # other outbound: none expected
    return fds, counts


def proc_status(pid):
    rss = threads = 0
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss, threads


def cmd_soak_drive(args):
    flow = Flow()
    tally = Tally()
    stop = threading.Event()
    basic = (flow.client_id, flow.client_secret)
    server_port = int(urllib.parse.urlsplit(flow.url).port)

    # Set-up (not counted): sign in once, and the refresh chains.
    setup = Http(flow.url)
    flow.sign_in(setup)
    session_cookies = dict(setup.cookies)
    chains = []
    for i in range(args.refresh_chains):
        st, code, body = flow.authorize(setup, f"chain{i}")
        if code is None:
            sys.exit(f"soak set-up: GET /authorize answered {st}: {body[:300]!r}")
        st, _, body = flow.exchange(setup, code)
        if st != 200:
            sys.exit(f"soak set-up: code exchange answered {st}: {body[:300]!r}")
        chains.append(json.loads(body)["refresh_token"])
    latest_access = [json.loads(body)["access_token"]]
    if args.ready_file:
        open(args.ready_file, "w").close()

    start = time.monotonic()
    deadline = start + args.duration

    def guarded(kind, fn):
        def run():
            try:
                fn()
            except Exception as e:  # noqa: BLE001  a driver bug must not pass as a quiet soak
                tally.error(kind, f"driver stopped: {type(e).__name__}: {e}")
        return run

    def timed(kind, fn):
        t = time.monotonic()
        try:
            st, resp, body = fn()
        except Exception as e:  # noqa: BLE001
            tally.error(kind, f"{type(e).__name__}: {e}")
            return None, None, None
        tally.add(kind, st, time.monotonic() - t, body)
        return st, resp, body

    def code_flow():
        http = Http(flow.url)
        http.cookies = dict(session_cookies)
        n = 0
        for _ in paced(args.code_rate, deadline, stop):
            n += 1
            state = f"soak{n}"
            st, resp, body = timed("authorize", lambda: http.request("GET", flow.authorize_path(state)))
            if st != 303:
                continue
            try:
                code = flow.code_from(resp.getheader("Location", ""), state)
            except FlowError as e:
                tally.error("authorize", str(e))
                continue
            st, _, body = timed("token:code", lambda: flow.exchange(http, code))
            if st == 200:
                latest_access[0] = json.loads(body)["access_token"]

    def refresh():
        http = Http(flow.url)
        i = 0
        for _ in paced(args.refresh_rate, deadline, stop):
            if not chains:
                tally.error("token:refresh", "every chain is broken")
                return
            i = (i + 1) % len(chains)
            st, _, body = timed("token:refresh", lambda: flow.refresh(http, chains[i]))
            if st == 200:
                chains[i] = json.loads(body)["refresh_token"]
            elif st is not None:
                chains.pop(i)  # this family is spent or revoked: never reuse its token

    def introspect():
        http = Http(flow.url)
        for _ in paced(args.introspect_rate, deadline, stop):
            token = latest_access[0]
            st, _, body = timed("introspect", lambda: http.request(
                "POST", "/introspect", form={"token": token}, basic=basic))
            if st == 200 and not json.loads(body).get("active"):
                tally.error("introspect", "active: false for a fresh access token")

    def jwks():
        http = Http(flow.url)
        for _ in paced(args.jwks_rate, deadline, stop):
            timed("jwks", lambda: http.request("GET", "/.well-known/jwks.json"))

    def failed_logins():
        http = Http(flow.url)
        st, _, body = timed("login-page", lambda: http.request("GET", "/login"))
        if st != 200:
            return
        csrf = hidden(body.decode(), "csrf_token")
        pool = [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(args.login_addresses)]
        rng = random.Random(42)
        n = 0
        for _ in paced(args.login_rate, deadline, stop):
            n += 1
            # Half for one existing account (its per-username slowdown answers 429 after a
            # while), half for usernames that exist nowhere (401: only the per-address and
            # per-pair counters see them).
            username = args.victim if n % 2 else f"nobody-{n}"
            st, _, body = timed("login-failed", lambda: http.request("POST", "/login", form={
                "csrf_token": csrf, "request": "", "username": username,
                "password": "wrong-password-%d" % n,
            }, headers={"X-Forwarded-For": rng.choice(pool)}))
            if st in (403, 400) and b"expired" in (body or b"").lower():
                # The CSRF token is tied to the session: a new page, once.
                st2, _, body2 = timed("login-page", lambda: http.request("GET", "/login"))
                if st2 == 200:
                    csrf = hidden(body2.decode(), "csrf_token")

    def sampler():
        with open(os.path.join(args.out_dir, "samples.csv"), "w") as out:
            out.write("elapsed_s,rss_kib,threads,fds,tcp_postgres,tcp_redis,tcp_clients,tcp_not_established,flow_requests\n")
            nxt = start
            while True:
                now = time.monotonic()
                if nxt > now:
                    if stop.wait(nxt - now):
                        break
                try:
                    rss, threads = proc_status(args.pid)
                    fds, tcp = tcp_counts(args.pid, server_port, args.pg_port, args.redis_port)
                except OSError as e:
                    tally.error("sampler", f"the server process is gone: {e}")
                    stop.set()
                    break
                with tally.lock:
                    total = sum(tally.counts.values())
                out.write(f"{time.monotonic() - start:.1f},{rss},{threads},{fds},{tcp['postgres']},"
                          f"{tcp['redis']},{tcp['clients']},{tcp['not_established']},{total}\n")
                out.flush()
                nxt += args.sample_interval
                # The last sample comes before the load stops, not as it winds down.
                if nxt > deadline - 0.5:
                    break

    workers = [
        threading.Thread(target=guarded("authorize", code_flow)),
        threading.Thread(target=guarded("token:refresh", refresh)),
        threading.Thread(target=guarded("introspect", introspect)),
        threading.Thread(target=guarded("jwks", jwks)),
        threading.Thread(target=guarded("login-failed", failed_logins)),
    ]
    sample_thread = threading.Thread(target=sampler)
    sample_thread.start()
    for w in workers:
        w.start()
    try:
        for w in workers:
            w.join()
    finally:
        stop.set()
        sample_thread.join()
    lat = {k: {"n": len(v), "p50_ms": 1000 * statistics.median(v),
               "p99_ms": 1000 * sorted(v)[max(0, int(len(v) * 0.99) - 1)]}
           for k, v in tally.latencies.items() if v}
    with open(os.path.join(args.out_dir, "flows.json"), "w") as f:
        json.dump({"counts": tally.counts, "errors": tally.errors, "samples": tally.samples,
                   "latency": lat, "duration_s": time.monotonic() - start,
                   "refresh_chains_left": len(chains)}, f, indent=1, sort_keys=True)


def cmd_soak_report(args):
    flows = json.load(open(os.path.join(args.out_dir, "flows.json")))
    rows = [line.strip().split(",") for line in open(os.path.join(args.out_dir, "samples.csv"))]
    header, rows = rows[0], [list(map(float, r)) for r in rows[1:] if r and r[0]]
    col = {name: i for i, name in enumerate(header)}
    duration = flows["duration_s"]
    out = []
    p = out.append

    p("| kind | status | requests | per second | p50 | p99 |")
    p("|---|---:|---:|---:|---:|---:|")
    cc = args.cc  # "requests non2xx socket_errors rate p50 p99" from wrk
    cc_req, cc_bad, cc_sock, cc_rate, cc_p50, cc_p99 = cc.split()
    p(f"| client credentials (wrk) | 200 | {int(cc_req) - int(cc_bad)} | {float(cc_rate):.1f} | {cc_p50} ms | {cc_p99} ms |")
    if int(cc_bad):
        p(f"| client credentials (wrk) | not 2xx | {cc_bad} | | | |")
    for key in sorted(flows["counts"]):
        kind, status = key.rsplit(" ", 1)
        n = flows["counts"][key]
        lat = flows["latency"].get(kind, {})
        p(f"| {kind} | {status} | {n} | {n / duration:.1f} | {lat.get('p50_ms', 0):.1f} ms | {lat.get('p99_ms', 0):.1f} ms |")
    p("")
    p("(p50/p99 of the flows are per kind, over all its statuses.)")
    p("")
    server_errors = int(os.environ.get("BENCH_EXTRA_ERRORS", "0"))
    unexpected = sum(flows["errors"].values()) + int(cc_bad) + int(cc_sock) + server_errors
    p(f"Unexpected answers and errors: **{unexpected}**")
    if server_errors:
        p(f"- panics and ERROR lines in the server log: {server_errors}")
    for what, n in sorted(flows["errors"].items()):
        p(f"- {what}: {n}")
    if int(cc_bad) or int(cc_sock):
        p(f"- client credentials (wrk): {cc_bad} non-2xx, {cc_sock} socket errors")
    for s in flows["samples"]:
        p(f"  - {s}")
    p("")

    # Windows: after the warm-up, the first window; the last window of the run.
    warm, win = args.warmup, args.window
    last_t = rows[-1][0] if rows else 0
    first = [r for r in rows if warm <= r[0] < warm + win]
    last = [r for r in rows if r[0] > last_t - win]
    if not first or not last:
        p("Too few samples for the windows: no verdict.")
        print("\n".join(out))
        return 1

    def mean(rs, name):
        return sum(r[col[name]] for r in rs) / len(rs)

    def mx(rs, name):
        return max(r[col[name]] for r in rs)

    p(f"Resources of the server process: mean of the samples in the first window "
      f"({warm:.0f}–{warm + win:.0f} s, after a {warm:.0f} s warm-up; {len(first)} samples) and "
      f"the last ({last_t - win:.0f}–{last_t:.0f} s; {len(last)} samples), every {args.sample_interval:.0f} s:")
    p("")
    p("| | first window | last window | max over the run |")
    p("|---|---:|---:|---:|")
    p(f"| RSS | {mean(first, 'rss_kib') / 1024:.1f} MiB | {mean(last, 'rss_kib') / 1024:.1f} MiB | {mx(rows, 'rss_kib') / 1024:.1f} MiB |")
    for name, label in (("threads", "threads"), ("fds", "open fds"), ("tcp_postgres", "TCP to PostgreSQL"),
                        ("tcp_redis", "TCP to Redis"), ("tcp_clients", "TCP from clients"),
                        ("tcp_not_established", "TCP not established (e.g. CLOSE_WAIT)")):
        p(f"| {label} | {mean(first, name):.1f} | {mean(last, name):.1f} | {mx(rows, name):.0f} |")
    p("")

    rss_first, rss_last = mean(first, "rss_kib"), mean(last, "rss_kib")
    rss_limit = rss_first * 1.10 + 5 * 1024
    problems = []
    if rss_last > rss_limit:
        problems.append(f"RSS {rss_last / 1024:.1f} MiB > {rss_limit / 1024:.1f} MiB")
    for name, slack in (("fds", 2), ("threads", 4), ("tcp_postgres", 1), ("tcp_redis", 1),
                        ("tcp_clients", 2), ("tcp_not_established", 0)):
        if mean(last, name) > mean(first, name) + slack:
            problems.append(f"{name} {mean(first, name):.1f} → {mean(last, name):.1f} (slack {slack})")
    p("Rule: flat when the last window's mean RSS is at most the first window's mean × 1.10 + 5 MiB, "
      "and the last window's mean of open fds, threads and TCP connections exceeds the first "
      "window's by at most a small slack (fds +2, threads +4, PostgreSQL +1, Redis +1, clients +2, "
      "not-established +0: the count of a moment varies with requests in flight, and tokio's "
      "blocking pool keeps the threads of its busiest moment until they idle for 10 s).")
    verdict = "growing: " + "; ".join(problems) if problems else "flat"
    p("")
    p(f"**Verdict: {verdict}**; unexpected answers: {unexpected}")
    print("\n".join(out))
    return 0 if not problems and unexpected == 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    a = sub.add_parser("jwt-check")
    a.add_argument("--alg", required=True)
    a.add_argument("--aud", required=True)

    a = sub.add_parser("mint")
    a.add_argument("--kind", choices=("codes", "refresh-tokens"), required=True)
    a.add_argument("--n", type=int, required=True)
    a.add_argument("--threads", type=int, default=4)
    a.add_argument("--out", required=True)

    a = sub.add_parser("soak-drive")
    a.add_argument("--out-dir", required=True)
    a.add_argument("--duration", type=float, required=True)
    a.add_argument("--pid", type=int, required=True)
    a.add_argument("--pg-port", type=int, default=0)
    a.add_argument("--redis-port", type=int, default=0)
    a.add_argument("--sample-interval", type=float, default=10)
    a.add_argument("--code-rate", type=float, default=5)
    a.add_argument("--refresh-rate", type=float, default=5)
    a.add_argument("--refresh-chains", type=int, default=4)
    a.add_argument("--introspect-rate", type=float, default=10)
    a.add_argument("--jwks-rate", type=float, default=10)
    a.add_argument("--login-rate", type=float, default=2)
    a.add_argument("--login-addresses", type=int, default=300)
    a.add_argument("--victim", default="victim")
    a.add_argument("--ready-file", help="created once the set-up is done and the clock starts")

    a = sub.add_parser("soak-report")
    a.add_argument("--out-dir", required=True)
    a.add_argument("--cc", required=True, help="wrk: requests non2xx socket_errors rate p50_ms p99_ms")
    a.add_argument("--warmup", type=float, required=True)
    a.add_argument("--window", type=float, required=True)
    a.add_argument("--sample-interval", type=float, required=True)

    args = ap.parse_args()
    try:
        if args.cmd == "jwt-check":
            cmd_jwt_check(args)
        elif args.cmd == "mint":
            cmd_mint(args)
        elif args.cmd == "soak-drive":
            cmd_soak_drive(args)
        elif args.cmd == "soak-report":
            sys.exit(cmd_soak_report(args))
    except FlowError as e:
        sys.exit(f"oauth_flows.py {args.cmd}: {e}")


if __name__ == "__main__":
    main()
