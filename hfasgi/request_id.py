"""RequestId: accept the client's ``x-request-id`` or make one, and echo it on every response."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from hfasgi.context import get_context
from hfasgi.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RequestId", "RequestIdConfig"]

_VALID = re.compile(rb"[A-Za-z0-9._:\-]{1,128}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestIdConfig:
    """Configuration of :class:`RequestId`."""

    header: str = "x-request-id"
    """The request and response header carrying the id."""

    def __post_init__(self) -> None:
        if not self.header or self.header != self.header.strip():
            raise ValueError(f"RequestIdConfig.header must be a header name, got {self.header!r}")


class RequestId:
    """Give every request an id: the client's (when it is a sane token) or 32 new random hex digits.

    The id lands in the request context (the forwarder sends it upstream) and on every response,
    replacing any id an inner app or the upstream set. Pure ASGI; non-HTTP scopes pass through.
    """

    def __init__(self, app: ASGIApp, *, config: RequestIdConfig | None = None) -> None:
        self.app = app
        self.config = config or RequestIdConfig()
        self._header = self.config.header.lower().encode("latin-1")

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        s: Scope = scope
        if s["type"] != "http":
            await self.app(s, receive, send)
            return
        header = self._header
        ctx = get_context(s)
        if ctx.request_id:  # an outer RequestId chose it already: one id per request, however nested
            request_id = ctx.request_id.encode("latin-1")
        else:
            request_id = b""
            for name, value in s["headers"]:
                if name == header or name.lower() == header:
                    if _VALID.fullmatch(value):  # the client's id, when it is a sane token
                        request_id = value
                    break
            if not request_id:
                request_id = os.urandom(16).hex().encode()
            ctx.request_id = request_id.decode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(n, v) for n, v in message.get("headers", ()) if n.lower() != header]
                headers.append((header, request_id))
                message["headers"] = headers
            await send(message)

        await self.app(s, receive, send_with_id)
