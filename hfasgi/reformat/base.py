"""The contract between :class:`~hfasgi.reformat.ResponseReformatter` and the translation modules.

A translation module exposes builders ``build(request: Request) -> Translator``. The middleware picks
one from the client's :class:`~hfasgi.operations.Operation` and the upstream's kind, builds a
:class:`Translator` for the request, hands :attr:`Translator.upstream_op` and :attr:`Translator.body`
to the forwarder, and feeds the upstream's answer back through :meth:`Translator.response` (a whole
JSON answer) or :meth:`Translator.event` / :meth:`Translator.end` (a stream, event by event).

Translators see only successful (2xx) answers: upstream errors are already the error envelope (the
forwarder normalises them) and pass through untouched, in a stream as one error event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hfasgi.errors import ErrorType, GatewayError

if TYPE_CHECKING:
    from hfasgi.catalog import ModelRoute
    from hfasgi.context import RequestContext
    from hfasgi.operations import Operation

__all__ = ["UNCHANGED", "Request", "Translator", "UpstreamShapeError", "bad_upstream", "unsupported"]

UNCHANGED: Any = object()
""":attr:`Translator.body` when the request body goes upstream as the client sent it."""


@dataclass(frozen=True, slots=True)
class Request:
    """What a builder knows about one request."""

    op: Operation
    """The client's operation (route, task, path model)."""
    route: ModelRoute
    """Where the model goes: the client-facing id (``route.model``), the upstream and its id for it."""
    task: str | None
    """The resolved HF task (forced by the URL, else the catalog's, else the route's)."""
    document: Any
    """The request body parsed as JSON (``None`` for an empty or binary body)."""
    ctx: RequestContext
    """The request context (principal, request id, ...)."""


class UpstreamShapeError(ValueError):
    """The upstream answered 2xx with a body the translation cannot read (the middleware sends a 502)."""


def bad_upstream(what: str) -> UpstreamShapeError:
    """An :class:`UpstreamShapeError` with a message naming what was wrong."""
    return UpstreamShapeError(f"The upstream's answer could not be translated: {what}")


class Translator:
    """One request's translation, built per request (per-request state lives on it).

    The defaults translate nothing: a subclass overrides what it changes.
    """

    __slots__ = ("body", "client_done", "upstream_op")

    tgi_errors = False
    """The client speaks TGI: error types it would not know become TGI's (``validation``, ``generation``, ...)."""

    def __init__(self, upstream_op: Operation, body: Any = UNCHANGED, *, client_done: bool = False) -> None:
        self.upstream_op = upstream_op
        """The operation the forwarder runs upstream (the client's own when only the answer changes)."""
        self.body = body
        """The JSON document to send upstream instead of the client's body, or :data:`UNCHANGED`."""
        self.client_done = client_done
        """Whether the client's stream must end with ``data: [DONE]`` (OpenAI routes)."""

    def unchanged(self, payload: bytes, *, event: bool) -> bool:
        """Whether the upstream's raw JSON (a whole answer, or one ``event``) needs no rewrite: a cheap byte test.

        ``True`` lets the middleware pass the bytes on without parsing them; the default says no.
        """
        return False

    def response(self, document: Any) -> Any:
        """A whole 2xx JSON answer of the upstream, rewritten for the client.

        Raise :class:`UpstreamShapeError` when ``document`` is not what the upstream should have sent.
        """
        return document

    def event(self, document: Any) -> list[Any]:
        """One upstream stream event (the parsed JSON of a ``data:`` line) → the client's events (JSON values)."""
        return [document]

    def end(self) -> list[Any]:
        """The client's last events, once the upstream stream has ended normally (``[DONE]`` excluded)."""
        return []

    def flush(self) -> list[Any]:
        """The events held back, sent as they are before an upstream error event ends the stream."""
        return []


def unsupported(message: str) -> GatewayError:
    """A 400 ``unsupported_operation`` for a request no translation can serve on this upstream."""
    return GatewayError(400, ErrorType.UNSUPPORTED_OPERATION, message)
