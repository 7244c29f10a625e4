"""The error envelope: one JSON shape for every error the gateway sends, and one helper that sends it.

``{"error": "<message>", "error_type": "<kind>"}`` is what every Hugging Face client reads
(``huggingface_hub`` takes ``error``; ``text_generation`` maps ``error_type`` to its typed errors).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from hfasgi.types import Scope, Send

__all__ = ["ErrorType", "GatewayError", "envelope", "error_type_for_status", "send_error"]


class ErrorType:
    """The ``error_type`` values hfasgi itself emits (upstream values are passed through)."""

    INVALID_REQUEST = "invalid_request"
    INVALID_JSON = "invalid_json"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    VALIDATION = "validation"
    MODEL_NOT_FOUND = "model_not_found"
    MODEL_REQUIRED = "model_required"
    UNSUPPORTED_OPERATION = "unsupported_operation"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_ERROR = "upstream_error"
    INTERNAL = "internal"


_BY_STATUS = {
    400: ErrorType.INVALID_REQUEST,
    401: "upstream_authentication",
    403: "upstream_permission",
    404: ErrorType.NOT_FOUND,
    405: ErrorType.METHOD_NOT_ALLOWED,
    408: ErrorType.UPSTREAM_TIMEOUT,
    413: ErrorType.PAYLOAD_TOO_LARGE,
    415: ErrorType.UNSUPPORTED_MEDIA_TYPE,
    422: ErrorType.VALIDATION,
    424: "generation",
    429: "overloaded",
    500: ErrorType.UPSTREAM_ERROR,
    502: ErrorType.UPSTREAM_UNAVAILABLE,
    503: "unavailable",
    504: ErrorType.UPSTREAM_TIMEOUT,
}


def error_type_for_status(status: int) -> str:
    """A sensible ``error_type`` for an upstream status that came without one (TGI's names where they exist)."""
    return _BY_STATUS.get(status, ErrorType.INVALID_REQUEST if status < 500 else ErrorType.UPSTREAM_ERROR)


class GatewayError(Exception):
    """An error a layer wants the client to see, in the envelope, with this status.

    Raise it before the response has started; the :class:`~hfasgi.envelope.ErrorEnvelope` layer (or
    the layer itself via :func:`send_error`) turns it into a response.
    """

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        headers: Iterable[tuple[bytes, bytes]] = (),
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = list(headers)
        self.extra = extra

    async def send(self, scope: Scope, send: Send) -> None:
        """Send this error as the response."""
        await send_error(scope, send, self.status, self.error_type, self.message, self.headers, self.extra)

    def __repr__(self) -> str:
        return f"GatewayError({self.status}, {self.error_type!r}, {self.message!r})"


def envelope(message: str, error_type: str, extra: dict[str, Any] | None = None) -> bytes:
    """The envelope as compact JSON bytes."""
    doc: dict[str, Any] = {"error": message, "error_type": error_type}
    if extra:
        doc.update(extra)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


async def send_error(
    scope: Scope,
    send: Send,
    status: int,
    error_type: str,
    message: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
    extra: dict[str, Any] | None = None,
) -> None:
    """Send the error envelope as a complete response (or close a websocket with ``4000 + status``)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4000 + status, "reason": message[:120]})
        return
    body = envelope(message, error_type, extra)
    raw: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def reason(status: int) -> str:
    """The standard reason phrase of a status ("Bad Gateway"), or ``"HTTP <status>"``."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"
