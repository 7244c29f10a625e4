"""Tracing: the outermost layer. One SERVER span per HTTP request, and the request's record when it ends.

The span is started when the request arrives (as a child of the caller's W3C ``traceparent``, if any),
kept in ``ctx.span`` for the inner layers to add to, and made the current span. The response is
watched as it goes out (:class:`~hfasgi.observability.genai.ResponseWatch`); when the app returns (after
the last byte of a stream), raises or sees the client leave, the span gets its HTTP and GenAI
attributes and ends, and one :class:`RequestRecord` goes to the metrics and to every sink.

The forwarder opens one CLIENT span per upstream attempt with :func:`upstream_span` and
:func:`end_upstream_span`, and sends the trace context upstream with :func:`inject_trace_context`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider

from hfasgi import __version__
from hfasgi.context import RequestContext, get_context
from hfasgi.errors import GatewayError
from hfasgi.observability.genai import (
    PROVIDER,
    ResponseWatch,
    operation_name,
    request_attributes,
    route_template,
    span_name,
)
from hfasgi.observability.metrics import GatewayMetrics
from hfasgi.observability.record import RequestRecord
from hfasgi.operations import DEFAULT_ROUTES, Operation, Route, Routes
from hfasgi.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

    from hfasgi.catalog import ModelCatalog
    from hfasgi.forwarding.upstream import Upstream
    from hfasgi.observability.spans import FastTracer

__all__ = [
    "TRACER_KEY",
    "Sink",
    "Tracing",
    "TracingConfig",
    "end_upstream_span",
    "inject_trace_context",
    "upstream_span",
]

logger = logging.getLogger("hfasgi.observability")

Sink = Callable[[RequestRecord, RequestContext], None]
"""Receives every finished request; it must not block (record an instrument, enqueue a line) nor raise."""

TRACER_KEY = "hfasgi.tracer"
"""The ``ctx.values`` key of the tracer that made ``ctx.span`` (the forwarder's CLIENT spans use it)."""

_MAX_PARSED = 1024 * 1024
"""A body read but not yet parsed by an inner layer is parsed for its parameters only up to this size."""
_WARN_EVERY = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TracingConfig:
    """Configuration of :class:`Tracing`."""

    tracer_provider: TracerProvider | None = None
    """Where spans go; ``None``: the global provider (a no-op with ``opentelemetry-api`` alone)."""
    meter_provider: MeterProvider | None = None
    """Where the metrics go when :attr:`metrics` is ``None``; ``None``: the global provider."""
    routes: Routes = DEFAULT_ROUTES
    """The gateway's routes (their prefix is part of ``http.route``)."""
    sinks: tuple[Sink, ...] = ()
    """Called with every finished request's record (the audit log's ``AuditLog.sink``)."""
    metrics: GatewayMetrics | None = None
    """The gateway's instruments; ``None``: ``GatewayMetrics(meter_provider)``. Always recorded, not a sink to add."""
    catalog: ModelCatalog | None = None
    """Names the task of ``/models/{id}`` requests (``task text-classification`` spans); without it, ``task``."""

    def __post_init__(self) -> None:
        sinks = tuple(self.sinks)
        for sink in sinks:
            if not callable(sink):
                raise ValueError(f"TracingConfig.sinks must be callables (record, ctx) -> None, got {sink!r}")
        object.__setattr__(self, "sinks", sinks)


class Tracing:
    """One SERVER span per HTTP request, metrics and sinks at its end (see the module docstring).

    Pure ASGI; lifespan and websocket scopes pass through untouched. Nothing secret is recorded: the
    caller is its principal id, bodies are read for their sampling parameters only, never for content.
    """

    def __init__(self, app: ASGIApp, *, config: TracingConfig | None = None) -> None:
        self.app = app
        self.config = config = config or TracingConfig()
        provider = config.tracer_provider if config.tracer_provider is not None else trace.get_tracer_provider()
        self._tracer: Tracer = provider.get_tracer("hfasgi", __version__)
        self._fast = _fast_tracer(self._tracer)
        """The SDK's pipeline reached directly (see :mod:`~hfasgi.observability.spans`); ``None``: another tracer."""
        self._traced: bool | None = None if isinstance(provider, trace.ProxyTracerProvider) else True
        """``None``: the global provider, traced once an SDK is installed globally (checked per request)."""
        if isinstance(provider, trace.NoOpTracerProvider):
            self._traced = False
        self._metrics = config.metrics if config.metrics is not None else GatewayMetrics(config.meter_provider)
        record = self._metrics.record
        self._sinks: tuple[Sink, ...] = tuple(sink for sink in config.sinks if sink != record)
        self._names: dict[str, str] = {}
        self._warned = 0.0

    def _tracing(self) -> bool:
        traced = self._traced
        if traced is None:  # the global proxy: a no-op until the process installs an SDK
            return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        return traced

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        s: Scope = scope
        if s["type"] != "http":
            await self.app(s, receive, send)
            return
        tracing = self._tracing()
        if not tracing and not self._sinks and not self._metrics.enabled:
            await self.app(s, receive, send)  # opentelemetry-api alone, no sink: nothing to observe
            return
        ctx = get_context(s)
        started = time.time_ns()
        span: Span | None = None
        token = None
        if tracing:
            method: str = s["method"]
            name = self._names.get(method)
            if name is None:
                name = self._names[method] = f"HTTP {method}" if len(self._names) < 64 else "HTTP"
            parent = _remote_context(s["headers"])
            attributes = {"http.request.method": method, "url.path": s["path"], "url.scheme": s.get("scheme", "http")}
            fast = self._fast
            if fast is not None:
                span = fast.start(name, parent, SpanKind.SERVER, attributes, started)
            else:
                span = self._tracer.start_span(name, parent, SpanKind.SERVER, attributes, start_time=started)
            if span.get_span_context().is_valid:
                ctx.span = span
                ctx.values[TRACER_KEY] = fast if fast is not None else self._tracer
                token = otel_context.attach(trace.set_span_in_context(span, parent))
        exchange = _Exchange(receive, send, self._metrics, ctx)
        failure: BaseException | None = None
        try:
            await self.app(s, exchange.receive, exchange.send)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if token is not None:
                otel_context.detach(token)
            try:
                self._finish(s, ctx, span, exchange, started, failure)
            except Exception:  # observing a request must never break it
                self._warn("recording a request failed", exc_info=True)

    def _finish(
        self,
        scope: Scope,
        ctx: RequestContext,
        span: Span | None,
        exchange: _Exchange,
        started: int,
        failure: BaseException | None,
    ) -> None:
        watch = exchange.watch
        watch.close()
        ended = exchange.ended or time.perf_counter()
        if exchange.stream_route is not None:
            self._metrics.stream_ended(exchange.stream_route)
        op = ctx.operation if ctx.recognized else self._match(scope)
        task = self._task(ctx, op) if op is not None else None
        route = op.route.value if op is not None else None
        cancelled = isinstance(failure, asyncio.CancelledError)
        disconnected = exchange.disconnected or cancelled
        status = watch.status or (500 if failure is not None and not cancelled else 0)
        error_type = watch.error_type
        if failure is not None and not cancelled and error_type is None:
            error_type = failure.error_type if isinstance(failure, GatewayError) else "internal"
        recording = span is not None and span.is_recording()
        document = _document(ctx) if recording or ctx.model is None else None
        model = ctx.model
        if model is None:
            named = document.get("model") if isinstance(document, dict) else None
            model = named if isinstance(named, str) else op.path_model if op is not None else None
        principal = ctx.principal
        record = RequestRecord(
            request_id=ctx.request_id,
            started=started / 1e9,
            duration=ended - exchange.arrived,
            method=scope["method"],
            path=scope["path"],
            route=route,
            status=status,
            model=model,
            upstream=ctx.upstream_name,
            upstream_model=ctx.upstream_model,
            task=task,
            key_id=principal.id if principal is not None else None,
            upstream_status=ctx.upstream_status,
            upstream_duration=ctx.upstream_duration,
            attempts=ctx.upstream_attempts,
            stream=watch.stream,
            time_to_first_token=watch.first_event - exchange.arrived if watch.first_event is not None else None,
            input_tokens=watch.input_tokens,
            output_tokens=watch.output_tokens,
            error_type=error_type,
            cache_hit=ctx.cache_hit,
        )
        if span is not None:
            if recording:
                failed = status >= 500 or watch.failed or (failure is not None and not cancelled)
                self._annotate(span, record, op, document, watch, failed, disconnected, failure)
            span.end()
        metrics = self._metrics
        if metrics.enabled:
            try:
                metrics.record(record, ctx)
            except Exception:
                self._warn("recording the metrics failed", exc_info=True)
        for sink in self._sinks:
            try:
                sink(record, ctx)
            except Exception:
                self._warn(f"the sink {sink!r} failed", exc_info=True)

    def _annotate(
        self,
        span: Span,
        record: RequestRecord,
        op: Operation | None,
        document: Any,
        watch: ResponseWatch,
        failed: bool,
        disconnected: bool,
        failure: BaseException | None,
    ) -> None:
        """The SERVER span's attributes once the request has ended."""
        out: dict[str, Any] = {"hfasgi.request_id": record.request_id}
        if record.status:
            out["http.response.status_code"] = record.status
        if op is not None:
            template = route_template(op, record.path, self.config.routes.prefix)
            if template is not None:
                out["http.route"] = template
            span.update_name(span_name(op.route, record.task))
            operation = operation_name(op.route, record.task)
            if operation is not None:
                out["gen_ai.operation.name"] = operation
                out["gen_ai.provider.name"] = PROVIDER
                out.update(request_attributes(document, op))
        if record.model is not None:
            out["gen_ai.request.model"] = record.model
        if watch.model is not None:
            out["gen_ai.response.model"] = watch.model
        if record.input_tokens is not None:
            out["gen_ai.usage.input_tokens"] = record.input_tokens
        if record.output_tokens is not None:
            out["gen_ai.usage.output_tokens"] = record.output_tokens
        if record.key_id is not None:
            out["hfasgi.auth.key_id"] = record.key_id
        if record.upstream is not None:
            out["hfasgi.upstream.name"] = record.upstream
        if record.upstream_status is not None:
            out["hfasgi.upstream.status_code"] = record.upstream_status
        if record.attempts:
            out["hfasgi.upstream.attempts"] = record.attempts
        if record.cache_hit is not None:
            out["hfasgi.cache_hit"] = record.cache_hit
        if record.time_to_first_token is not None:
            out["hfasgi.time_to_first_token"] = record.time_to_first_token
            out["gen_ai.response.time_to_first_chunk"] = record.time_to_first_token
        if record.error_type is not None:
            out["hfasgi.error_type"] = record.error_type
        if disconnected:
            out["hfasgi.client_disconnected"] = True
        if failed:
            kind = record.error_type or str(record.status)
            if failure is not None and not isinstance(failure, GatewayError):
                kind = type(failure).__qualname__
                # the type only: an exception's message may quote a request, and a span never holds one
                span.add_event("exception", {"exception.type": kind})
            out["error.type"] = kind
            span.set_status(Status(StatusCode.ERROR, record.error_type))
        known = getattr(span, "set_known_attributes", None)
        if known is not None:
            known(out)  # a GatewaySpan: hfasgi's own values need no validation
        else:
            span.set_attributes(out)

    def _match(self, scope: Scope) -> Operation | None:
        """The request's operation when no inner layer recognised it (without caching it in the context)."""
        try:
            return self.config.routes.match(scope["method"], scope["path"])
        except GatewayError:
            return None

    def _task(self, ctx: RequestContext, op: Operation) -> str | None:
        """The HF task: the route's, the translated upstream operation's, or the catalog's for ``/models/{id}``."""
        if op.task is not None or op.route is not Route.TASK:
            return op.task
        upstream = ctx.upstream_operation
        if upstream is not None and upstream.task is not None:
            return upstream.task
        catalog = self.config.catalog
        if catalog is not None and ctx.model is not None:
            try:
                return catalog.resolve(ctx.model).task
            except GatewayError:
                return None
        return None

    def _warn(self, what: str, **options: Any) -> None:
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:  # once per 10 s, not once per request
            self._warned = now
            logger.warning("hfasgi: %s", what, **options)


class _Exchange:
    """One request's response as Tracing sees it (per-request state, never on the middleware)."""

    __slots__ = (
        "_append",
        "_ctx",
        "_metrics",
        "_receive",
        "_send",
        "arrived",
        "disconnected",
        "ended",
        "stream_route",
        "watch",
    )

    def __init__(self, receive: Receive, send: Send, metrics: GatewayMetrics, ctx: RequestContext) -> None:
        self._receive = receive
        self._send = send
        self._metrics = metrics
        self._ctx = ctx
        self.arrived = time.perf_counter()
        self.watch = ResponseWatch()
        self.ended: float | None = None
        self.disconnected = False
        self.stream_route: str | None = None
        self._append: Callable[[bytes], None] | None = None
        """A stream's ``watch.recent.append``, once its first event has been watched."""

    async def receive(self) -> Message:
        message: Message = await self._receive()
        if message["type"] == "http.disconnect" and not self.watch.complete:
            self.disconnected = True
        return message

    async def send(self, message: Message) -> None:
        if message.get("more_body", False):  # a body message with more to come: the hot path of a stream
            chunk = message.get("body")
            if chunk:
                append = self._append
                if append is not None:
                    append(chunk)  # a stream's next event: what ResponseWatch.add does, inline
                else:
                    watch = self.watch
                    watch.add(chunk)
                    if watch.stream:
                        self._append = watch.recent.append
            await self._send(message)
            return
        watch = self.watch
        if message["type"] == "http.response.body":
            chunk = message.get("body")
            if chunk:
                watch.add(chunk)
            watch.complete = True
            await self._send(message)
            if self.ended is None:
                self.ended = time.perf_counter()  # the last byte has left
            return
        if message["type"] == "http.response.start":
            watch.start(message)
            if watch.stream:
                op = self._ctx.operation
                self.stream_route = op.route.value if op is not None else "other"
                self._metrics.stream_started(self.stream_route)
        await self._send(message)


def _fast_tracer(tracer: Tracer) -> FastTracer | None:
    """A :class:`FastTracer` on ``tracer`` when it is the SDK's (and the SDK is installed), else ``None``."""
    try:
        from hfasgi.observability.spans import FastTracer
    except ImportError:  # opentelemetry-api alone
        return None
    return FastTracer.of(tracer, "hfasgi", __version__)


def _remote_context(headers: Any) -> otel_context.Context | None:
    """The caller's trace context (W3C ``traceparent``), or ``None`` when it sent none."""
    for name, _ in headers:
        if name == b"traceparent":
            carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in _PROPAGATED}
            return propagate.extract(carrier)
    return None


