"""GatewaySpan and FastTracer: the SDK pipeline (sampler, ids, processors, exporters) sees ordinary spans."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState

from hfasgi.observability.spans import MAX_ATTRIBUTES, FastTracer, GatewaySpan
from hfasgi.observability.tracing import inject_trace_context


class Starts(SpanProcessor):
    """Remembers the spans it was told about at their start."""

    def __init__(self) -> None:
        self.started: list[Any] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started.append(span)


def pipeline(sampler: Any = None) -> tuple[FastTracer, InMemorySpanExporter, Starts]:
    provider = TracerProvider(sampler=sampler, resource=Resource.create({"service.name": "gw"}))
    exporter = InMemorySpanExporter()
    starts = Starts()
    provider.add_span_processor(starts)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    fast = FastTracer.of(provider.get_tracer("hfasgi", "1"), "hfasgi", "1.2.3")
    assert fast is not None
    return fast, exporter, starts


def test_only_sdk_tracers_get_a_fast_tracer() -> None:
    assert FastTracer.of(trace.NoOpTracer(), "hfasgi", "1") is None
    assert FastTracer.of(TracerProvider().get_tracer("x"), "hfasgi", "1") is not None


def test_exported_spans_carry_what_was_recorded() -> None:
    fast, exporter, starts = pipeline()
    server = fast.start("chat", None, SpanKind.SERVER, {"http.request.method": "POST"})
    assert isinstance(server, GatewaySpan) and starts.started == [server]
    client = fast.start("POST openai", trace.set_span_in_context(server), SpanKind.CLIENT, {"server.port": 80})
    client.set_attribute("http.response.status_code", 200)
    client.end()
    server.set_known_attributes({"gen_ai.usage.input_tokens": 5})
    server.set_attributes({"stop": ["a", "b"], "temperature": 0.5})
    server.add_event("rate_limited", {"remaining": 0})
    server.update_name("chat renamed")
    server.end()
    server.end()  # a second end exports nothing more
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert sorted(spans) == ["POST openai", "chat renamed"]
    outer, inner = spans["chat renamed"], spans["POST openai"]
    assert isinstance(outer, ReadableSpan) and outer.kind is SpanKind.SERVER
    assert inner.parent is not None and inner.parent.span_id == outer.context.span_id
    assert inner.context.trace_id == outer.context.trace_id and outer.parent is None
    assert dict(outer.attributes or {}) == {
        "http.request.method": "POST",
        "gen_ai.usage.input_tokens": 5,
        "stop": ("a", "b"),
        "temperature": 0.5,
    }
    assert dict(inner.attributes or {}) == {"server.port": 80, "http.response.status_code": 200}
    assert [(e.name, dict(e.attributes or {})) for e in outer.events] == [("rate_limited", {"remaining": 0})]
    assert outer.resource.attributes["service.name"] == "gw"
    assert outer.instrumentation_scope is not None and outer.instrumentation_scope.name == "hfasgi"
    assert outer.start_time is not None and outer.end_time is not None and outer.end_time >= outer.start_time
    assert outer.context.trace_flags.sampled
    assert not server.is_recording()
    server.set_attribute("late", 1)  # after the end: ignored, as in the SDK
    assert "late" not in (outer.attributes or {})


def test_invalid_attribute_values_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    fast, exporter, _ = pipeline()
    span = fast.start("s", None, SpanKind.INTERNAL, {})
    with caplog.at_level(logging.WARNING, "hfasgi.observability"):
        span.set_attribute("bad", {"nested": 1})
        span.set_attribute("mixed", [1, "a"])
        span.add_event("e", {"ok": True, "bad": object()})  # type: ignore[dict-item]
    for index in range(MAX_ATTRIBUTES + 3):
        span.set_attribute(f"k{index}", index)
    span.end()
    (finished,) = exporter.get_finished_spans()
    attributes = finished.attributes or {}
    assert "bad" not in attributes and "mixed" not in attributes
    assert len(attributes) == MAX_ATTRIBUTES and finished.dropped_attributes == 3
    assert dict(finished.events[0].attributes or {}) == {"ok": True}
    assert sum("dropped" in r.getMessage() for r in caplog.records) == 3


def test_status_follows_the_sdk_rules_and_exceptions_become_events() -> None:
    fast, exporter, _ = pipeline()
    span = fast.start("s", None, SpanKind.INTERNAL, {})
    assert isinstance(span, GatewaySpan)
    span.set_status(StatusCode.UNSET)
    assert span.status.status_code is StatusCode.UNSET
    span.set_status(Status(StatusCode.ERROR, "boom"))
    try:
        raise ValueError("no good")
    except ValueError as exc:
        span.record_exception(exc)
    span.set_status(StatusCode.OK)
    span.set_status(StatusCode.ERROR)  # OK is final
    span.end()
    (finished,) = exporter.get_finished_spans()
    assert finished.status.status_code is StatusCode.OK
    (event,) = finished.events
    attributes = dict(event.attributes or {})
    assert event.name == "exception" and attributes["exception.type"] == "ValueError"
    assert attributes["exception.message"] == "no good" and "Traceback" in str(attributes["exception.stacktrace"])


def test_the_sampler_decides() -> None:
    fast, exporter, starts = pipeline(ALWAYS_OFF)
    span = fast.start("s", None, SpanKind.SERVER, {})
    assert isinstance(span, NonRecordingSpan) and not span.is_recording()
    assert span.get_span_context().is_valid and not span.get_span_context().trace_flags.sampled
    span.end()
    assert exporter.get_finished_spans() == () and starts.started == []


def test_a_sampled_remote_parent_is_followed_under_parent_based_sampling() -> None:
    fast, exporter, _ = pipeline(ParentBased(TraceIdRatioBased(0.0)))
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    child = fast.start("s", trace.set_span_in_context(NonRecordingSpan(remote)), SpanKind.SERVER, {})
    child.end()
    (finished,) = exporter.get_finished_spans()
    assert finished.context.trace_id == 0xABC and finished.parent is not None and finished.parent.span_id == 0xDEF
    root = fast.start("r", None, SpanKind.SERVER, {})  # no parent: the ratio (0) decides
    assert not root.is_recording()


def test_traceparent_written_directly_equals_the_propagators() -> None:
    context = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "v1")]),
    )
    span = NonRecordingSpan(context)
    ours: dict[str, str] = {"tracestate": "caller=1"}
    inject_trace_context(span, ours)
    theirs: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(theirs, context=trace.set_span_in_context(span))
    assert (
        ours
        == theirs
        == {
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "tracestate": "vendor=v1",
        }
    )


def test_baggage_goes_through_the_propagators() -> None:
    span = NonRecordingSpan(SpanContext(1, 2, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)))
    token = otel_context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        headers: dict[str, str] = {}
        inject_trace_context(span, headers)
    finally:
        otel_context.detach(token)
    assert headers["traceparent"] == f"00-{1:032x}-{2:016x}-01" and headers["baggage"] == "tenant=acme"


@pytest.mark.anyio
async def test_tracing_uses_gateway_spans_on_an_sdk_provider() -> None:
    from opentelemetry.metrics import NoOpMeterProvider

    from hfasgi.observability import Tracing, TracingConfig
    from hfasgi.observability.metrics import GatewayMetrics

    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    traced = Tracing(app, config=TracingConfig(tracer_provider=provider, metrics=GatewayMetrics(NoOpMeterProvider())))
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": [], "query_string": b""}
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await traced(scope, receive, send)
    (span,) = exporter.get_finished_spans()
    assert isinstance(span, GatewaySpan) and span.kind is SpanKind.SERVER
    assert (span.attributes or {})["http.response.status_code"] == 204 and sent[0]["status"] == 204
