"""Rate limiting: :class:`RateLimiter` and its counter stores (memory, Redis)."""

from hfasgi.ratelimit.middleware import RateLimiter, RateLimiterConfig
from hfasgi.ratelimit.stores import Charge, Decision, LimiterStore, MemoryLimiterStore, RedisLimiterStore, WindowState

__all__ = [
    "Charge",
    "Decision",
    "LimiterStore",
    "MemoryLimiterStore",
    "RateLimiter",
    "RateLimiterConfig",
    "RedisLimiterStore",
    "WindowState",
]
