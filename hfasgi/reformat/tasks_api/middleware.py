"""TasksAPI: the provider-style task API (``POST /hf/tasks/summarization`` ...) in front of the gateway.

It sits outside authentication, limits and validation (after ``ErrorEnvelope``, before ``ApiKeyAuth``)
and turns each provider request into the gateway's canonical request, in the request context, so every
inner layer serves it unchanged; on the way back it rewrites whole 2xx JSON answers into the provider's
shapes. ``scope["path"]`` is never rewritten: inner layers read ``ctx.operation``.

==========================================  ===============================================================
path (under the prefix)                     what happens
==========================================  ===============================================================
``POST {task}``, ``POST run``               the canonical request (:mod:`~hfasgi.reformat.tasks_api.shapes`)
``GET models``, ``POST models/map``         ``Route.TASK_MODELS`` / ``Route.TASK_MODEL_MAP`` for the inner
                                            layers; :mod:`~hfasgi.reformat.tasks_api.catalog_endpoints` answers
``POST <other name>``                       400: an unknown task, naming the known ones
another method on these paths               405 with ``Allow`` (``OPTIONS`` passes, for CORS)
anything else                               passes through untouched
==========================================  ===============================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hfasgi.body import DEFAULT_MAX_BODY_BYTES, ClientDisconnected, read_body, replay_receive
from hfasgi.catalog import ModelCatalog
from hfasgi.context import encode_json, get_context
from hfasgi.errors import ErrorType, GatewayError, send_error
from hfasgi.operations import Operation, Route
from hfasgi.reformat.base import UpstreamShapeError
from hfasgi.reformat.tasks_api.shapes import PROVIDER_TASKS, ProviderCall, provider_call
from hfasgi.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["TasksAPI", "TasksAPIConfig"]

_CATALOG_PATHS = {
    "models": (Route.TASK_MODELS, "GET"),
    "models/map": (Route.TASK_MODEL_MAP, "POST"),
    "billing/usage": (Route.BILLING_USAGE, "GET"),
    "billing/cost": (Route.BILLING_COST, "POST"),
}
_DROPPED_HEADERS = (b"content-length", b"content-type")
"""Headers of a rewritten answer that are set again (the rest, rate-limit headers and request id, pass)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TasksAPIConfig:
    """Configuration of :class:`TasksAPI`."""

    catalog: ModelCatalog
    """The gateway's catalog: the default model, and each model's default parameters."""
    prefix: str = "/hf/tasks/"
    """Where the provider API lives; starts and ends with ``/``."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Larger request bodies are refused with 413, while reading."""

    def __post_init__(self) -> None:
        prefix = self.prefix
        if not prefix.startswith("/") or not prefix.endswith("/"):
            raise ValueError(f"TasksAPIConfig.prefix must start and end with '/', got {prefix!r}")
        if any(c in prefix for c in "?#") or any(c.isspace() for c in prefix):
            raise ValueError(f"TasksAPIConfig.prefix must be a plain path, got {prefix!r}")
        if self.max_body_bytes < 1:
            raise ValueError(f"TasksAPIConfig.max_body_bytes must be >= 1, got {self.max_body_bytes}")


