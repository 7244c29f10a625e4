"""Read the request body at most once, with a size limit, and hand it on to inner apps.

The first layer that needs the body calls :func:`read_body`; it lands in the request context and
every later layer (and the forwarder) uses that copy. Inner apps still get the bytes through
:func:`replay_receive`, which then delegates to the real ``receive`` so ``http.disconnect``
keeps flowing.
"""

from __future__ import annotations

from hfasgi.context import get_context
from hfasgi.errors import ErrorType, GatewayError
from hfasgi.types import Message, Receive, Scope

__all__ = ["ClientDisconnected", "read_body", "replay_receive"]

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


class ClientDisconnected(Exception):
    """The client went away before its request body was complete."""


def too_large(limit: int) -> GatewayError:
    """The 413 error for a body over ``limit`` bytes."""
    return GatewayError(413, ErrorType.PAYLOAD_TOO_LARGE, f"The request body is larger than the limit of {limit} bytes")


async def read_body(scope: Scope, receive: Receive, limit: int = DEFAULT_MAX_BODY_BYTES) -> bytes:
    """The whole request body, read once per request and kept in the context.

    A declared ``content-length`` over ``limit`` is refused before anything is read; a chunked body
    is counted as it arrives and refused as soon as it passes ``limit`` (413, without reading the
    rest). Raises :class:`ClientDisconnected` if the client leaves mid-body.
    """
    ctx = get_context(scope)
    if ctx.body is not None:
        if len(ctx.body) > limit:
            raise too_large(limit)
        return ctx.body
    for name, value in scope["headers"]:
        if name == b"content-length" or name.lower() == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise GatewayError(400, ErrorType.INVALID_REQUEST, "Invalid Content-Length header") from None
            if declared > limit:
                raise too_large(limit)
            break
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        body: bytes = message.get("body", b"")
        if len(body) > limit:
            raise too_large(limit)
        ctx.body = body
        return body
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
        message = await receive()
    ctx.body = b"".join(chunks)
    return ctx.body


def replay_receive(scope: Scope, receive: Receive) -> Receive:
    """A ``receive`` for inner apps: the buffered body once, then the real ``receive``.

    The body is taken from the context when the inner app asks, so a rewrite by a later layer
    (:meth:`~hfasgi.context.RequestContext.set_json`) is what the app receives.
    """
    ctx = get_context(scope)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": ctx.body or b"", "more_body": False}
        message: Message = await receive()
        return message

    return replay
