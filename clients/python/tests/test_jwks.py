"""JWKSCache: HTTP caching, rotation refetches, failures, and the PyJWKClient interface.

Most tests drive the cache with a fake clock and a fake HTTP GET; the last ones serve a JWKS
from a real HTTP server on loopback. examples/flask-inference-service/tests/test_jwks_cache.py
runs the same cache against real Portcullis JWKS endpoints.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import jwt
import pytest

from helpers import Keys
from portcullis_verifier import JWKSCache, JWKSUnavailable, parse_max_age

URL = "https://issuer.example.test/.well-known/jwks.json"


class FakeIssuer:
    """Answers the cache's GETs: (status, headers, body) per call; records If-None-Match."""

    def __init__(self, document: dict[str, Any], *, delay: float = 0.0) -> None:
        self.document = document
        self.etag = '"v1"'
        self.max_age: int | None = 300
        self.status: int | None = 200  # None: the request raises (issuer down)
        self.delay = delay
        self.calls: list[str | None] = []
        self._lock = threading.Lock()

    def __call__(self, url: str, etag: str | None) -> tuple[int, Mapping[str, str], bytes]:
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.calls.append(etag)
        if self.status is None:
            raise OSError("connection refused")
        headers = {"ETag": self.etag}
        if self.max_age is not None:
            headers["Cache-Control"] = f"public, max-age={self.max_age}"
        if self.status == 200 and etag == self.etag:
            return 304, headers, b""
        return self.status, headers, json.dumps(self.document).encode()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cache_with(issuer: FakeIssuer, clock: Clock | None = None, **options: Any) -> JWKSCache:
    cache = JWKSCache(URL, clock=clock or Clock(), **options)
    cache._http_get = issuer  # type: ignore[method-assign]
    return cache


@pytest.fixture
def issuer(keys: Keys) -> FakeIssuer:
    return FakeIssuer(keys.jwks())


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Cache-Control": "public, max-age=300"}, 300),
    ({"Cache-Control": "max-age=300", "Age": "100"}, 200),
    ({"Cache-Control": "max-age=10", "Age": "100"}, 0),
    ({"Cache-Control": 'public, MAX-AGE="60"'}, 60),
    ({"Cache-Control": "no-cache"}, 0),
    ({"Cache-Control": "no-store, max-age=60"}, 0),
    ({"Cache-Control": "max-age=soon"}, None),
    ({}, None),
])
def test_parse_max_age(headers: dict[str, str], expected: float | None) -> None:
    assert parse_max_age(headers) == expected


def test_fresh_then_revalidated_with_etag(issuer: FakeIssuer) -> None:
    clock = Clock()
    cache = cache_with(issuer, clock)
    assert cache.get_key("ec-1") is not None
    assert issuer.calls == [None]
    clock.now += 299
    assert cache.get_key("rsa-1") is not None
    assert issuer.calls == [None]  # fresh: from memory
    clock.now += 2
    assert cache.get_key("ec-1") is not None
    assert issuer.calls == [None, '"v1"']  # stale: revalidated, 304
    assert cache.stats["not_modified"] == 1 and cache.stats["updated"] == 1


def test_default_and_capped_max_age(issuer: FakeIssuer) -> None:
    clock = Clock()
    issuer.max_age = None
    cache = cache_with(issuer, clock, default_max_age=50)
    cache.get_key("ec-1")
    clock.now += 49
    cache.get_key("ec-1")
    assert len(issuer.calls) == 1
    clock.now += 2
    cache.get_key("ec-1")
    assert len(issuer.calls) == 2
    issuer.max_age = 10**9
    capped = cache_with(issuer, Clock(), max_max_age=60)
    capped.get_key("ec-1")
    assert capped._fresh_until == 1000 + 60


