"""Fixtures of the response-cache tier.

* ``clock``: a :class:`~tests.cache.support.FakeClock` for the memory store (TTL tests move it by hand);
* ``store``: a :class:`~hfasgi.cache.MemoryCacheStore` on that clock;
* ``make_gateway``: ``await make_gateway(kind="router", store=..., keys=..., **cache_fields)`` → the
  reference layers with the cache, in front of the session's fake HF upstream, as an ASGI app (its
  resources opened for the test, closed after);
* ``shared_redis_url``: the shared Redis (skips when absent, fails on CI); ``key_prefix``: a prefix of
  the test's own, whose keys are deleted afterwards by the tests that use it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from hfasgi.cache import CacheStore, MemoryCacheStore
from hfasgi.forwarding.forwarder import ForwarderConfig
from hfasgi.stack import layer_resources, resources, stack
from tests.cache.support import FakeClock, catalog_for, gateway_layers, not_found
from tests.redis_support import require_redis, unique_prefix
from tests.upstream.fixtures import Upstream

MakeGateway = Callable[..., Awaitable[Any]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryCacheStore:
    return MemoryCacheStore(max_entries=100, ttl=3600.0, timer=clock)


@pytest.fixture
async def make_gateway(upstream: Upstream, store: MemoryCacheStore) -> AsyncIterator[MakeGateway]:
    async with contextlib.AsyncExitStack() as exits:

        async def make(
            kind: str = "router",
            *,
            cache_store: CacheStore | None = None,
            keys: list[str] | None = None,
            default_model: str | None = None,
            **cache: Any,
        ) -> Any:
            forwarder = ForwarderConfig(catalog=catalog_for(upstream.url, kind, default_model=default_model))
            found = gateway_layers(forwarder, store if cache_store is None else cache_store, keys=keys, **cache)
            await exits.enter_async_context(resources(*layer_resources(found)))
            return stack(not_found, *found)

        yield make


@pytest.fixture(scope="session")
def shared_redis_url() -> str:
    return require_redis()


@pytest.fixture
def key_prefix() -> str:
    return unique_prefix()
