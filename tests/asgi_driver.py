"""Drive an ASGI app in process and see its response *as it is sent* (docs/asgi_craft.md §3.4).

``httpx.ASGITransport`` and Starlette's ``TestClient`` buffer the whole response, so they cannot tell
a streamed answer from a buffered one. :func:`open_stream` yields the start message and then each
body chunk the moment the app sends it; leaving the block is the client hanging up
(``http.disconnect``), and the block only exits once the app has returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]

__all__ = ["Stream", "open_stream", "request"]


@dataclass
class Stream:
    """One response in flight: its start message, then its body chunks as they come."""

    start: Message
    _queue: asyncio.Queue[Message] = field(repr=False)
    ended: bool = False
    """The final body message (``more_body`` false) has been received."""

    @property
    def status(self) -> int:
        """The response status."""
        return int(self.start["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        """The response headers (last value wins)."""
        return dict(self.start.get("headers", []))

    async def chunk(self, timeout: float = 5.0) -> bytes:  # noqa: ASYNC109
        """The next body chunk (``b""`` once the body has ended); ``TimeoutError`` if none comes in time."""
        if self.ended:
            return b""
        message = await asyncio.wait_for(self._queue.get(), timeout)
        if message["type"] != "http.response.body":
            raise AssertionError(f"expected a body message, got {message!r}")
        if not message.get("more_body", False):
            self.ended = True
        body: bytes = message.get("body", b"")
        return body

    async def rest(self, timeout: float = 10.0) -> bytes:  # noqa: ASYNC109
        """Every remaining body byte, up to the end of the response."""
        parts = []
        async with asyncio.timeout(timeout):
            while not self.ended:
                parts.append(await self.chunk(timeout))
        return b"".join(parts)


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]], query: bytes) -> Message:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers,
    }


@contextlib.asynccontextmanager
async def open_stream(
    app: Any,
    method: str = "POST",
    path: str = "/",
    *,
    json_body: Any = None,
    body: bytes | list[bytes] = b"",
    headers: dict[str, str] | None = None,
    query: bytes = b"",
    timeout: float = 10.0,  # noqa: ASYNC109
) -> AsyncIterator[Stream]:
    """Call ``app`` with one request and yield the :class:`Stream` once the response has started.

    ``body`` may be a list of chunks (sent with ``more_body``). On exit the client disconnects and the
    block waits (up to ``timeout``) for the app to return; an exception the app raised is re-raised.
    """
    raw: list[tuple[bytes, bytes]] = [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
    ]
    if json_body is not None:
        body = json.dumps(json_body).encode()
        raw.append((b"content-type", b"application/json"))
    chunks = list(body) if isinstance(body, list) else [body]
    hung_up = asyncio.Event()
    sent: asyncio.Queue[Message] = asyncio.Queue()

    async def receive() -> Message:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        await hung_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if hung_up.is_set():
            raise OSError("the client has disconnected")
        await sent.put(message)

    task = asyncio.ensure_future(app(_scope(method, path, raw, query), receive, send))
    try:
        getter = asyncio.ensure_future(sent.get())
        done, _ = await asyncio.wait({getter, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            getter.cancel()
            if task in done:
                task.result()  # re-raise what the app raised
                raise AssertionError("the app returned without starting a response")
            raise TimeoutError(f"no response started within {timeout}s")
        start = getter.result()
        if start["type"] != "http.response.start":
            raise AssertionError(f"expected http.response.start, got {start!r}")
        yield Stream(start, sent)
    finally:
        hung_up.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            task.cancel()
            raise AssertionError(f"the app did not return within {timeout}s of the client hanging up") from None


async def request(app: Any, method: str = "POST", path: str = "/", **kwargs: Any) -> tuple[Stream, bytes]:
    """One complete request: the stream (for status and headers) and the whole body."""
    async with open_stream(app, method, path, **kwargs) as stream:
        return stream, await stream.rest()