def test_keeps_last_good_set_and_retries_after_the_interval(issuer: FakeIssuer) -> None:
    clock = Clock()
    cache = cache_with(issuer, clock, min_refresh_interval=10)
    assert cache.get_key("ec-1") is not None
    issuer.status = None  # the issuer goes down
    clock.now += 301
    assert cache.get_key("ec-1") is not None  # stale, last good
    assert cache.stats["failures"] == 1 and cache.last_error
    for _ in range(5):
        assert cache.get_key("ec-1") is not None
    assert len(issuer.calls) == 2  # no retry within the interval
    clock.now += 10
    issuer.status = 500
    assert cache.get_key("ec-1") is not None
    assert len(issuer.calls) == 3 and cache.stats["failures"] == 2
    issuer.status = 200
    clock.now += 10
    cache.get_key("ec-1")
    assert cache.last_error is None


@pytest.mark.parametrize("document", [{"keys": []}, {"nope": 1}, {"keys": [{"kty": "oct"}]}])
def test_unusable_document_counts_as_a_failure(issuer: FakeIssuer, document: Any) -> None:
    issuer.document = document
    cache = cache_with(issuer)
    with pytest.raises(JWKSUnavailable):
        cache.get_key("ec-1")
    assert cache.stats["failures"] == 1


def test_never_loaded_is_unavailable_not_unknown(issuer: FakeIssuer) -> None:
    issuer.status = None
    clock = Clock()
    cache = cache_with(issuer, clock, min_refresh_interval=10)
    with pytest.raises(JWKSUnavailable):
        cache.get_key("ec-1")
    with pytest.raises(JWKSUnavailable):  # the PyJWKClient interface: a connection error
        cache.get_signing_key("ec-1")
    assert isinstance(JWKSUnavailable("x"), jwt.PyJWKClientConnectionError)
    # With no key in hand, the retry comes sooner than the interval (1 s).
    clock.now += 1
    issuer.status = 200
    assert cache.get_key("ec-1") is not None


def test_unknown_kid_refetch_is_rate_limited(issuer: FakeIssuer, keys: Keys) -> None:
    clock = Clock()
    cache = cache_with(issuer, clock, min_refresh_interval=10)
    cache.get_key("ec-1")
    issuer.etag = '"v2"'  # the issuer publishes a new key
    issuer.document = {"keys": keys.jwks()["keys"] + [Keys.jwk(keys.ec, "new", alg="ES256")]}
    assert cache.get_key("new") is not None  # first unknown kid: refetched at once
    assert cache.stats["unknown_kid_fetches"] == 1
    for i in range(20):
        assert cache.get_key(f"made-up-{i}") is None
    assert cache.stats["unknown_kid_throttled"] == 20
    assert len(issuer.calls) == 2
    with pytest.raises(jwt.PyJWKClientError):
        cache.get_signing_key("made-up")
    clock.now += 10
    assert cache.get_key("made-up-again") is None
    assert len(issuer.calls) == 3


def test_a_routine_fetch_does_not_delay_a_new_kid(issuer: FakeIssuer, keys: Keys) -> None:
    """Unlike PyJWKClient's cooldown, only unknown-kid refetches start the interval."""
    cache = cache_with(issuer, Clock(), min_refresh_interval=10)
    cache.refresh()
    issuer.etag = '"v2"'
    issuer.document = {"keys": [Keys.jwk(keys.ec, "brand-new", alg="ES256")]}
    assert cache.get_key("brand-new") is not None


def run_concurrently(n: int, fn: Any) -> list[Any]:
    results: list[Any] = [None] * n
    barrier = threading.Barrier(n)

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_unknown_kid_single_flight(keys: Keys) -> None:
    issuer = FakeIssuer(keys.jwks(), delay=0.2)
    cache = cache_with(issuer, min_refresh_interval=0)
    cache._clock = time.monotonic  # real time: callers pile up behind the slow fetch
    cache.refresh()
    issuer.calls.clear()
    issuer.etag = '"v2"'
    issuer.document = {"keys": [Keys.jwk(keys.ec, "rotated", alg="ES256")]}
    found = run_concurrently(8, lambda i: cache.get_key("rotated") is not None)
    assert found == [True] * 8
    assert len(issuer.calls) == 1, issuer.calls
    assert cache.stats["unknown_kid_coalesced"] == 7


