"""The one pooled HTTP client every upstream request goes through.

aiohttp's client, not httpx: on this project's machine a bare pure-ASGI proxy costs ~129 µs of CPU per
request through aiohttp and ~1,100 µs through httpx (docs/perf_baseline.md), and the gateway's whole
budget is 250 µs. The session is created by the application's lifespan (:func:`hfasgi.resources`),
shared by every layer and request, and closed at shutdown.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

__all__ = ["UpstreamPool"]

logger = logging.getLogger("hfasgi.forwarding")


class UpstreamPool:
    """A lazily created, explicitly closed :class:`aiohttp.ClientSession` with keep-alive connections.

    ``__init__`` does no I/O (a session needs a running event loop); :meth:`open` runs in the app's
    lifespan. If the lifespan never ran (some test clients skip it), the first request opens the pool
    and a warning is logged.
    """

    __slots__ = ("_loop", "_session", "keepalive", "max_connections")

    def __init__(self, *, max_connections: int = 512, keepalive: float = 60.0) -> None:
        if max_connections < 1:
            raise ValueError(f"UpstreamPool.max_connections must be >= 1, got {max_connections}")
        self.max_connections = max_connections
        self.keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def is_open(self) -> bool:
        """Whether a session exists and is not closed."""
        return self._session is not None and not self._session.closed

    async def open(self) -> None:
        """Create the session (idempotent)."""
        self._create()

    async def aclose(self) -> None:
        """Close the session and its connections (idempotent)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    def session(self) -> aiohttp.ClientSession:
        """The open session; opens it (with a warning) when the lifespan did not."""
        session = self._session
        if session is None or session.closed or self._loop is not asyncio.get_running_loop():
            logger.warning(
                "hfasgi: upstream pool opened on first use; run the application's lifespan "
                "(or `async with hfasgi.resources(...)`) so it is opened and closed cleanly"
            )
            session = self._create()
        return session

    def _create(self) -> aiohttp.ClientSession:
        if self._session is not None and not self._session.closed and self._loop is asyncio.get_running_loop():
            return self._session
        connector = aiohttp.TCPConnector(
            limit=self.max_connections, keepalive_timeout=self.keepalive, ttl_dns_cache=300
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=True,
            trust_env=False,
            # Sent only when the client sent them: no encodings (bodies are read decoded), no invented
            # user agent or content type (binary task bodies may come without one).
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        )
        self._loop = asyncio.get_running_loop()
        return self._session
