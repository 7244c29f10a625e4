"""Fixtures of the rate-limit tier: limiter stores (memory and Redis, one contract), and a private Redis.

* ``shared_redis_url`` (session): the shared Redis (tests/redis_support.py); skips when it is absent,
  fails on CI.
* ``key_prefix``: a prefix of this test's own; every key under it is deleted afterwards.
* ``store``: a :class:`~hfasgi.ratelimit.LimiterStore`, parametrized over ``memory`` and ``redis`` (the
  shared Redis under ``key_prefix``), opened for the test and closed after.
* ``redis_server``: a private ``redis-server`` (:class:`~tests.redis_support.PrivateRedis`) the test may
  stop, freeze and restart; killed afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from hfasgi.ratelimit import LimiterStore, MemoryLimiterStore, RedisLimiterStore
from hfasgi.redis_client import RedisConnection
from tests.redis_support import PrivateRedis, delete_prefixed, private_redis, require_redis, unique_prefix


@pytest.fixture(scope="session")
def shared_redis_url() -> str:
    """The shared Redis's URL (skip when it does not answer; fail on CI)."""
    return require_redis()


@pytest.fixture
def key_prefix() -> str:
    """A key prefix of this test's own."""
    return unique_prefix()


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[LimiterStore]:
    """Each limiter store in turn; the Redis one works under ``key_prefix`` and removes its keys afterwards."""
    if request.param == "memory":
        memory = MemoryLimiterStore()
        await memory.open()
        yield memory
        await memory.aclose()
        return
    url: str = request.getfixturevalue("shared_redis_url")
    redis = RedisLimiterStore(RedisConnection(url), prefix=key_prefix)
    await redis.open()
    try:
        yield redis
    finally:
        try:
            await delete_prefixed(redis.redis.client, key_prefix)
        finally:
            await redis.aclose()


@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    """A private ``redis-server`` for this test (stop/start/freeze it at will); always killed at the end."""
    with private_redis() as server:
        yield server
