"""Response cache stores: answers by key, each for a time. In memory (the default) or in Redis (shared).

A store holds opaque blobs (:mod:`hfasgi.cache.replay` encodes them). It never fails a request: the
Redis store answers a miss, and stores nothing, while Redis is down or slow, logs the outage once (and
its end), and tries Redis again at most every ``retry_interval`` seconds meanwhile, so an outage costs
requests no waiting on Redis's timeouts.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from cachetools import TTLCache

from hfasgi.redis_client import STORE_ERRORS, RedisConnection

__all__ = ["CacheStore", "MemoryCacheStore", "RedisCacheStore"]

logger = logging.getLogger("hfasgi.cache")

_ENTRY_OVERHEAD = 128
"""Bytes counted per memory entry on top of its blob (the key, the tuple, the cache's links)."""


@runtime_checkable
class CacheStore(Protocol):
    """What :class:`~hfasgi.cache.ResponseCache` asks of a store (and, as a resource, of the app's lifespan)."""

    async def get(self, key: str) -> bytes | None:
        """The blob stored under ``key``, or ``None`` (absent, expired, or the store is unavailable)."""
        ...

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (silently not, when the store is unavailable)."""
        ...

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...


class MemoryCacheStore:
    """Answers in this process (per replica), in a ``cachetools.TTLCache``, least recently used out first.

    Bounded by ``max_entries`` answers and ``max_bytes`` bytes of answers, whichever comes first. An
    entry lives the ``ttl`` given to :meth:`set`, at most the store's own ``ttl``. ``timer`` is the clock
    (``time.monotonic``; tests pass their own).
    """

    def __init__(
        self,
        max_entries: int = 1024,
        ttl: float = 3600.0,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"MemoryCacheStore.max_entries must be >= 1, got {max_entries!r}")
        if not (ttl > 0 and math.isfinite(ttl)):
            raise ValueError(f"MemoryCacheStore.ttl must be a positive number of seconds, got {ttl!r}")
        if max_bytes < 1:
            raise ValueError(f"MemoryCacheStore.max_bytes must be >= 1, got {max_bytes!r}")
        self.max_entries = max_entries
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._timer = timer
        self._entries: TTLCache[str, tuple[float, bytes]] = TTLCache(
            maxsize=max_bytes, ttl=ttl, timer=timer, getsizeof=_size
        )

    def __len__(self) -> int:
        """How many answers it holds (expired ones included until they are swept)."""
        return len(self._entries)

    def __bool__(self) -> bool:
        return True  # an empty store is still a store (``store or default`` must not replace it)

    async def get(self, key: str) -> bytes | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires, value = found
        if self._timer() >= expires:
            self._entries.pop(key, None)
            return None
        return value

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        entries = self._entries
        if _size((0.0, value)) > self.max_bytes:
            return  # larger than the whole cache
        if key not in entries:
            while len(entries) >= self.max_entries:
                entries.popitem()
        entries[key] = (self._timer() + min(ttl, self.ttl), value)

    def clear(self) -> None:
        """Forget every answer."""
        self._entries.clear()

    async def open(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class RedisCacheStore:
    """Answers in Redis, shared by every replica: ``GET`` and ``SET ... PX``, one round trip each.

    Keys are ``<prefix><digest>``; the digest covers the principal's id, so Redis never holds an id or a
    prompt in clear. Redis errors are misses (see the module docstring); the connection is the shared
    :class:`~hfasgi.redis_client.RedisConnection`, opened and closed by the app's lifespan.
    """

    def __init__(
        self,
        connection: RedisConnection,
        ttl: float = 3600.0,
        *,
        prefix: str = "hfasgi:cache:",
        retry_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (ttl > 0 and math.isfinite(ttl)):
            raise ValueError(f"RedisCacheStore.ttl must be a positive number of seconds, got {ttl!r}")
        if retry_interval < 0:
            raise ValueError(f"RedisCacheStore.retry_interval must be >= 0, got {retry_interval!r}")
        self.redis = connection
        self.ttl = ttl
        self.prefix = prefix
        self.retry_interval = retry_interval
        self._clock = clock
        self._down_until = 0.0
        self._down = False

    def __repr__(self) -> str:
        return f"RedisCacheStore({self.redis!r}, ttl={self.ttl}, prefix={self.prefix!r})"

    async def get(self, key: str) -> bytes | None:
        if self._down and self._clock() < self._down_until:
            return None
        try:
            value = await self.redis.client.get(self.prefix + key)
        except STORE_ERRORS as exc:
            self._failed(exc)
            return None
        self._recovered()
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        if self._down and self._clock() < self._down_until:
            return
        milliseconds = max(1, int(min(ttl, self.ttl) * 1000))
        try:
            await self.redis.client.set(self.prefix + key, value, px=milliseconds)
        except STORE_ERRORS as exc:
            self._failed(exc)
            return
        self._recovered()

    def _failed(self, exc: BaseException) -> None:
        if not self._down:
            self._down = True
            logger.warning(
                "hfasgi: the Redis response cache is not answering (%s: %s); requests are served without it",
                type(exc).__name__,
                exc,
            )
        self._down_until = self._clock() + self.retry_interval

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            logger.warning("hfasgi: the Redis response cache answers again")

    async def open(self) -> None:
        await self.redis.open()

    async def aclose(self) -> None:
        await self.redis.aclose()


def _size(item: tuple[float, bytes]) -> int:
    return len(item[1]) + _ENTRY_OVERHEAD
