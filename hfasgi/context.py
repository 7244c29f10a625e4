"""The per-request context: one object at one scope key, shared by every layer."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import orjson

from hfasgi.errors import GatewayError

if TYPE_CHECKING:
    from hfasgi.operations import Operation
    from hfasgi.principal import Principal
    from hfasgi.types import Scope

__all__ = ["CONTEXT_KEY", "RequestContext", "decode_json", "encode_json", "get_context"]

CONTEXT_KEY = "hfasgi"
"""The one scope key hfasgi writes; it holds the :class:`RequestContext`."""

_UNPARSED: Any = object()


class RequestContext:
    """What the layers know about one request.

    Every layer reads and writes here and nowhere else. The body is read at most once (see
    :mod:`hfasgi.body`) and its JSON parsed at most once (:meth:`json`).
    """

    __slots__ = (
        "_json",
        "body",
        "cache_hit",
        "deferred_error",
        "span",
        "upstream_attempts",
        "upstream_duration",
        "upstream_status",
        "upstream_usage",
        "model",
        "operation",
        "principal",
        "recognized",
        "request_id",
        "upstream_model",
        "upstream_operation",
        "upstream_name",
        "values",
    )

    def __init__(self, operation: Operation | None = None) -> None:
        self.operation = operation
        self.recognized = operation is not None
        self.request_id: str = ""
        self.body: bytes | None = None
        self._json: Any = _UNPARSED
        self.model: str | None = None
        """The model id the client asked for (path or body), after defaults and aliases."""
        self.deferred_error: GatewayError | None = None
        """A client error an outer layer found (the task API's 400s), answered by the first layer inside the
        limiter (validator, reformatter or forwarder), so the caller is authenticated and counted first."""
        self.span: Any = None
        """The request's SERVER span (set by :class:`~hfasgi.observability.Tracing`): inner layers add
        attributes and events to it (``if ctx.span is not None: ctx.span.set_attribute(...)``)."""
        self.upstream_usage: tuple[int | None, int | None] | None = None
        """``(prompt, completion)`` tokens of a translated answer's upstream ``usage`` (set by the reformatter,
        since the client's dialect may not carry them: a TGI answer has no prompt count)."""
        self.upstream_status: int | None = None
        """The status of the upstream's (last) answer, set by the forwarder."""
        self.upstream_attempts = 0
        """How many times the forwarder sent the request upstream (retries = attempts - 1)."""
        self.upstream_duration: float | None = None
        """Seconds from the first upstream attempt to the end of the upstream's answer, set by the forwarder."""
        self.cache_hit: bool | None = None
        """Whether a response cache answered (``None``: no cache looked)."""
        self.principal: Principal | None = None
        """Who is calling (set by :class:`~hfasgi.auth.ApiKeyAuth`); ``None`` when auth is off."""
        self.upstream_name: str | None = None
        self.upstream_model: str | None = None
        self.upstream_operation: Operation | None = None
        """What the forwarder runs upstream when it differs from :attr:`operation` (set by the reformatter)."""
        self.values: dict[str, Any] = {}
        """Free slots for later layers (principal, usage, cache key, timings, ...)."""

    def json(self) -> Any:
        """The body parsed as JSON, once. Raises a 400 :class:`GatewayError` when it is not JSON."""
        if self._json is _UNPARSED:
            if self.body is None:
                raise RuntimeError("the request body has not been read yet")
            try:
                self._json = decode_json(self.body, exact_integers=True) if self.body else None
            except (ValueError, UnicodeDecodeError) as exc:
                raise GatewayError(400, "invalid_json", f"The request body is not valid JSON: {exc}") from None
            except RecursionError:  # json.loads gives up on absurd nesting: still the client's fault
                raise GatewayError(400, "invalid_json", "The request body is nested too deeply") from None
        return self._json

    def set_json(self, document: Any, body: bytes) -> None:
        """Replace the body and its parsed form together (used when a layer rewrites the body)."""
        self._json = document
        self.body = body


def encode_json(document: Any) -> bytes:
    """Compact UTF-8 JSON; ASCII-escaped instead when a string holds a lone surrogate, which UTF-8 cannot encode.

    orjson does the work (floats and long lists cost a tenth of the standard library's time); what it
    refuses (lone surrogates, integers beyond 64 bits, non-string keys) goes through ``json``.
    """
    try:
        return orjson.dumps(document)
    except TypeError:
        pass
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(document, separators=(",", ":")).encode()


def decode_json(data: bytes, *, exact_integers: bool = False) -> Any:
    """Parse JSON bytes (orjson; the standard library for what it refuses, such as ``NaN``).

    orjson reads an integer beyond 64 bits as a float; ``exact_integers`` sends a body with such a
    number (20 digits in a row) to the standard library instead, which keeps it an ``int``: for
    client bodies, where a value is checked against a schema. Raises ``ValueError``
    (``json.JSONDecodeError``) when ``data`` is not JSON.
    """
    if exact_integers and _LONG_NUMBER.search(data):
        return json.loads(data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


_LONG_NUMBER = re.compile(rb"[0-9]{20}")


def get_context(scope: Scope) -> RequestContext:
    """The request's context, created on first use."""
    ctx: RequestContext | None = scope.get(CONTEXT_KEY)
    if ctx is None:
        ctx = scope[CONTEXT_KEY] = RequestContext()
    return ctx
