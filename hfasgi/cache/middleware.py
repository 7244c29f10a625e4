"""ResponseCache: deterministic requests answered from a cache (memory or Redis), never reaching the upstream.

It sits after the validator (the body is read and parsed once, caps already applied) and before the
reformatter, so it sees the client's request and the answer in the client's dialect. For each
inference request it decides, in this order and as cheaply as it can:

1. the route can be cached at all (POST chat, completions, embeddings, TGI generation, task routes);
2. the request is deterministic (:func:`~hfasgi.cache.keys.is_deterministic`) and does not refuse the
   cache (``x-use-cache: false`` header, ``options.use_cache: false`` in the body): otherwise it passes
   through untouched, with no ``X-Cache`` header and ``ctx.cache_hit`` left ``None``;
3. the key (:func:`~hfasgi.cache.keys.cache_key`); then the store is asked.

A **hit** is answered here (``X-Cache: hit``, ``ctx.cache_hit = True``), in the form the request asked
for (:func:`~hfasgi.cache.replay.replay`): JSON with its true ``content-length``, or SSE framed as a live
stream. A **miss** (``X-Cache: miss``, ``ctx.cache_hit = False``) goes on; its answer is passed to the
client as it comes (streams chunk by chunk, never held back) and recorded on the side, then stored once
the final body message has gone out, if it is storable: status 200, JSON or SSE, no ``cache-control:
no-store``/``private``, no ``set-cookie``, not larger than ``max_entry_bytes``, and for a stream complete
(no error event, its final event, ``[DONE]`` on OpenAI routes). A store that fails is a miss: the cache
never fails a request.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Any

from hfasgi.body import DEFAULT_MAX_BODY_BYTES, ClientDisconnected, read_body, replay_receive
from hfasgi.cache.keys import cache_key, canonical_body, family, is_deterministic, refuses_cache, wants_stream
from hfasgi.cache.replay import JSON, STREAM, Entry, decode_entry, encode_entry, replay, stream_complete, usage_span
from hfasgi.cache.stores import CacheStore
from hfasgi.catalog import ModelCatalog
from hfasgi.context import get_context
from hfasgi.errors import GatewayError
from hfasgi.operations import DEFAULT_ROUTES, Route, Routes
from hfasgi.stack import Layer
from hfasgi.types import ASGIApp, Headers, Message, Receive, Scope, Send
from hfasgi.validation.media import looks_like_json

__all__ = ["CacheConfig", "ResponseCache"]

logger = logging.getLogger("hfasgi.cache")

_CACHEABLE_ROUTES = frozenset(
    {Route.CHAT, Route.COMPLETIONS, Route.EMBEDDINGS, Route.GENERATE, Route.GENERATE_STREAM, Route.COMPAT_GENERATE}
    | {Route.TASK}
)
_JSON_BODY_ROUTES = (Route.CHAT, Route.COMPLETIONS, Route.EMBEDDINGS)
_HIT: tuple[bytes, bytes] = (b"x-cache", b"hit")
_MISS: tuple[bytes, bytes] = (b"x-cache", b"miss")
_NOT_STORED = frozenset(
    b"content-length x-cache x-request-id date server age set-cookie connection keep-alive transfer-encoding".split()
)
"""Response headers an entry does not keep: set again per response, or the server's own."""
_ANONYMOUS = "anonymous"
_SHARED = "shared"
"""Scopes of the key; a principal's is ``id:<its id>``, so no id can name one of these."""
_WARN_EVERY = 10.0
_UPSTREAM_USAGE = "upstream_usage"
"""The request context's slot for the upstream's token counts (set by the reformatter), kept with an entry.

Read and written by name, so the cache works with contexts that do not have it (older or newer ones)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheConfig:
    """Configuration of :class:`ResponseCache`; validated when it is built."""

    store: CacheStore
    """Where answers live: :class:`~hfasgi.cache.MemoryCacheStore` (per process) or
    :class:`~hfasgi.cache.RedisCacheStore` (shared by replicas); opened and closed by the app's lifespan."""
    catalog: ModelCatalog
    """The forwarder's catalog: resolves the model (defaults, placeholders) and tells a task's model and upstream."""
    routes: Routes = DEFAULT_ROUTES
    """The client-facing route table (the forwarder's)."""
    ttl: float = 300.0
    """Seconds an answer is served from the cache (capped by the store's own ``ttl``)."""
    max_entry_bytes: int = 1024 * 1024
    """Answers larger than this (body, or a stream's events) are passed on but not stored."""
    shared: bool = False
    """``False``: one cache per principal (its id; one ``"anonymous"`` scope without authentication).
    ``True``: one cache for every caller (an organisation's own gateway, where answers are not private)."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Larger request bodies are refused with 413 (when no validator read the body first)."""

    def __post_init__(self) -> None:
        if not isinstance(self.store, CacheStore):
            raise ValueError(f"CacheConfig.store must be a CacheStore (get, set, open, aclose), got {self.store!r}")
        if isinstance(self.ttl, bool) or not isinstance(self.ttl, int | float) or not (self.ttl > 0):
            raise ValueError(f"CacheConfig.ttl must be a positive number of seconds, got {self.ttl!r}")
        if not math.isfinite(self.ttl):
            raise ValueError(f"CacheConfig.ttl must be finite, got {self.ttl!r}")
        if self.max_entry_bytes < 1:
            raise ValueError(f"CacheConfig.max_entry_bytes must be >= 1, got {self.max_entry_bytes!r}")
        if self.max_body_bytes < 1:
            raise ValueError(f"CacheConfig.max_body_bytes must be >= 1, got {self.max_body_bytes!r}")

    @property
    def middleware(self) -> Layer:
        """The layer, with its store as the resource the app's lifespan must open."""
        return Layer(ResponseCache, {"config": self}, (self.store,))


