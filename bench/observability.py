"""CPU per request of Tracing and the gateway metrics, in process: no server, no network.

    .venv/bin/python bench/observability.py [--requests 20000] [--repeats 7]

Each variant drives the same request through ``RequestId`` around a trivial app that does what the
forwarder does (reads and parses the body, resolves the model, opens and ends one CLIENT span per
attempt and injects ``traceparent`` when tracing, exactly as ``HFForwarder`` does) and answers like
an upstream: a small chat completion with a usage object, or a stream of 32 events plus a usage
chunk and ``[DONE]``. Variants: tracing off (the baseline); ``opentelemetry-api`` alone (global
no-op providers); the SDK's floor (two bare spans around the same app, no Tracing); and Tracing with
the SDK: a ``TracerProvider`` with a no-op exporter behind a simple (synchronous) or a batch (a
background thread) processor, a ``MeterProvider`` with a Prometheus reader on a private registry,
each alone and together, and sampled out. CPU time (``time.process_time``: every thread, so the
batch processor's too), medians of interleaved repeats; the last column is the spread of
(variant - baseline) over the repeats, which shows how noisy the machine was.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence
from typing import Any

from inprocess import ANSWER, CHAT, EVENTS, STREAM, cpu_per_request
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NoOpTracerProvider, SpanKind, set_span_in_context

from hfasgi.body import read_body
from hfasgi.context import get_context
from hfasgi.forwarding.upstream import Upstream
from hfasgi.observability import GatewayMetrics, PrometheusMetrics, Tracing, TracingConfig
from hfasgi.observability.tracing import end_upstream_span, inject_trace_context, upstream_span
from hfasgi.operations import DEFAULT_ROUTES
from hfasgi.request_id import RequestId

UPSTREAM = Upstream(url="http://127.0.0.1:8080", token="hf_bench")
BASELINE = "tracing off (baseline)"
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


async def forwarder_like(scope: Any, receive: Any, send: Any) -> None:
    """The forwarder's work that tracing touches: the body, the model, the upstream slots, one CLIENT span."""
    ctx = get_context(scope)
    DEFAULT_ROUTES.recognize(scope)
    await read_body(scope, receive)
    document = ctx.json()
    ctx.model = ctx.upstream_model = document["model"]
    ctx.upstream_name = UPSTREAM.name
    headers = {"content-type": "application/json", "authorization": "Bearer hf_bench"}
    started = time.perf_counter()
    ctx.upstream_attempts = 1
    span = None
    if ctx.span is not None:
        span = upstream_span(ctx, UPSTREAM, "POST", "http://127.0.0.1:8080/v1/chat/completions", 1)
        inject_trace_context(ctx.span if span is None else span, headers)
    ctx.upstream_status = 200
    if document.get("stream"):
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        for event in EVENTS:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    else:
        headers_out = [*JSON_HEADERS, (b"content-length", str(len(ANSWER)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers_out})
        await send({"type": "http.response.body", "body": ANSWER, "more_body": False})
    ctx.upstream_duration = time.perf_counter() - started
    if span is not None:
        end_upstream_span(span, 200)


class DropExporter(SpanExporter):
    """Exports nothing (the SDK's cost without the wire's)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def variants() -> tuple[dict[str, Any], list[Any]]:
    """The stacks compared, and what must be shut down after."""

    def tracer(processor: Any, sampler: Any = None) -> TracerProvider:
        provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)
        provider.add_span_processor(processor)
        return provider

    simple = tracer(SimpleSpanProcessor(DropExporter()))
    batch = tracer(BatchSpanProcessor(DropExporter(), max_queue_size=1 << 16))
    sampled_out = tracer(SimpleSpanProcessor(DropExporter()), ALWAYS_OFF)
    prometheus = PrometheusMetrics()
    meter = MeterProvider(
        metric_readers=[prometheus.reader], exemplar_filter=AlwaysOffExemplarFilter(), shutdown_on_exit=False
    )
    gateway_metrics = GatewayMetrics(meter, readers=(prometheus.reader,))
    no_metrics = GatewayMetrics(NoOpMeterProvider())

    def traced(config: TracingConfig) -> Any:
        return Tracing(RequestId(forwarder_like), config=config)

    bare = simple.get_tracer("floor")
    inner = RequestId(forwarder_like)

    async def floor(scope: Any, receive: Any, send: Any) -> None:
        """The SDK's own floor: a SERVER and a CLIENT span with no attributes, around the same app."""
        server = bare.start_span("server", kind=SpanKind.SERVER)
        client = bare.start_span("client", set_span_in_context(server), SpanKind.CLIENT)
        await inner(scope, receive, send)
        client.end()
        server.end()

    stacks = {
        BASELINE: RequestId(forwarder_like),
        "opentelemetry-api only (no SDK)": traced(TracingConfig()),
        "SDK floor: 2 bare spans, no Tracing": floor,
        "SDK metrics only": traced(TracingConfig(tracer_provider=NoOpTracerProvider(), metrics=gateway_metrics)),
        "SDK spans only (simple processor)": traced(TracingConfig(tracer_provider=simple, metrics=no_metrics)),
        "SDK spans + metrics (simple processor)": traced(
            TracingConfig(tracer_provider=simple, metrics=gateway_metrics)
        ),
        "SDK spans + metrics (batch processor)": traced(TracingConfig(tracer_provider=batch, metrics=gateway_metrics)),
        "SDK, sampled out (always_off) + metrics": traced(
            TracingConfig(tracer_provider=sampled_out, metrics=gateway_metrics)
        ),
    }
    return stacks, [prometheus, simple, batch, sampled_out, meter]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    stacks, keep = variants()
    bodies = {"chat": CHAT, "stream (32 events)": STREAM}
    samples = {(kind, name): [] for kind in bodies for name in stacks}  # type: dict[tuple[str, str], list[float]]
    for _ in range(args.repeats):  # interleaved, so drifting machine load hits every variant alike
        for kind, body in bodies.items():
            for name, stack in stacks.items():
                samples[kind, name].append(await cpu_per_request(stack, "/v1/chat/completions", body, args.requests))
    print("| request | stack | CPU µs/request (median) | added | added, min-max over repeats |")
    print("| --- | --- | --- | --- | --- |")
    for kind in bodies:
        base_samples = samples[kind, BASELINE]
        base = statistics.median(base_samples)
        for name in stacks:
            values = samples[kind, name]
            added = sorted(v - b for v, b in zip(values, base_samples, strict=True))
            median = statistics.median(values)
            print(f"| {kind} | {name} | {median:.1f} | {median - base:+.1f} | {added[0]:+.1f} .. {added[-1]:+.1f} |")
    prometheus = keep[0]
    assert b"hfasgi_requests_total" in prometheus.render(), "no request was counted"
    for provider in keep[1:]:
        provider.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
