"""ResponseReformatter: any client dialect on any upstream that can do the task, streams included.

It sits between the validator and the forwarder. For each recognised request it resolves the model
(the same catalog lookup the forwarder makes, cached), asks :func:`~hfasgi.reformat.dispatch.choose`
for a translator, gives the forwarder the upstream's operation and body, and rewrites the answer back:
a whole JSON answer at once (with its new ``content-length``), a stream event by event as it arrives.
Error answers pass through untouched: the forwarder already made them the envelope, and inside a
stream an error is one ``data: {"error", "error_type"}`` event that ends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hfasgi.body import DEFAULT_MAX_BODY_BYTES, ClientDisconnected, read_body, replay_receive
from hfasgi.catalog import ModelCatalog
from hfasgi.context import RequestContext, decode_json, encode_json, get_context
from hfasgi.errors import ErrorType, GatewayError, send_error
from hfasgi.operations import DEFAULT_ROUTES, Operation, Route, Routes
from hfasgi.reformat.base import UNCHANGED, Request, Translator, UpstreamShapeError
from hfasgi.reformat.dispatch import choose
from hfasgi.reformat.tasks_api.catalog_endpoints import map_model, send_models
from hfasgi.types import ASGIApp, Headers, Message, Receive, Scope, Send
from hfasgi.validation.media import looks_like_json

__all__ = ["ReformatterConfig", "ResponseReformatter"]

_JSON_BODY_ROUTES = (Route.CHAT, Route.COMPLETIONS, Route.EMBEDDINGS)
_PASS_ROUTES = (Route.MODELS, Route.INFO, Route.BILLING_USAGE, Route.BILLING_COST)
_DONE = b"data: [DONE]\n\n"
_IGNORED_HEADER = b"x-hfasgi-ignored-parameters"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReformatterConfig:
    """Configuration of :class:`ResponseReformatter`."""

    catalog: ModelCatalog
    """The forwarder's catalog: which upstream, of which kind, serves each model."""
    routes: Routes = DEFAULT_ROUTES
    """The client-facing route table (the forwarder's)."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Larger request bodies are refused with 413."""

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1:
            raise ValueError(f"ReformatterConfig.max_body_bytes must be >= 1, got {self.max_body_bytes}")


