"""RequestValidator: bad input is refused at the door, with the field that is wrong, and never reaches Hugging Face."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hfasgi.body import DEFAULT_MAX_BODY_BYTES, ClientDisconnected, read_body, replay_receive
from hfasgi.context import RequestContext, encode_json, get_context
from hfasgi.errors import ErrorType, GatewayError
from hfasgi.operations import CATALOG_ROUTES, DEFAULT_ROUTES, Operation, Route, Routes
from hfasgi.tokens import asked_output, output_field, with_maximum
from hfasgi.types import ASGIApp, Receive, Scope, Send
from hfasgi.validation.engine import NOT_UNICODE, CompiledSchema, Violation, lone_surrogate
from hfasgi.validation.media import is_json_type, looks_like_json, media_kind, sniff

if TYPE_CHECKING:
    from hfasgi.catalog import ModelCatalog
    from hfasgi.principal import Principal

__all__ = ["RequestValidator", "ValidatorConfig"]

_ROUTE_SCHEMA = {
    Route.CHAT: "chat",
    Route.COMPLETIONS: "completions",
    Route.EMBEDDINGS: "embeddings",
    Route.GENERATE: "generate",
    Route.GENERATE_STREAM: "generate",
    Route.COMPAT_GENERATE: "generate",
}
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""A ``\\ud800``-``\\udfff`` escape in a body: a surrogate, paired (an emoji, escaped) or lone."""
_ANY_TASK: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {"parameters": {"type": "object"}, "options": {"type": "object"}},
}
"""A task route whose task is unknown (``/models/{id}`` without a catalog entry): only the common shape."""
_AUDIO_CONTAINERS = ("video/webm", "video/mp4")
"""Video containers that audio tasks accept too: audio-only WebM, and MP4/3GP files whose brand is not ``M4A``."""


def _defaults() -> tuple[Mapping[str, Mapping[str, Any]], Mapping[str, Mapping[str, Any]], Mapping[str, str]]:
    from hfasgi.validation.schemas import BINARY_TASKS, ROUTE_SCHEMAS, TASK_SCHEMAS

    return ROUTE_SCHEMAS, TASK_SCHEMAS, BINARY_TASKS


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidatorConfig:
    """Configuration of :class:`RequestValidator`; every schema is compiled when the config is built."""

    routes: Routes = DEFAULT_ROUTES
    """The gateway's routes (only their POST bodies are checked)."""
    catalog: ModelCatalog | None = None
    """Gives the task of ``/models/{id}`` requests (without it, only the common task shape is checked)."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Larger bodies get 413, refused while reading."""
    route_schemas: Mapping[str, Mapping[str, Any]] | None = None
    """Schemas of the OpenAI and TGI routes by name (``chat``, ``completions``, ``embeddings``, ``generate``)."""
    task_schemas: Mapping[str, Mapping[str, Any]] | None = None
    """Schemas of task API bodies by HF task."""
    binary_tasks: Mapping[str, str] | None = None
    """Tasks whose body may be raw bytes, and their kind (``image``, ``audio``, ``video``)."""
    _compiled: dict[str, CompiledSchema] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1:
            raise ValueError(f"ValidatorConfig.max_body_bytes must be >= 1, got {self.max_body_bytes}")
        if self.route_schemas is None or self.task_schemas is None or self.binary_tasks is None:
            routes, tasks, binary = _defaults()
            if self.route_schemas is None:
                object.__setattr__(self, "route_schemas", routes)
            if self.task_schemas is None:
                object.__setattr__(self, "task_schemas", tasks)
            if self.binary_tasks is None:
                object.__setattr__(self, "binary_tasks", binary)
        assert self.route_schemas is not None and self.task_schemas is not None
        compiled = self._compiled
        try:
            for name, schema in self.route_schemas.items():
                compiled[name] = CompiledSchema(schema, name=name)
            for task, schema in self.task_schemas.items():
                compiled["task:" + task] = CompiledSchema(schema, name=task)
            compiled["task:*"] = CompiledSchema(_ANY_TASK, name="task")
        except ValueError as exc:  # jsonschema_rs refuses an invalid schema when compiling it
            raise ValueError(f"ValidatorConfig: an invalid schema: {exc}") from None

    def schema_for(self, op: Operation, task: str | None) -> CompiledSchema | None:
        """The compiled schema of a request (``None``: the route has no body to check)."""
        name = _ROUTE_SCHEMA.get(op.route)
        if name is not None:
            return self._compiled.get(name)
        if op.route is Route.TASK:
            return self._compiled.get("task:" + task) if task else None
        return None