class ResponseCache:
    """Answer deterministic inference requests from a cache; record the others' answers. Pure ASGI; http only."""

    def __init__(self, app: ASGIApp, *, config: CacheConfig) -> None:
        self.app = app
        self.config = config
        self._warned = 0.0

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        s: Scope = scope
        if s["type"] != "http" or s["method"] != "POST":
            await self.app(s, receive, send)
            return
        config = self.config
        try:
            op = config.routes.recognize(s)
        except GatewayError:
            op = None  # a malformed model path: an inner layer answers it
        if op is None or op.route not in _CACHEABLE_ROUTES:
            await self.app(s, receive, send)
            return
        ctx = get_context(s)
        if ctx.deferred_error is not None:
            await self.app(s, receive, send)
            return
        if ctx.body is None:  # no validator in front: this layer reads the body, the app still gets it
            try:
                await read_body(s, receive, config.max_body_bytes)
            except GatewayError as err:
                await err.send(s, send)
                return
            except ClientDisconnected:
                return
            receive = replay_receive(s, receive)
        body = ctx.body or b""
        try:
            document = ctx.json() if op.route in _JSON_BODY_ROUTES or looks_like_json(body) else None
            model = op.path_model
            if model is None and isinstance(document, dict) and op.model_in_body:
                model = document.get("model")
            route = config.catalog.resolve(model) if model is None or isinstance(model, str) else None
        except GatewayError:
            route = None
        if route is None:  # not JSON, a model that is not a string or not served: the inner layers answer it
            await self.app(s, receive, send)
            return
        task = op.task if op.task_forced or route.task is None else route.task
        if not is_deterministic(op, task, document, route) or refuses_cache(s["headers"], document):
            await self.app(s, receive, send)
            return
        canonical = canonical_body(document, body)
        if canonical is None:
            await self.app(s, receive, send)
            return
        principal = ctx.principal
        who = _SHARED if config.shared else "id:" + principal.id if principal is not None else _ANONYMOUS
        kind = family(op, task)
        key = cache_key(who, kind, route, canonical)
        stream = wants_stream(op, document)
        try:
            blob = await config.store.get(key)
        except Exception as exc:  # a broken store is a miss, never a failed request
            self._warn(exc)
            blob = None
        if blob is not None:
            entry = decode_entry(blob)
            answer = replay(entry, kind, stream, document) if entry is not None else None
            if answer is not None:
                ctx.cache_hit = True
                ctx.model = route.model
                if entry is not None and entry.upstream_usage is not None and hasattr(ctx, _UPSTREAM_USAGE):
                    setattr(ctx, _UPSTREAM_USAGE, entry.upstream_usage)
                headers, payload = answer
                headers.append(_HIT)
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": payload, "more_body": False})
                return
        ctx.cache_hit = False
        recorder = _Recorder(send, kind, config.max_entry_bytes)
        await self.app(s, receive, recorder.send)
        entry = recorder.entry
        if entry is not None:
            usage = getattr(ctx, _UPSTREAM_USAGE, None)
            if isinstance(usage, tuple) and len(usage) == 2:
                entry = replace(entry, upstream_usage=usage)
            try:
                await config.store.set(key, encode_entry(entry), config.ttl)
            except Exception as exc:
                self._warn(exc)

    def _warn(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:  # once per 10 s, not once per request
            self._warned = now
            logger.warning(
                "hfasgi: the response cache store failed (%s: %s); serving without it", type(exc).__name__, exc
            )


class _Recorder:
    """One miss's answer: passed on as it comes, recorded on the side, an :class:`Entry` once it is complete."""

    __slots__ = ("_family", "_headers", "_kind", "_limit", "_parts", "_send", "_size", "entry")

    def __init__(self, send: Send, family: str, limit: int) -> None:
        self._send = send
        self._family = family
        self._limit = limit
        self._kind = b""
        """``J``/``S`` while recording; empty when the answer is not stored."""
        self._headers: Headers = []
        self._parts: list[bytes] = []
        self._size = 0
        self.entry: Entry | None = None
        """The complete, storable answer (set after its final body message went out)."""

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body" and self._kind:
            chunk: bytes = message.get("body", b"")
            self._size += len(chunk)
            if self._size > self._limit:
                self._kind = b""  # too large: stop recording, never stop passing on
                self._parts = []
            elif chunk:
                self._parts.append(chunk)
            await self._send(message)
            if self._kind and not message.get("more_body", False):
                self._finish()
            return
        if kind == "http.response.start":
            headers: Headers = message.get("headers", [])
            self._kind = self._storable(message["status"], headers)
            out = [h for h in headers if h[0] != b"x-cache"]
            out.append(_MISS)
            message = {**message, "headers": out}
        await self._send(message)

    def _storable(self, status: int, headers: Headers) -> bytes:
        """The kind to record (``J``/``S``), or ``b""`` for an answer that must not be stored."""
        if status != 200:
            return b""
        content_type = b""
        kept: Headers = []
        for name, value in headers:
            lname = name.lower()
            if lname == b"content-type":
                content_type = value
            elif _refused(lname, value, self._limit):
                return b""
            if lname not in _NOT_STORED:
                kept.append((lname, value))
        self._headers = kept
        if content_type.startswith(b"text/event-stream"):
            return STREAM
        if b"json" in content_type:
            return JSON
        return b""

    def _finish(self) -> None:
        body = b"".join(self._parts)
        self._parts = []
        if self._kind == JSON:
            if body and not body.startswith(b'{"error"'):
                self.entry = Entry(JSON, self._headers, body)
            return
        if b"\n:" in body or body.startswith(b":"):  # keep-alive comments are not part of the answer
            body = b"".join(block + b"\n\n" for block in body.split(b"\n\n") if block and not block.startswith(b":"))
        if stream_complete(self._family, body):
            start, end = usage_span(body)
            self.entry = Entry(STREAM, self._headers, body, start, end)


def _refused(name: bytes, value: bytes, limit: int) -> bool:
    """Whether this response header forbids storing the answer (or announces one too large)."""
    if name == b"cache-control":
        return b"no-store" in value or b"private" in value
    if name == b"content-length":
        return value.isdigit() and int(value) > limit
    return name == b"set-cookie" or name == b"content-encoding"
