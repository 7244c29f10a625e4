"""The reference app keeps its documented promises when its Redis goes away, and recovers when it comes back.

A private ``redis-server`` (tests/redis_support.py) is stopped (the process is gone: connections are
refused) or frozen with SIGSTOP (connections open but nothing answers: a hung Redis), then restarted
or thawed, while one app instance keeps running in-process (httpx's ASGI transport, lifespan started).

* the rate limiter, ``rate_limit_failure = "open"``: requests are served uncounted (no ``X-RateLimit-*``
  headers) and a warning is logged on ``hfasgi.ratelimit``;
* ``"closed"``: 503 ``rate_limit_unavailable`` in the envelope, with ``Retry-After``;
* both: every request completes (a generous timeout detects hangs; nothing here measures speed), and
  once Redis answers again requests are counted again, without restarting the app;
* the Redis key store: 503 ``authentication_unavailable`` (never 401, never 500) once the 0.5 s local
  cache has expired, and keys work again once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from hfasgi.app import create_app
from hfasgi.auth import RedisKeyStore
from hfasgi.auth.keys import KeyRecord, new_key
from hfasgi.redis_client import RedisConnection
from hfasgi.settings import Settings
from tests.e2e.clients import CHAT_MODEL, MESSAGES
from tests.redis_support import PrivateRedis
from tests.upstream import FakeHF
from tests.upstream.fixtures import Upstream

pytestmark = [pytest.mark.anyio, pytest.mark.socket]

API_KEY = "k"
HANG = 15.0
"""Seconds after which a request counts as hung (Redis calls time out after 0.5 s, retried once)."""
OUTAGES = ["stopped", "frozen"]
RATELIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@contextlib.asynccontextmanager
async def gateway(upstream: Upstream, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The reference app in front of the fake upstream, lifespan started, behind an httpx client."""
    values: dict[str, Any] = {"upstream_url": upstream.url, "upstream_kind": "router", "hf_token": "x"}
    values.update(settings)
    async with LifespanManager(create_app(Settings(**values))) as manager:
        transport = httpx.ASGITransport(manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


async def chat(client: httpx.AsyncClient, key: str = API_KEY) -> httpx.Response:
    """One chat request; fails the test if it does not complete within :data:`HANG` seconds."""
    body = {"model": CHAT_MODEL, "messages": MESSAGES, "max_tokens": 2}
    try:
        async with asyncio.timeout(HANG):
            return await client.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})
    except TimeoutError:
        pytest.fail(f"a request hung (no answer within {HANG} s) while Redis was down")


def break_redis(server: PrivateRedis, outage: str) -> None:
    if outage == "stopped":
        server.stop()
    else:
        server.freeze()
    assert not server.ping()


def mend_redis(server: PrivateRedis, outage: str) -> None:
    if outage == "stopped":
        server.start()  # same port, empty (nothing is persisted)
    else:
        server.thaw()
    assert server.ping()


def counted(response: httpx.Response) -> int:
    """The ``X-RateLimit-Remaining`` of a counted, served response."""
    assert response.status_code == 200, response.text
    assert response.headers["x-ratelimit-limit"] == "100"
    return int(response.headers["x-ratelimit-remaining"])


def uncounted(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "chat.completion"
    assert not [h for h in RATELIMIT_HEADERS if h in response.headers]


def chats(fake: FakeHF) -> list[Any]:
    """The chat requests the fake upstream received."""
    return [r for r in fake.requests if r.path == "/v1/chat/completions"]


def limiter_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "hfasgi.ratelimit" and r.levelno == logging.WARNING]


# --- the rate limiter ------------------------------------------------------------------------------------


@pytest.mark.parametrize("outage", OUTAGES)
async def test_open_serves_uncounted_while_redis_is_down(
    upstream: Upstream, fake: FakeHF, redis_server: PrivateRedis, caplog: pytest.LogCaptureFixture, outage: str
) -> None:
    caplog.set_level(logging.WARNING, logger="hfasgi.ratelimit")
    options = {"api_keys": API_KEY, "redis_url": redis_server.url, "rate_limit": "100/minute"}
    async with gateway(upstream, rate_limit_failure="open", **options) as client:
        assert counted(await chat(client)) == 99
        assert counted(await chat(client)) == 98
        assert limiter_warnings(caplog) == []

        break_redis(redis_server, outage)
        fake.clear()
        for _ in range(2):
            uncounted(await chat(client))
        assert len(chats(fake)) == 2  # really served by the upstream, not answered by the gateway
        warnings = limiter_warnings(caplog)
        assert len(warnings) == 1  # logged, but not once per request
        assert "the rate-limit store failed" in warnings[0] and "uncounted" in warnings[0]
        assert redis_server.url not in warnings[0]

        mend_redis(redis_server, outage)
        before = counted(await chat(client))  # counted again, same app instance
        assert counted(await chat(client)) == before - 1
        if outage == "stopped":
            assert before == 99  # the restarted Redis is empty: a fresh window


