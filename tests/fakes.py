"""A tiny pure-ASGI app that records what reaches it, and helpers to drive ASGI by hand."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]


async def serve_lifespan(receive: Any, send: Any, log: list[str]) -> None:
    """Answer the lifespan protocol (every event completes), recording the events in ``log``."""
    while True:
        message = await receive()
        log.append(message["type"])
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


class RecordingApp:
    """Answers every http request with JSON ``{"path", "body"}``; records scopes and bodies; raises on demand."""

    def __init__(self, *, raise_before: Exception | None = None, raise_after: Exception | None = None) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []
        self.raise_before = raise_before
        self.raise_after = raise_after
        self.lifespan_events: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send, self.lifespan_events)
            return
        if scope["type"] != "http":
            return
        self.scopes.append(scope)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.bodies.append(body)
        if self.raise_before is not None:
            raise self.raise_before
        payload = json.dumps({"path": scope["path"], "body": body.decode()}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"x-request-id", b"app-set")],
            }
        )
        if self.raise_after is not None:
            raise self.raise_after
        await send({"type": "http.response.body", "body": payload})


async def call(
    app: Callable[[Any, Any, Any], Awaitable[None]],
    method: str = "POST",
    path: str = "/",
    *,
    body_chunks: list[bytes] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> list[Message]:
    """Run one http request through ``app`` by hand and return the messages it sent."""
    chunks = list(body_chunks or [b""])
    sent: list[Message] = []

    async def receive() -> Message:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers or [], "query_string": b""}
    await app(scope, receive, send)
    return sent