class ResponseReformatter:
    """Translate requests into the upstream's dialect and answers back into the client's. Pure ASGI."""

    def __init__(self, app: ASGIApp, *, config: ReformatterConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        s: Scope = scope
        if s["type"] != "http":
            await self.app(s, receive, send)
            return
        try:
            op = self.config.routes.recognize(s)
        except GatewayError:
            op = None  # a malformed model path: the forwarder answers it
        if op is None or op.route in _PASS_ROUTES:
            await self.app(s, receive, send)
            return
        ctx = get_context(s)
        deferred = ctx.deferred_error
        try:
            if deferred is not None:
                raise deferred
            if op.route is Route.TASK_MODELS:
                await send_models(s, send, self.config.catalog, s.get("query_string", b""))
                return
            if op.route is Route.TASK_MODEL_MAP:
                await map_model(s, receive, send, self.config.catalog)
                return
            translator = await self._translator(s, receive, op, ctx)
        except GatewayError as err:
            await err.send(s, send)
            return
        except ClientDisconnected:
            return
        if translator is None:
            await self.app(s, replay_receive(s, receive), send)
            return
        ctx.upstream_operation = translator.upstream_op
        if translator.body is not UNCHANGED:
            ctx.set_json(translator.body, encode_json(translator.body))
        await self.app(s, replay_receive(s, receive), _Relay(s, send, translator).send)

    async def _translator(
        self, scope: Scope, receive: Receive, op: Operation, ctx: RequestContext
    ) -> Translator | None:
        body = await read_body(scope, receive, self.config.max_body_bytes) if scope["method"] == "POST" else b""
        document: Any = None
        model = op.path_model
        if op.route in _JSON_BODY_ROUTES:
            document = ctx.json()
            if not isinstance(document, dict):
                raise GatewayError(400, ErrorType.INVALID_REQUEST, "The request body must be a JSON object")
            if model is None:
                model = document.get("model")
                if model is not None and not isinstance(model, str):
                    raise GatewayError(400, ErrorType.INVALID_REQUEST, "'model' must be a string")
        elif body and (op.route is not Route.TASK or looks_like_json(body)):
            document = ctx.json()
        route = self.config.catalog.resolve(model)
        task = op.task if op.task_forced or route.task is None else route.task
        return choose(Request(op, route, task, document, ctx))


class _Relay:
    """The translated answer of one request: whole JSON answers at once, streams event by event."""

    __slots__ = ("_held", "_mode", "_parts", "_pending", "_scope", "_send", "_translator", "errored")

    def __init__(self, scope: Scope, send: Send, translator: Translator) -> None:
        self._scope = scope
        self._send = send
        self._translator = translator
        self._mode = ""
        self._held: Message | None = None
        self._parts: list[bytes] = []
        self._pending = b""
        self.errored = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            await self._start(message)
        elif self._mode == "stream":
            await self._stream(message)
        elif self._mode == "whole" or self._mode == "error":
            self._parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                payload = b"".join(self._parts)
                await (self._whole(payload) if self._mode == "whole" else self._error(payload))
        else:
            await self._send(message)

    async def _start(self, message: Message) -> None:
        headers: Headers = message.get("headers", [])
        content_type = b""
        for name, value in headers:
            if name.lower() == b"content-type":
                content_type = value
        if message["status"] >= 300:
            if self._translator.tgi_errors and b"json" in content_type:
                self._mode = "error"  # buffered, to give its error_type a name TGI clients know
                self._held = message
                return
            self._mode = "pass"
        elif content_type.startswith(b"text/event-stream"):
            self._mode = "stream"
        elif b"json" in content_type:
            self._mode = "whole"
            self._held = message
            return
        else:
            self._mode = "pass"
        await self._send(self._with_ignored(message) if self._mode == "stream" else message)

    def _with_ignored(self, message: Message) -> Message:
        ignored: tuple[str, ...] = getattr(self._translator, "ignored", ())
        if not ignored:
            return message
        headers = [*message.get("headers", []), (_IGNORED_HEADER, ", ".join(ignored).encode())]
        return {**message, "headers": headers}

    async def _whole(self, payload: bytes) -> None:
        start = self._held
        assert start is not None
        translator = self._translator
        if translator.unchanged(payload, event=False):
            await self._send(self._with_ignored(start))  # the upstream's own length still holds
            await self._send({"type": "http.response.body", "body": payload, "more_body": False})
            return
        try:
            document = decode_json(payload)
            _note_usage(self._scope, document)
            payload = encode_json(translator.response(document))
        except (ValueError, UnicodeDecodeError) as exc:
            await send_error(self._scope, self._send, 502, ErrorType.UPSTREAM_ERROR, _unreadable(exc))
            return
        headers = [h for h in start.get("headers", []) if h[0].lower() != b"content-length"]
        headers.append((b"content-length", str(len(payload)).encode()))
        await self._send(self._with_ignored({**start, "headers": headers}))
        await self._send({"type": "http.response.body", "body": payload, "more_body": False})

    async def _error(self, payload: bytes) -> None:
        """An upstream error for a TGI client: the envelope with a TGI ``error_type`` (hf_api.md §3.5, §8.4)."""
        start = self._held
        assert start is not None
        payload = tgi_error(payload, start["status"])
        headers = [h for h in start.get("headers", []) if h[0].lower() != b"content-length"]
        headers.append((b"content-length", str(len(payload)).encode()))
        await self._send({**start, "headers": headers})
        await self._send({"type": "http.response.body", "body": payload, "more_body": False})

    async def _stream(self, message: Message) -> None:
        chunk: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        data = self._pending + chunk
        cut = data.rfind(b"\n") + 1
        self._pending = data[cut:]
        out = self._lines(data[:cut]) if cut else b""
        if not more:
            if self._pending:
                out += self._lines(self._pending)
                self._pending = b""
            if not self.errored:
                out += self._frame(self._translator.end())
                if self._translator.client_done:
                    out += _DONE
            await self._send({"type": "http.response.body", "body": out, "more_body": False})
        elif out:
            await self._send({"type": "http.response.body", "body": out, "more_body": True})

    def _lines(self, block: bytes) -> bytes:
        if self.errored:
            return b""
        out: list[bytes] = []
        translator = self._translator
        for line in block.split(b"\n"):
            if not line.startswith(b"data: "):
                if line.startswith(b":"):
                    out.append(line + b"\n\n")  # a keep-alive comment
                continue  # blank separators (every event gets its own) and other fields
            payload = line[6:]
            if payload == b"[DONE]":
                continue
            if payload.startswith(b'{"error"'):  # the forwarder's normalised error event: the last one
                self.errored = True
                if translator.tgi_errors:
                    line = b"data: " + tgi_error(payload, 0)
                out.append(self._frame(translator.flush()) + line + b"\n\n")
                break
            if translator.unchanged(payload, event=True):
                out.append(line + b"\n\n")
                continue
            try:
                document = decode_json(payload)
                if b'"usage"' in payload:
                    _note_usage(self._scope, document)
                events = translator.event(document)
            except (ValueError, UnicodeDecodeError) as exc:
                self.errored = True
                error = {"error": _unreadable(exc), "error_type": ErrorType.UPSTREAM_ERROR}
                out.append(b"data: " + encode_json(error) + b"\n\n")
                break
            out.append(self._frame(events))
        return b"".join(out)

    @staticmethod
    def _frame(events: list[Any]) -> bytes:
        return b"".join(b"data: " + encode_json(event) + b"\n\n" for event in events)


def _note_usage(scope: Scope, document: Any) -> None:
    """Keep the upstream's own ``usage`` in the context: the translated answer may not carry it whole."""
    usage = document.get("usage") if isinstance(document, dict) else None
    if isinstance(usage, dict):
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        get_context(scope).upstream_usage = (
            prompt if type(prompt) is int else None,
            completion if type(completion) is int else None,
        )


TGI_ERROR_TYPES = frozenset(
    "validation generation overloaded incomplete_generation incomplete_generation_stream template_error "
    "missing_template_variable tool_error stream_serialization_error".split()
)
"""The ``error_type`` values TGI sends; ``huggingface_hub`` raises a typed error for the first four."""
_TGI_TYPE_BY_STATUS = {400: "validation", 422: "validation", 424: "generation", 429: "overloaded"}


def tgi_error(payload: bytes, status: int) -> bytes:
    """An error envelope whose ``error_type`` is TGI's: kept when it is one, else named from the status.

    ``status`` 0 is an in-stream error (``generation``). Anything that is not an envelope is returned as it is.
    """
    try:
        document = decode_json(payload)
    except ValueError:
        return payload
    if not isinstance(document, dict) or document.get("error_type") in TGI_ERROR_TYPES:
        return payload
    document["error_type"] = _TGI_TYPE_BY_STATUS.get(status, "generation" if status in (0, 500) else None)
    if document["error_type"] is None:
        return payload
    return encode_json(document)


def _unreadable(exc: Exception) -> str:
    """The client's message for an upstream answer that could not be translated."""
    if isinstance(exc, UpstreamShapeError):
        return str(exc)
    return f"The upstream's answer is not valid JSON: {exc}"
