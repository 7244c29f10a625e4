"""The cache stores: one contract (memory and the shared Redis), bounds, TTL, and Redis outages.

The memory store runs on an injected clock, so expiry is tested by moving the clock, never by sleeping.
Redis expiry is checked through the key's PTTL. Outages use a private ``redis-server`` that is stopped
(connections refused) or frozen with SIGSTOP (nothing answers): every call is a miss within the
client's timeouts, the outage is logged once, and the store works again once Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from hfasgi.cache import CacheStore, MemoryCacheStore, RedisCacheStore
from hfasgi.redis_client import RedisConnection
from tests.cache.support import FakeClock
from tests.redis_support import PrivateRedis, delete_prefixed, private_redis

pytestmark = pytest.mark.anyio

HANG = 10.0
"""Seconds after which a store call counts as hung (a hang detector, not a speed requirement)."""


@pytest.fixture(params=["memory", "redis"])
async def any_store(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[CacheStore]:
    if request.param == "memory":
        yield MemoryCacheStore()
        return
    url: str = request.getfixturevalue("shared_redis_url")
    store = RedisCacheStore(RedisConnection(url), prefix=key_prefix)
    await store.open()
    try:
        yield store
    finally:
        try:
            await delete_prefixed(store.redis.client, key_prefix)
        finally:
            await store.aclose()


async def test_the_contract_get_what_was_set(any_store: CacheStore) -> None:
    assert await any_store.get("absent") is None
    await any_store.set("k", b"\x00binary\xffblob", 60.0)
    assert await any_store.get("k") == b"\x00binary\xffblob"
    await any_store.set("k", b"replaced", 60.0)
    assert await any_store.get("k") == b"replaced"
    assert await any_store.get("other") is None


async def test_the_redis_store_writes_under_its_prefix_with_the_ttl(shared_redis_url: str, key_prefix: str) -> None:
    store = RedisCacheStore(RedisConnection(shared_redis_url), ttl=30.0, prefix=key_prefix)
    await store.open()
    try:
        await store.set("abc", b"v", 10.0)
        ttl = await store.redis.client.pttl(key_prefix + "abc")
        assert 0 < ttl <= 10_000
        await store.set("long", b"v", 999.0)  # capped by the store's own ttl
        assert 10_000 < await store.redis.client.pttl(key_prefix + "long") <= 30_000
        await store.redis.client.pexpire(key_prefix + "abc", 1)
        deadline = asyncio.get_running_loop().time() + HANG
        while await store.get("abc") is not None:  # Redis expires it (1 ms); no fixed sleep
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.005)
    finally:
        try:
            await delete_prefixed(store.redis.client, key_prefix)
        finally:
            await store.aclose()


async def test_the_memory_store_expires_entries_on_its_clock() -> None:
    clock = FakeClock()
    store = MemoryCacheStore(ttl=100.0, timer=clock)
    await store.set("short", b"a", 10.0)
    await store.set("long", b"b", 1000.0)  # capped at the store's 100 s
    clock.now += 9.9
    assert await store.get("short") == b"a"
    clock.now += 0.1
    assert await store.get("short") is None
    assert await store.get("long") == b"b"
    clock.now += 90.0
    assert await store.get("long") is None
    assert len(store) == 0


async def test_the_memory_store_is_bounded_by_entries_least_recently_used_first() -> None:
    store = MemoryCacheStore(max_entries=3, timer=FakeClock())
    for key in "abc":
        await store.set(key, key.encode(), 60.0)
    assert await store.get("a") == b"a"  # a is now the most recently used
    await store.set("d", b"d", 60.0)
    assert len(store) == 3
    assert await store.get("b") is None
    assert [await store.get(k) for k in "acd"] == [b"a", b"c", b"d"]
    await store.set("a", b"again", 60.0)  # replacing an entry evicts nothing
    assert len(store) == 3


async def test_the_memory_store_is_bounded_by_bytes() -> None:
    store = MemoryCacheStore(max_entries=1000, max_bytes=10_000, timer=FakeClock())
    for i in range(10):
        await store.set(f"k{i}", bytes(2000), 60.0)
    assert 1 <= len(store) <= 4
    assert await store.get("k9") == bytes(2000)
    await store.set("huge", bytes(20_000), 60.0)  # larger than the whole store: not kept, nothing else lost
    assert await store.get("huge") is None
    assert await store.get("k9") == bytes(2000)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MemoryCacheStore(max_entries=0), "max_entries"),
        (lambda: MemoryCacheStore(ttl=0), "ttl"),
        (lambda: MemoryCacheStore(ttl=float("inf")), "ttl"),
        (lambda: MemoryCacheStore(max_bytes=0), "max_bytes"),
        (lambda: RedisCacheStore(RedisConnection("redis://127.0.0.1:1"), ttl=-1), "ttl"),
        (lambda: RedisCacheStore(RedisConnection("redis://127.0.0.1:1"), retry_interval=-1), "retry_interval"),
    ],
)
def test_bad_store_settings_fail_at_construction(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


@pytest.fixture
def private() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


@pytest.mark.socket
@pytest.mark.parametrize("outage", ["stopped", "frozen"])
async def test_a_redis_outage_is_a_miss_logged_once_and_the_store_recovers(
    private: PrivateRedis, outage: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisCacheStore(RedisConnection(private.url, timeout=0.2), retry_interval=0.0)
    await store.open()
    try:
        await store.set("k", b"v", 60.0)
        assert await store.get("k") == b"v"
        if outage == "stopped":
            private.stop()
        else:
            private.freeze()
        with caplog.at_level(logging.WARNING, logger="hfasgi.cache"):
            for _ in range(3):
                async with asyncio.timeout(HANG):
                    assert await store.get("k") is None
                    await store.set("k2", b"v2", 60.0)  # silently not stored
        warnings = [r for r in caplog.records if r.name == "hfasgi.cache"]
        assert len(warnings) == 1 and "not answering" in warnings[0].getMessage()
        if outage == "stopped":
            private.start()
        else:
            private.thaw()
        deadline = asyncio.get_running_loop().time() + HANG
        while True:  # the client reconnects by itself
            await store.set("k3", b"v3", 60.0)
            if await store.get("k3") == b"v3":
                break
            assert asyncio.get_running_loop().time() < deadline, "the store never recovered"
            await asyncio.sleep(0.05)
        assert "answers again" in caplog.records[-1].getMessage()
    finally:
        private.thaw()
        await store.aclose()


@pytest.mark.socket
async def test_during_an_outage_redis_is_tried_at_most_every_retry_interval(private: PrivateRedis) -> None:
    clock = FakeClock()
    store = RedisCacheStore(RedisConnection(private.url, timeout=0.2), retry_interval=5.0, clock=clock)
    await store.open()
    try:
        private.freeze()  # each call that reaches Redis would wait for the timeout
        async with asyncio.timeout(HANG):
            assert await store.get("k") is None  # reaches Redis, times out, opens the breaker
        calls = 0
        original = store.redis.client.get

        async def counting(name: Any) -> Any:
            nonlocal calls
            calls += 1
            return await original(name)

        store.redis.client.get = counting  # type: ignore[method-assign]
        for _ in range(5):
            assert await store.get("k") is None
        assert calls == 0  # within the interval nothing waits on Redis
        private.thaw()
        clock.now += 5.0
        assert await store.get("k") is None  # tried again (the key is absent): and Redis answered
        assert calls == 1
    finally:
        private.thaw()
        await store.aclose()