class TasksAPI:
    """Serve the provider task API by turning its requests into canonical ones. Pure ASGI; http only.

    * ``POST {prefix}{task}`` and ``POST {prefix}run``: the body is read once and checked (a clear 400
      for anything wrong); the model is ``parameters.model`` (``model`` for ``run``), else the
      catalog's default; its catalog parameters go under the request's. The canonical operation and
      body land in the context before the app is called.
    * Whole 2xx JSON answers are rewritten into the provider's shapes (``{"output": ...}``, the
      conversation); errors and streams pass through untouched, and so do the answer's headers.
    * ``GET {prefix}models`` and ``POST {prefix}models/map`` are marked for the inner layers, which
      authenticate them; :func:`~hfasgi.reformat.tasks_api.catalog_endpoints.send_models` and
      :func:`~hfasgi.reformat.tasks_api.catalog_endpoints.map_model` answer them.
    """

    def __init__(self, app: ASGIApp, *, config: TasksAPIConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        s: Scope = scope
        prefix = self.config.prefix
        if s["type"] != "http" or not s["path"].startswith(prefix):
            await self.app(s, receive, send)
            return
        name: str = s["path"][len(prefix) :]
        method: str = s["method"]
        catalog_path = _CATALOG_PATHS.get(name)
        if catalog_path is not None:
            route, allowed = catalog_path
            if method != allowed and method != "OPTIONS":
                await _not_allowed(s, send, allowed)
                return
            if method == allowed:
                ctx = get_context(s)
                ctx.operation = Operation(route)
                ctx.recognized = True
            await self.app(s, receive, send)
            return
        if name == "run" or name in PROVIDER_TASKS:
            if method == "POST":
                await self._task(s, receive, send, name)
            elif method == "OPTIONS":
                await self.app(s, receive, send)
            else:
                await _not_allowed(s, send, "POST")
            return
        if method == "POST" and name and "/" not in name:
            message = f"Unknown task {name[:64]!r}: POST {prefix}<task> with one of {', '.join(PROVIDER_TASKS)}, or run"
            await self._defer(s, receive, send, GatewayError(400, ErrorType.INVALID_REQUEST, message), None)
            return
        await self.app(s, receive, send)

    async def _defer(self, scope: Scope, receive: Receive, send: Send, error: GatewayError, task: str | None) -> None:
        """Pass a bad request on as an inference request that fails: authenticated and counted, then answered."""
        ctx = get_context(scope)
        ctx.operation = Operation(Route.TASK, task, task_forced=task is not None)
        ctx.recognized = True
        ctx.deferred_error = error
        await self.app(scope, receive, send)

    async def _task(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        ctx = get_context(scope)
        unread = ctx.body is None
        try:
            await read_body(scope, receive, self.config.max_body_bytes)
        except GatewayError as err:
            await err.send(scope, send)
            return
        except ClientDisconnected:
            return
        try:
            call = provider_call(name, ctx.json(), self.config.catalog)
        except GatewayError as err:
            task = PROVIDER_TASKS.get(name)
            await self._defer(scope, replay_receive(scope, receive) if unread else receive, send, err, task)
            return
        ctx.operation = call.operation
        ctx.recognized = True
        ctx.set_json(call.document, encode_json(call.document))
        answer = _ProviderAnswer(scope, send, call)
        await self.app(scope, replay_receive(scope, receive) if unread else receive, answer.send)
        await answer.finish()


async def _not_allowed(scope: Scope, send: Send, allowed: str) -> None:
    message = f"{scope['method']} is not allowed on {scope['path']}: use {allowed}"
    await send_error(scope, send, 405, ErrorType.METHOD_NOT_ALLOWED, message, [(b"allow", allowed.encode())])


class _ProviderAnswer:
    """One request's answer: a whole 2xx JSON answer is held and rewritten, anything else goes out as it comes."""

    __slots__ = ("_call", "_parts", "_scope", "_send", "_start")

    def __init__(self, scope: Scope, send: Send, call: ProviderCall) -> None:
        self._scope = scope
        self._send = send
        self._call = call
        self._start: Message | None = None
        self._parts: list[bytes] = []

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if _rewritable(message):
                self._start = message
                return
        elif kind == "http.response.body" and self._start is not None:
            self._parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self._rewrite(self._start, b"".join(self._parts))
            return
        await self._send(message)

    async def finish(self) -> None:
        """After the app returned: an answer it left unfinished is rewritten from what came (a 502 if cut short)."""
        if self._start is not None:
            await self._rewrite(self._start, b"".join(self._parts))

    async def _rewrite(self, start: Message, body: bytes) -> None:
        self._start = None
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in _DROPPED_HEADERS]
        try:
            document = self._call.answer(json.loads(body))
        except UpstreamShapeError as exc:
            await send_error(self._scope, self._send, 502, ErrorType.UPSTREAM_ERROR, str(exc), headers)
            return
        except ValueError:  # not JSON (nor UTF-8) at all
            message = "The upstream's answer could not be translated: it is not valid JSON"
            await send_error(self._scope, self._send, 502, ErrorType.UPSTREAM_ERROR, message, headers)
            return
        out = encode_json(document)
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]
        await self._send({"type": "http.response.start", "status": start["status"], "headers": headers})
        await self._send({"type": "http.response.body", "body": out, "more_body": False})


def _rewritable(start: Message) -> bool:
    """A 2xx answer in plain (not encoded) JSON: the only kind rewritten."""
    if not 200 <= start["status"] < 300:
        return False
    json_body = False
    for name, value in start.get("headers", []):
        lowered = name.lower()
        if lowered == b"content-type":
            json_body = value.split(b";", 1)[0].strip().lower() == b"application/json"
        elif lowered == b"content-encoding" and value.strip().lower() != b"identity":
            return False
    return json_body