class RequestValidator:
    """Check each inference request's body against its route's or task's schema before it goes on.

    * malformed JSON, or a body that is not a JSON object → 400 ``invalid_json`` / ``invalid_request``;
    * a body over ``max_body_bytes`` → 413, refused while reading (a declared length at once);
    * a JSON route sent with a content type that is not JSON → 415; raw bodies of image, audio and
      video tasks are accepted when their first bytes (or their declared type) say they are one;
    * a schema violation → 422 ``validation``, ``<field path>: <what is wrong>`` (the TGI shape that
      makes ``InferenceClient.text_generation`` raise ``ValidationError``);
    * a principal's caps (``max_tokens``, ``max_prompt_length``) → 422 naming the field; a request
      that names no maximum is given the principal's.

    The body is read once into the request context; inner layers and apps get the same bytes.
    Routes that are not inference POSTs pass through untouched, as do lifespan and websockets.
    """

    def __init__(self, app: ASGIApp, *, config: ValidatorConfig | None = None) -> None:
        self.app = app
        self.config = config or ValidatorConfig()

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        s: Scope = scope
        if s["type"] != "http" or s["method"] != "POST":
            await self.app(s, receive, send)
            return
        config = self.config
        try:
            op = config.routes.recognize(s)
        except GatewayError as err:
            await err.send(s, send)
            return
        if op is None or op.route in CATALOG_ROUTES:
            await self.app(s, receive, send)
            return
        ctx = get_context(s)
        if ctx.deferred_error is not None:
            await ctx.deferred_error.send(s, send)
            return
        unread = ctx.body is None
        try:
            body = await read_body(s, receive, config.max_body_bytes)
            self._validate(s, ctx, op, body)
        except GatewayError as err:
            if ctx.span is not None:
                _span_event(ctx.span, err)
            await err.send(s, send)
            return
        except ClientDisconnected:
            return
        await self.app(s, replay_receive(s, receive) if unread else receive, send)

    def _validate(self, scope: Scope, ctx: RequestContext, op: Operation, body: bytes) -> None:
        config = self.config
        task = op.task
        if op.route is Route.TASK and not op.task_forced and config.catalog is not None:
            task = config.catalog.resolve(op.path_model).task or task
        content_type = _content_type(scope)
        binary = config.binary_tasks.get(task) if task and config.binary_tasks else None
        if op.route is Route.TASK and not looks_like_json(body) and not (content_type and is_json_type(content_type)):
            _check_media(body, content_type, binary, task)
            return
        if content_type and not is_json_type(content_type):
            accepted = f"application/json or raw {binary} bytes" if binary else "application/json"
            raise GatewayError(
                415,
                ErrorType.UNSUPPORTED_MEDIA_TYPE,
                f"Unsupported Content-Type {content_type.split(';')[0]!r}: this route takes {accepted}",
            )
        if not body:
            raise GatewayError(400, ErrorType.INVALID_REQUEST, "The request body is empty: send a JSON object")
        document = ctx.json()
        if not isinstance(document, dict):
            raise GatewayError(400, ErrorType.INVALID_REQUEST, "The request body must be a JSON object")
        if _SURROGATE_ESCAPE.search(body) is not None:  # rare: only then look for a lone one in the document
            where = lone_surrogate(document)
            if where is not None:
                raise GatewayError(422, ErrorType.VALIDATION, f"{where}: {NOT_UNICODE}" if where else NOT_UNICODE)
        schema = config.schema_for(op, task) or (config._compiled["task:*"] if op.route is Route.TASK else None)
        if schema is not None:
            try:
                schema.check(document)
            except Violation as violation:
                raise GatewayError(422, ErrorType.VALIDATION, str(violation)) from None
        principal = ctx.principal
        if principal is not None and (principal.max_tokens or principal.max_prompt_length):
            _check_caps(ctx, op, document, principal)


