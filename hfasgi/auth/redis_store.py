"""RedisKeyStore: keys shared by every replica, so a key revoked once is refused everywhere.

Layout (``prefix`` defaults to ``hfasgi:``): ``<prefix>key:<hash>`` holds the record as JSON and
``<prefix>keys`` maps each id to its hash (for ``list`` and ``revoke``). Lookups are cached in the
process for ``cache_ttl`` seconds (0.5 by default), so a revocation takes effect everywhere within
that time while a busy key costs one Redis round trip per ``cache_ttl``, not one per request.
"""

from __future__ import annotations

import json

from cachetools import TTLCache

from hfasgi.auth.keys import KeyRecord
from hfasgi.redis_client import RedisConnection

__all__ = ["RedisKeyStore"]

_MISSING = object()


class RedisKeyStore:
    """Key records in Redis (see the module docstring for the layout and the cache)."""

    def __init__(self, redis: RedisConnection, *, prefix: str = "hfasgi:", cache_ttl: float = 0.5) -> None:
        if cache_ttl < 0:
            raise ValueError(f"RedisKeyStore.cache_ttl must be >= 0, got {cache_ttl!r}")
        self.redis = redis
        self.prefix = prefix
        self.cache_ttl = cache_ttl
        self._cache: TTLCache[str, KeyRecord | None] | None = (
            TTLCache(maxsize=10_000, ttl=cache_ttl) if cache_ttl > 0 else None
        )

    async def open(self) -> None:
        await self.redis.open()

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def find(self, key_hash: str) -> KeyRecord | None:
        """The active record for ``key_hash``; raises a Redis error when Redis cannot answer."""
        cache = self._cache
        if cache is not None:
            cached = cache.get(key_hash, _MISSING)
            if cached is not _MISSING:
                return cached  # type: ignore[return-value]
        raw = await self.redis.client.get(self.prefix + "key:" + key_hash)
        record = _decode(raw)
        if record is not None and record.revoked is not None:
            record = None
        if cache is not None:
            cache[key_hash] = record
        return record

    async def add(self, record: KeyRecord) -> None:
        """Store ``record``; refuses an id that is already taken (revoke it first)."""
        client = self.redis.client
        taken = await client.hsetnx(self.prefix + "keys", record.id, record.hash)
        if not taken:
            raise ValueError(f"a key with id {record.id!r} already exists")
        await client.set(self.prefix + "key:" + record.hash, json.dumps(record.to_mapping()))

    async def records(self) -> list[KeyRecord]:
        """Every record (revoked ones included), sorted by id."""
        client = self.redis.client
        index = await client.hgetall(self.prefix + "keys")
        found = []
        for digest in index.values():
            record = _decode(await client.get(self.prefix + "key:" + _text(digest)))
            if record is not None:
                found.append(record)
        return sorted(found, key=lambda r: r.id)

    async def revoke(self, key_id: str) -> KeyRecord:
        """Mark the key ``key_id`` revoked (kept for listing); raises ``KeyError`` when there is none."""
        client = self.redis.client
        digest = await client.hget(self.prefix + "keys", key_id)
        record = _decode(await client.get(self.prefix + "key:" + _text(digest))) if digest else None
        if record is None:
            raise KeyError(key_id)
        revoked = record.revoke()
        await client.set(self.prefix + "key:" + record.hash, json.dumps(revoked.to_mapping()))
        if self._cache is not None:
            self._cache.pop(record.hash, None)
        return revoked


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _decode(raw: bytes | str | None) -> KeyRecord | None:
    if raw is None:
        return None
    return KeyRecord.from_mapping(json.loads(raw))