def test_stale_while_revalidate(keys: Keys) -> None:
    """While one caller revalidates, the others keep verifying with the last good keys."""
    issuer = FakeIssuer(keys.jwks())
    clock = Clock()
    cache = cache_with(issuer, clock)
    cache.get_key("ec-1")
    clock.now += 301
    issuer.delay = 0.5
    fetching = threading.Thread(target=cache.get_key, args=("ec-1",))
    fetching.start()
    time.sleep(0.1)
    started = time.monotonic()
    assert cache.get_key("rsa-1") is not None
    assert time.monotonic() - started < 0.3  # did not wait for the fetch
    fetching.join()


def test_pyjwkclient_interface(issuer: FakeIssuer, keys: Keys) -> None:
    cache = cache_with(issuer)
    assert isinstance(cache, jwt.PyJWKClient)
    token = jwt.encode({"sub": "x"}, keys.ec, algorithm="ES256", headers={"kid": "ec-1"})
    assert cache.get_signing_key_from_jwt(token).key_id == "ec-1"
    assert {k.key_id for k in cache.get_signing_keys()} == {"ec-1", "rsa-1"}
    assert {k.key_id for k in cache.get_jwk_set()} == {"ec-1", "rsa-1"}
    assert {k["kid"] for k in cache.fetch_data()["keys"]} == {"ec-1", "rsa-1"}
    assert cache.kids() == {"ec-1", "rsa-1"}
    assert cache.url == URL == cache.uri


def test_only_http_urls() -> None:
    with pytest.raises(jwt.PyJWKClientError):
        JWKSCache("file:///etc/passwd")


# --------------------------------------------------------------------------------------------
# A real HTTP server on loopback


class JWKSHandler(http.server.BaseHTTPRequestHandler):
    document: bytes = b"{}"
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        JWKSHandler.seen.append((self.path, self.headers.get("If-None-Match")))
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/jwks")
            self.end_headers()
            return
        if self.headers.get("If-None-Match") == '"abc"':
            self.send_response(304)
            self.send_header("ETag", '"abc"')
            self.send_header("Cache-Control", "max-age=1")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("ETag", '"abc"')
        self.send_header("cache-control", "public, max-age=1")  # header names: any case
        self.end_headers()
        self.wfile.write(JWKSHandler.document)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def jwks_server(keys: Keys) -> Iterator[str]:
    JWKSHandler.document = json.dumps(keys.jwks()).encode()
    JWKSHandler.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), JWKSHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_real_http_etag_and_max_age(jwks_server: str) -> None:
    clock = Clock()
    cache = JWKSCache(jwks_server + "/jwks", clock=clock)
    assert cache.get_key("ec-1") is not None
    clock.now += 1.5  # max-age=1, read from a lower-case header name
    assert cache.get_key("ec-1") is not None
    assert JWKSHandler.seen == [("/jwks", None), ("/jwks", '"abc"')]
    assert cache.stats["not_modified"] == 1


def test_real_http_redirect_is_not_followed(jwks_server: str) -> None:
    cache = JWKSCache(jwks_server + "/redirect")
    with pytest.raises(JWKSUnavailable):
        cache.get_key("ec-1")
    assert [p for p, _ in JWKSHandler.seen] == ["/redirect"]
    assert "302" in (cache.last_error or "")


def test_real_http_timeout() -> None:
    """A server that accepts and never answers: the fetch gives up after ``timeout``."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        cache = JWKSCache(f"http://127.0.0.1:{listener.getsockname()[1]}/jwks", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(JWKSUnavailable):
            cache.get_key("ec-1")
        assert time.monotonic() - started < 5
        assert "timed out" in (cache.last_error or "").lower()
    finally:
        listener.close()