def _span_event(span: Any, err: GatewayError) -> None:
    """``hfasgi.validation.error`` on the request's span: the error type and the field's path, never its value."""
    attributes: dict[str, Any] = {
        "hfasgi.validation.error_type": err.error_type,
        "http.response.status_code": err.status,
    }
    cause = err.__context__  # a schema violation, raised again as a GatewayError ``from None``
    if isinstance(cause, Violation) and cause.path:
        attributes["hfasgi.validation.field"] = cause.path
    span.add_event("hfasgi.validation.error", attributes)


def _content_type(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"content-type" or name.lower() == b"content-type":
            text: str = value.decode("latin-1").strip()
            return text
    return ""


def _check_media(body: bytes, content_type: str, kind: str | None, task: str | None) -> None:
    """A raw body of a task: accepted for media tasks when it is the right kind of media."""
    if not body:
        raise GatewayError(400, ErrorType.INVALID_REQUEST, "The request body is empty")
    if kind is None:
        if task is None:
            return  # a task we cannot name: its upstream decides
        raise GatewayError(
            415,
            ErrorType.UNSUPPORTED_MEDIA_TYPE,
            f'The {task} task takes a JSON body ({{"inputs": ...}}), not raw bytes',
        )
    found = sniff(body)
    declared = media_kind(content_type)
    seen = media_kind(found)
    if seen == kind or (seen is None and declared == kind) or (kind == "audio" and found in _AUDIO_CONTAINERS):
        return
    what = found or (content_type.split(";")[0] if content_type else "bytes of no known format")
    raise GatewayError(
        415,
        ErrorType.UNSUPPORTED_MEDIA_TYPE,
        f"The {task} task takes {kind} bytes (or JSON with base64 inputs); got {what}",
    )


def _check_caps(ctx: RequestContext, op: Operation, document: dict[str, Any], principal: Principal) -> None:
    """The principal's per-request caps: its output maximum and its prompt length."""
    cap = principal.max_tokens
    if cap is not None:
        whole = _whole_maxima(document)
        if whole is not document:
            document = whole
            ctx.set_json(document, encode_json(document))
        asked = asked_output(op, document)
        if asked is not None and asked[1] > cap:
            raise GatewayError(422, ErrorType.VALIDATION, f"{asked[0]}: must be <= {cap} for this key")
        where = output_field(op)
        if asked is None and where is not None:
            document = with_maximum(document, where, cap)
            ctx.set_json(document, encode_json(document))
    longest = principal.max_prompt_length
    if longest is not None:
        name, length = _prompt_length(op, document)
        if length > longest:
            raise GatewayError(
                422,
                ErrorType.VALIDATION,
                f"{name}: the prompt is {length} characters, more than the {longest} this key allows",
            )


def _whole_maxima(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with output maxima written ``100.0`` or ``1e2`` as ints (a copy; ``document`` when none is).

    JSON Schema (and pydantic upstreams) take them as integers, but :func:`~hfasgi.tokens.asked_output`
    counts ints only: uncounted, ``"max_completion_tokens": 100.0`` would pass a cap of 16.
    """
    fixed: dict[str, Any] = {}
    for name in ("max_tokens", "max_completion_tokens"):
        value = _integral(document.get(name))
        if value is not None:
            fixed[name] = value
    parameters = document.get("parameters")
    if isinstance(parameters, dict):
        value = _integral(parameters.get("max_new_tokens"))
        if value is not None:
            fixed["parameters"] = {**parameters, "max_new_tokens": value}
    return {**document, **fixed} if fixed else document


def _integral(value: Any) -> int | None:
    """The int of a float with no fractional part (``100.0``), else ``None``."""
    return int(value) if isinstance(value, float) and value.is_integer() else None


def _prompt_length(op: Operation, document: dict[str, Any]) -> tuple[str, int]:
    """The field that holds the prompt and its length in characters."""
    if op.route is Route.CHAT:
        return "messages", _text_length(document.get("messages"), ("content", "text"))
    if op.route is Route.COMPLETIONS:
        return "prompt", _text_length(document.get("prompt"), ())
    if op.route is Route.EMBEDDINGS:
        return "input", _text_length(document.get("input"), ())
    return "inputs", _text_length(document.get("inputs"), None)


def _text_length(value: Any, keys: tuple[str, ...] | None) -> int:
    """Characters of the strings in ``value`` (under ``keys`` of objects; every value when ``None``)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_length(item, keys) for item in value)
    if isinstance(value, dict):
        picked = value.values() if keys is None else (value.get(k) for k in keys)
        return sum(_text_length(item, keys) for item in picked)
    return 0
