"""Response caching: :class:`ResponseCache`, its config and its stores (memory, Redis)."""

from hfasgi.cache.keys import DETERMINISTIC_TASKS, cache_key, canonical_body, is_deterministic
from hfasgi.cache.middleware import CacheConfig, ResponseCache
from hfasgi.cache.stores import CacheStore, MemoryCacheStore, RedisCacheStore

__all__ = [
    "DETERMINISTIC_TASKS",
    "CacheConfig",
    "CacheStore",
    "MemoryCacheStore",
    "RedisCacheStore",
    "ResponseCache",
    "cache_key",
    "canonical_body",
    "is_deterministic",
]
