"""ErrorEnvelope: whatever escapes the inner layers becomes one JSON error, never a second response."""

from __future__ import annotations

import logging
from typing import Any

from hfasgi.errors import ErrorType, GatewayError, send_error
from hfasgi.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ErrorEnvelope"]

logger = logging.getLogger("hfasgi.errors")


class ErrorEnvelope:
    """Turn a :class:`GatewayError` (or any exception) raised before the response started into the envelope.

    Unexpected exceptions become ``500 {"error": "Internal error", "error_type": "internal"}``: the
    stack trace is logged (logger ``hfasgi.errors``) and never leaves the process. After the response
    has started nothing can be sent any more: the exception is re-raised and the server aborts the
    connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        s: Scope = scope
        if s["type"] not in ("http", "websocket"):
            await self.app(s, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] in ("http.response.start", "websocket.accept", "websocket.close"):
                started = True
            await send(message)

        try:
            await self.app(s, receive, tracking_send)
        except GatewayError as err:
            if started:
                raise
            await err.send(s, send)
        except Exception:
            logger.exception("hfasgi: unhandled error while serving %s", s.get("path"))
            if started:
                raise
            await send_error(s, send, 500, ErrorType.INTERNAL, "Internal error")
