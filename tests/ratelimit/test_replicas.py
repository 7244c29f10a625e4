"""Two gateway processes sharing one real Redis are one gateway: one rate limit, one set of keys.

Two ``hfasgi serve`` processes (real subprocesses, started as an operator would, configured by the
environment) in front of the fake upstream share a private ``redis-server``; a key is added to that
Redis directly. Chat requests alternating between the processes with the ``openai`` client are counted
once, wherever they land; a key revoked in Redis is refused by both within a second (the key store's
local cache lives 0.5 s).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import openai
import pytest

from hfasgi.auth import RedisKeyStore
from hfasgi.auth.keys import KeyRecord, new_key
from hfasgi.redis_client import RedisConnection
from tests.e2e.clients import CHAT_MODEL, MESSAGES
from tests.processes import ServeProcess, environment, start
from tests.redis_support import PrivateRedis
from tests.upstream.fixtures import Upstream

pytestmark = [pytest.mark.anyio, pytest.mark.socket]

HANG = 15.0
"""Seconds after which a request counts as hung (a hang detector, not a speed requirement)."""
LIMIT = 10
KEY_ID = "replica-test"


def _environment(upstream: Upstream, redis_url: str) -> dict[str, str]:
    return environment(
        HFASGI_UPSTREAM_URL=upstream.url,
        HFASGI_UPSTREAM_KIND="router",
        HF_TOKEN="x",
        HFASGI_REDIS_URL=redis_url,
        HFASGI_KEY_STORE="redis",
        HFASGI_RATE_LIMIT=f"{LIMIT}/minute",
    )


@pytest.fixture
def replicas(upstream: Upstream, redis_server: PrivateRedis, tmp_path: Path) -> Iterator[list[ServeProcess]]:
    """Two ``hfasgi serve`` processes sharing ``redis_server``; terminated (killed if need be) afterwards."""
    env = _environment(upstream, redis_server.url)
    started: list[ServeProcess] = []
    try:
        for n in range(2):
            started.append(start(env, tmp_path / f"replica-{n}.log", "--log-level", "warning"))
        for replica in started:
            replica.wait_ready()
        yield started
    finally:
        for replica in started:
            replica.stop()


@pytest.fixture
async def key_store(redis_server: PrivateRedis) -> AsyncIterator[RedisKeyStore]:
    """The key store of the replicas' Redis, as an operator's tool would open it (default prefix)."""
    store = RedisKeyStore(RedisConnection(redis_server.url))
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


async def _refused(client: openai.AsyncOpenAI) -> float:
    """Poll until ``client``'s key is refused with 401; returns when (``time.monotonic()``)."""
    deadline = time.monotonic() + HANG
    while True:
        try:
            async with asyncio.timeout(HANG):
                await client.models.list()
        except openai.AuthenticationError as exc:
            assert exc.status_code == 401
            return time.monotonic()
        assert time.monotonic() < deadline, "the revoked key was never refused"
        await asyncio.sleep(0.02)


async def test_two_processes_share_one_limit_and_one_revocation(
    replicas: list[ServeProcess], key_store: RedisKeyStore
) -> None:
    assert replicas[0].process.pid != replicas[1].process.pid
    key = new_key()
    await key_store.add(KeyRecord.for_key(KEY_ID, key))
    clients = [openai.AsyncOpenAI(base_url=f"{r.url}/v1", api_key=key, max_retries=0) for r in replicas]
    try:
        served: list[tuple[int, int]] = []  # (process, X-RateLimit-Remaining)
        refused: list[tuple[int, openai.RateLimitError]] = []
        for i in range(2 * LIMIT):
            which = i % 2
            try:
                async with asyncio.timeout(HANG):
                    raw = await clients[which].chat.completions.with_raw_response.create(
                        model=CHAT_MODEL, messages=MESSAGES, max_tokens=2
                    )
            except openai.RateLimitError as exc:
                refused.append((which, exc))
                continue
            assert raw.parse().choices[0].message.content
            assert raw.headers["x-ratelimit-limit"] == str(LIMIT)
            served.append((which, int(raw.headers["x-ratelimit-remaining"])))

        assert len(served) == LIMIT and len(refused) == LIMIT
        # One counter for both processes: each admitted request saw the other process's requests too.
        assert [remaining for _, remaining in served] == list(range(LIMIT - 1, -1, -1))
        assert {which for which, _ in served} == {which for which, _ in refused} == {0, 1}
        for _, error in refused:
            assert error.status_code == 429
            assert error.response.json()["error_type"] == "rate_limit"
            assert error.response.headers["x-ratelimit-remaining"] == "0"
            assert int(error.response.headers["retry-after"]) >= 1
            assert KEY_ID in error.response.json()["error"]

        # Both processes know the key (and have it in their local cache) right before it is revoked.
        for client in clients:
            async with asyncio.timeout(HANG):
                assert [m async for m in await client.models.list()]
        await key_store.revoke(KEY_ID)
        revoked = time.monotonic()
        elapsed = [await _refused(client) - revoked for client in clients]
        assert all(e < 1.0 for e in elapsed), f"revocation took {elapsed} s to reach the processes"
        for client in clients:  # refused for inference too, as 401, not as 429
            with pytest.raises(openai.AuthenticationError):
                async with asyncio.timeout(HANG):
                    await client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=2)
    finally:
        for client in clients:
            await client.close()
    for replica in replicas:
        assert replica.process.poll() is None, f"a gateway process died:\n{replica.output()}"