@pytest.mark.parametrize("outage", OUTAGES)
async def test_closed_refuses_with_503_while_redis_is_down(
    upstream: Upstream, fake: FakeHF, redis_server: PrivateRedis, caplog: pytest.LogCaptureFixture, outage: str
) -> None:
    caplog.set_level(logging.WARNING, logger="hfasgi.ratelimit")
    options = {"api_keys": API_KEY, "redis_url": redis_server.url, "rate_limit": "100/minute"}
    async with gateway(upstream, rate_limit_failure="closed", **options) as client:
        assert counted(await chat(client)) == 99

        break_redis(redis_server, outage)
        fake.clear()
        for _ in range(2):
            refused = await chat(client)
            assert refused.status_code == 503
            document = refused.json()
            assert set(document) == {"error", "error_type"}
            assert document["error_type"] == "rate_limit_unavailable" and document["error"]
            assert refused.headers["retry-after"] == "1"
            assert not [h for h in RATELIMIT_HEADERS if h in refused.headers]
        assert chats(fake) == []  # nothing went upstream uncounted
        warnings = limiter_warnings(caplog)
        assert len(warnings) == 1 and "refusing requests" in warnings[0]

        # Model lists are never limited, so they do not depend on Redis.
        async with asyncio.timeout(HANG):
            listed = await client.get("/v1/models", headers={"authorization": f"Bearer {API_KEY}"})
        assert listed.status_code == 200

        mend_redis(redis_server, outage)
        before = counted(await chat(client))
        assert counted(await chat(client)) == before - 1


async def test_an_app_started_before_redis_counts_once_it_answers(
    upstream: Upstream, redis_server: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis down at start-up is a warning, not a failure; the limiter picks Redis up when it comes."""
    caplog.set_level(logging.WARNING)
    redis_server.stop()
    options = {"api_keys": API_KEY, "redis_url": redis_server.url, "rate_limit": "100/minute"}
    async with gateway(upstream, rate_limit_failure="open", **options) as client:
        assert any(r.name == "hfasgi.redis" and "does not answer" in r.getMessage() for r in caplog.records)
        uncounted(await chat(client))
        redis_server.start()
        assert counted(await chat(client)) == 99
        assert counted(await chat(client)) == 98


# --- the Redis key store ---------------------------------------------------------------------------------


async def add_key(url: str, key_id: str, key: str) -> None:
    store = RedisKeyStore(RedisConnection(url))
    await store.open()
    try:
        await store.add(KeyRecord.for_key(key_id, key))
    finally:
        await store.aclose()


async def poll_until(client: httpx.AsyncClient, key: str, status: int) -> tuple[list[int], httpx.Response]:
    """Send chat requests with ``key`` until one gets ``status``: every status seen, and that response."""
    statuses: list[int] = []
    deadline = time.monotonic() + HANG
    while True:
        response = await chat(client, key)
        statuses.append(response.status_code)
        if response.status_code == status:
            return statuses, response
        assert time.monotonic() < deadline, f"never got {status} within {HANG} s: {statuses}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("outage", OUTAGES)
async def test_the_key_store_answers_503_while_redis_is_down(
    upstream: Upstream, redis_server: PrivateRedis, outage: str
) -> None:
    key = new_key()
    await add_key(redis_server.url, "failure-test", key)
    async with gateway(upstream, key_store="redis", redis_url=redis_server.url) as client:
        assert (await chat(client, key)).status_code == 200
        assert (await chat(client, new_key())).status_code == 401  # Redis answers: an unknown key is invalid

        break_redis(redis_server, outage)
        statuses, response = await poll_until(client, key, 503)  # from the local cache for up to 0.5 s
        assert set(statuses) <= {200, 503}, statuses
        for refused in (response, await chat(client, new_key())):  # a key never seen: not "invalid" either
            assert refused.status_code == 503
            assert refused.json()["error_type"] == "authentication_unavailable"
            assert refused.headers["retry-after"] == "1"
            assert "www-authenticate" not in refused.headers

        mend_redis(redis_server, outage)
        if outage == "stopped":  # the restarted Redis is empty: the key is unknown until it is added again
            assert (await chat(client, key)).status_code == 401
            await add_key(redis_server.url, "failure-test", key)
        # (a 401 above is cached for up to 0.5 s: poll until the key is found again)
        statuses, _ = await poll_until(client, key, 200)
        assert set(statuses) <= {200, 401}, statuses
        assert (await chat(client, new_key())).status_code == 401
