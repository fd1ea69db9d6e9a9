"""The JWKS cache against real Portcullis JWKS endpoints."""

from __future__ import annotations

import threading
import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from harness import ServedApp, bearer, decode_unverified, free_port, make_app, unverified_header
from portcullis_verifier import JWKSCache


class CountingFetches:
    """Wraps a cache's HTTP GET: counts calls, records If-None-Match, can add latency."""

    def __init__(self, cache: JWKSCache, delay: float = 0.0):
        self.cache, self.delay = cache, delay
        self.calls: list[tuple[float, str | None, int]] = []
        self._lock = threading.Lock()
        self._inner = cache._http_get
        cache._http_get = self

    def __call__(self, url, etag):
        if self.delay:
            time.sleep(self.delay)
        status = None  # None: the request raised
        try:
            status, headers, body = self._inner(url, etag)
            return status, headers, body
        finally:
            with self._lock:
                self.calls.append((time.monotonic(), etag, status))

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.calls)


def forged_with_unknown_kid(claims: dict, n: int) -> str:
    return jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                      headers={"kid": f"made-up-{n}", "typ": "at+jwt"})


def run_concurrently(n: int, fn) -> list:
    results: list = [None] * n
    barrier = threading.Barrier(n)

    def worker(i):
        barrier.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_unknown_kid_storm_fetches_once_per_cooldown(portcullis, tokens):
    cooldown = 3.0
    served = ServedApp(make_app(portcullis, JWKS_MIN_REFRESH_INTERVAL=cooldown))
    try:
        cache = served.app.extensions["portcullis_auth"].jwks
        good = tokens["reader"]
        session = requests.Session()
        assert session.get(f"{served.url}/v1/models", headers=bearer(good),
                           timeout=30).status_code == 200
        # The JWKS is fresh for 300 s now: any further fetch is an unknown-kid refetch.
        fetches = CountingFetches(cache, delay=0.3)  # slow issuer: callers pile up
        claims = decode_unverified(good)
        bad = [forged_with_unknown_kid(claims, i) for i in range(40)]

        def storm(i):
            with requests.Session() as s:
                statuses = []
                for token in bad[i * 5:(i + 1) * 5]:
                    statuses.append(s.get(f"{served.url}/v1/models", headers=bearer(token),
                                          timeout=60).status_code)
                statuses.append(s.get(f"{served.url}/v1/models", headers=bearer(good),
                                      timeout=60).status_code)
                return statuses

        started = time.monotonic()
        results = run_concurrently(8, storm)
        elapsed = time.monotonic() - started
        assert all(r == [401] * 5 + [200] for r in results), results
        # One refetch per cooldown window (more only if the storm outlasted the cooldown).
        allowed = 1 + int(elapsed // cooldown)
        assert 1 <= fetches.count <= allowed, (fetches.calls, elapsed)
        assert cache.stats["unknown_kid_fetches"] == fetches.count
        stats = cache.stats
        assert (stats["unknown_kid_fetches"] + stats["unknown_kid_coalesced"]
                + stats["unknown_kid_throttled"]) == 40, stats

        # Within the cooldown: no fetch at all.
        first = fetches.count
        last_fetch = fetches.calls[-1][0]
        if time.monotonic() - last_fetch < cooldown - 0.5:
            r = session.get(f"{served.url}/v1/models",
                            headers=bearer(forged_with_unknown_kid(claims, 100)), timeout=30)
            assert r.status_code == 401
            assert fetches.count == first
        # After it: exactly one more, however many callers.
        while time.monotonic() < last_fetch + cooldown + 0.1:
            time.sleep(0.1)
        more = [forged_with_unknown_kid(claims, 200 + i) for i in range(6)]
        statuses = run_concurrently(6, lambda i: session.get(
            f"{served.url}/v1/models", headers=bearer(more[i]), timeout=60).status_code)
        assert statuses == [401] * 6
        assert fetches.count == first + 1, fetches.calls
        # A refetch revalidates: the real server answered 304 to the stored ETag.
        assert all(etag and status == 304 for _, etag, status in fetches.calls), fetches.calls
    finally:
        served.close()


def test_new_kid_single_flight(portcullis, tokens):
    """Concurrent requests carrying a kid the cache has not seen yet: one fetch, all pass."""
    app = make_app(portcullis)
    cache = app.extensions["portcullis_auth"].jwks
    cache.refresh()
    kid = unverified_header(tokens["reader"])["kid"]
    # Make the cache predate this key (as if it was fetched before the key was published).
    snapshot = cache._snapshot
    cache._snapshot = type(snapshot)(snapshot.generation,
                                     {k: v for k, v in snapshot.keys.items() if k != kid}, True)
    cache._etag = None  # the pruned set is not what the server's ETag names
    fetches = CountingFetches(cache, delay=0.3)
    statuses = run_concurrently(8, lambda i: app.test_client().get(
        "/v1/models", headers=bearer(tokens["reader"])).status_code)
    assert statuses == [200] * 8
    assert fetches.count == 1
    assert kid in cache.kids()


def test_max_age_and_304_against_the_server(short_ttl):
    """short_ttl serves the JWKS with max-age=1: reused while fresh, then revalidated."""
    r = requests.get(short_ttl.jwks_url, timeout=10)
    assert r.headers["Cache-Control"] == "public, max-age=1" and r.headers["ETag"]
    kid = r.json()["keys"][0]["kid"]
    cache = JWKSCache(short_ttl.jwks_url)
    fetches = CountingFetches(cache)
    assert cache.get_key(kid) is not None
    assert fetches.calls[0][1:] == (None, 200)
    fetched = fetches.calls[0][0]
    assert cache.get_key(kid) is not None
    if time.monotonic() - fetched < 0.8:  # still fresh: served from memory
        assert fetches.count == 1
    while time.monotonic() < fetched + 1.2:  # past max-age: revalidated with the ETag
        time.sleep(0.05)
    assert cache.get_key(kid) is not None
    assert fetches.calls[-1][1:] == (r.headers["ETag"], 304)
    assert cache.stats["not_modified"] >= 1 and cache.stats["failures"] == 0


def test_keeps_the_last_good_jwks_when_the_issuer_is_down(short_ttl):
    kids = short_ttl.jwks_kids()
    kid = sorted(kids)[0]
    cache = JWKSCache(short_ttl.jwks_url, min_refresh_interval=2)
    assert cache.get_key(kid) is not None
    cache.url = f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"  # nothing listens
    fetches = CountingFetches(cache)
    time.sleep(1.2)  # past max-age=1
    assert cache.get_key(kid) is not None  # stale but last good
    assert fetches.count == 1 and cache.stats["failures"] == 1
    # The failure is not retried on every call: next attempt after min_refresh_interval.
    for _ in range(10):
        assert cache.get_key(kid) is not None
    assert fetches.count == 1
    assert cache.last_error


def test_issuer_unreachable_from_the_start_is_503(portcullis, tokens):
    dead = f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"
    client = make_app(portcullis, JWKS_URL=dead).test_client()
    r = client.get("/v1/models", headers=bearer(tokens["reader"]))
    assert r.status_code == 503
    assert r.get_json()["error"] == "temporarily_unavailable"
    assert "WWW-Authenticate" not in r.headers


# parse_max_age's table moved to clients/python/tests/test_jwks.py with the cache.