_PROPAGATED = frozenset({b"traceparent", b"tracestate", b"baggage"})


def _document(ctx: RequestContext) -> Any:
    """The parsed body, when an inner layer read it (never reading it here); ``None`` otherwise."""
    body = ctx.body
    if body is None or len(body) > _MAX_PARSED or body[:64].lstrip()[:1] != b"{":
        return None
    try:
        return ctx.json()
    except GatewayError:
        return None


# ---------------------------------------------------------------------------------------------- the upstream hop


@lru_cache(maxsize=256)
def _server(url: str) -> tuple[str, int, bool]:
    """``server.address``, ``server.port`` of an upstream URL, and whether it carries credentials."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", port, parts.username is not None or parts.password is not None


def upstream_span(ctx: RequestContext, upstream: Upstream, method: str, url: str, attempt: int) -> Span | None:
    """A CLIENT span for one attempt of the upstream call, child of ``ctx.span`` (``None`` when not recording).

    HTTP client attributes only: the GenAI ones (operation, model, usage) are on the SERVER span.
    """
    server = ctx.span
    if server is None or not server.is_recording():  # sampled out: the SERVER span's context goes upstream
        return None
    tracer = ctx.values.get(TRACER_KEY)
    if tracer is None:
        return None
    address, port, credentials = _server(upstream.url)
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "server.address": address,
        "server.port": port,
        "hfasgi.upstream.attempt": attempt,
    }
    if not credentials:
        attributes["url.full"] = url
    name = f"{method} {upstream.kind.value}"
    start_span = getattr(tracer, "start_span", None)
    if start_span is None:  # a FastTracer
        fast: Span = tracer.start(name, trace.set_span_in_context(server), SpanKind.CLIENT, attributes)
        return fast
    span: Span = start_span(name, trace.set_span_in_context(server), SpanKind.CLIENT, attributes)
    return span


def inject_trace_context(span: Span, headers: dict[str, str]) -> None:
    """Put ``span``'s W3C trace context (``traceparent``, ``tracestate`` when set) in the upstream's headers."""
    headers.pop("tracestate", None)  # the caller's, if it sent one: the injected context carries its own
    if propagate.get_global_textmap() is _default_textmap() and not baggage.get_all():
        # the default propagators (W3C trace context + baggage) with no baggage: write the header directly
        context = span.get_span_context()
        headers["traceparent"] = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags & 0xFF:02x}"
        if context.trace_state:
            headers["tracestate"] = context.trace_state.to_header()
        return
    propagate.inject(headers, context=trace.set_span_in_context(span))


@lru_cache(maxsize=1)
def _default_textmap() -> Any:
    """The process's propagator as OpenTelemetry set it up, if it is the default W3C pair; else a marker."""
    textmap = propagate.get_global_textmap()
    parts = getattr(textmap, "_propagators", None)
    names = [type(p).__name__ for p in parts] if isinstance(parts, list) else []
    return textmap if names == ["TraceContextTextMapPropagator", "W3CBaggagePropagator"] else object()


def end_upstream_span(span: Span, status: int | None, error: str | None = None) -> None:
    """End an attempt's CLIENT span: its status code, and ERROR for a failure (``error``) or a 4xx/5xx."""
    if span.is_recording():
        if status is not None:
            known = getattr(span, "set_known_attributes", None)
            if known is not None:
                known({"http.response.status_code": status})
            else:
                span.set_attribute("http.response.status_code", status)
        if error is not None or (status is not None and status >= 400):
            span.set_attribute("error.type", error or str(status))
            span.set_status(Status(StatusCode.ERROR))
    span.end()
