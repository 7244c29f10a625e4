"""One shared Redis connection pool for the stores that need one (keys, limits; later the cache).

Requires the ``redis`` extra (``pip install 'hfasgi[redis]'``). Timeouts are short on purpose: the
request path waits on Redis, so a Redis that does not answer must fail fast and let the layer apply
its documented failure policy instead of hanging the request.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["STORE_ERRORS", "RedisConnection"]

logger = logging.getLogger("hfasgi.redis")


def _store_errors() -> tuple[type[BaseException], ...]:
    try:
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover - without the extra there is no Redis store at all
        return (OSError, TimeoutError)
    return (RedisError, OSError, TimeoutError)


STORE_ERRORS = _store_errors()
"""What a Redis call raises when Redis is down, slow or confused."""


class RedisConnection:
    """A lazily opened ``redis.asyncio`` client: a shared resource, opened and closed by the app's lifespan.

    ``RedisConnection("redis://127.0.0.1:6379/0", timeout=0.5)``; the URL may carry a password
    (``redis://:secret@host``) and is never logged.
    """

    def __init__(self, url: str, *, timeout: float = 0.5) -> None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("the Redis URL must start with redis://, rediss:// or unix://")
        if not timeout > 0:
            raise ValueError(f"RedisConnection.timeout must be > 0, got {timeout!r}")
        self.url = url
        self.timeout = timeout
        self._client: Redis | None = None

    def __repr__(self) -> str:
        return f"RedisConnection(<url hidden>, timeout={self.timeout})"

    @property
    def client(self) -> Redis:
        """The open client (opened by :meth:`open`)."""
        if self._client is None:
            raise RuntimeError("the Redis connection is not open: add it to the app's resources (lifespan)")
        return self._client

    async def open(self) -> None:
        """Create the client and check that Redis answers (a warning, not a failure, when it does not)."""
        if self._client is not None:
            return
        try:
            from redis.asyncio import Redis
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry
        except ImportError:
            raise RuntimeError("Redis stores need the redis package: pip install 'hfasgi[redis]'") from None
        options: dict[str, Any] = {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "retry": Retry(ExponentialBackoff(cap=0.05, base=0.005), 1),
            "decode_responses": False,
        }
        self._client = Redis.from_url(self.url, **options)
        try:
            await self._client.ping()
        except STORE_ERRORS as exc:
            logger.warning("hfasgi: Redis does not answer yet (%s); stores will apply their failure policy", exc)

    async def aclose(self) -> None:
        """Close the client and its connections."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
