"""Tracing: SERVER and CLIENT spans, their attributes and links, for plain, streamed, retried and failed requests.

The stack runs in process (``hfasgi.app.layers(...)`` with ``Tracing`` in front) against the fake HF
upstream on a real socket. The ``traced`` fixture (test_metrics.py uses it too) builds that stack around a
tiny inner app, with a private ``TracerProvider`` (spans to an in-memory exporter), a private
``MeterProvider`` (an in-memory reader) and a sink that keeps every ``RequestRecord``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider, SpanKind, StatusCode

from hfasgi.app import layers
from hfasgi.auth import AuthConfig, MemoryKeyStore
from hfasgi.catalog import ModelCatalog, ModelEntry
from hfasgi.context import RequestContext
from hfasgi.errors import ErrorType, send_error
from hfasgi.forwarding.forwarder import ForwarderConfig
from hfasgi.forwarding.retry import RetryPolicy
from hfasgi.forwarding.upstream import Upstream
from hfasgi.limits import Limit
from hfasgi.observability import (
    GatewayMetrics,
    PrometheusMetrics,
    RequestRecord,
    Tracing,
    TracingConfig,
    configure_from_environment,
)
from hfasgi.observability.genai import ResponseWatch, request_attributes, route_template
from hfasgi.observability.metrics import send_metrics
from hfasgi.operations import Operation, Route, Routes
from hfasgi.ratelimit import MemoryLimiterStore, RateLimiterConfig
from hfasgi.stack import Layer, resources, stack
from hfasgi.types import Receive, Scope, Send
from hfasgi.validation import ValidatorConfig
from tests.asgi_driver import open_stream
from tests.servers import free_port
from tests.upstream import shapes
from tests.upstream.fake_hf import FakeHF
from tests.upstream.fixtures import Upstream as FakeUpstream

pytestmark = pytest.mark.anyio

SERVER_TOKEN = "hf_observability_server_token_0123456789"
"""The gateway's upstream token: it must appear in no span, metric or record."""
CLIENT_KEY = "sk-observability-client-key-abcdef"
"""A client's API key (its id is ``alice``): it must appear in no span, metric or record."""

_keys = itertools.count(1)


def fake_key(name: str) -> str:
    """A fresh ``x-fake-key`` (the fake counts attempts and holds gates per key)."""
    return f"obs-{name}-{next(_keys)}"


class InnerApp:
    """The app behind the layers: ``GET /app/hello`` → 200, ``/metrics`` → the Prometheus text, else 404."""

    def __init__(self, prometheus: PrometheusMetrics | None = None) -> None:
        self.prometheus = prometheus

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        s: Scope = scope
        if s["type"] != "http":
            return
        if s["path"] == "/metrics":
            await send_metrics(s, send, self.prometheus)
            return
        if s["path"] == "/app/hello":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"hello"})
            return
        await send_error(s, send, 404, ErrorType.NOT_FOUND, "no such route")


@dataclass
class Traced:
    """One traced stack and what it observed."""

    app: Any
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    metrics: GatewayMetrics
    upstream_url: str
    records: list[RequestRecord] = field(default_factory=list)
    contexts: list[RequestContext] = field(default_factory=list)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def server(self) -> ReadableSpan:
        """The one finished SERVER span."""
        servers = [s for s in self.spans() if s.kind is SpanKind.SERVER]
        assert len(servers) == 1, [s.name for s in self.spans()]
        return servers[0]

    def clients(self) -> list[ReadableSpan]:
        """The finished CLIENT spans, in the order they started."""
        return sorted((s for s in self.spans() if s.kind is SpanKind.CLIENT), key=lambda s: s.start_time or 0)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://gateway")

    def clear(self) -> None:
        self.exporter.clear()
        self.records.clear()
        self.contexts.clear()


@pytest.fixture(name="traced")
async def traced_fixture(upstream: FakeUpstream) -> AsyncIterator[Callable[..., Awaitable[Traced]]]:
    """``await traced(kind="router", url=..., retry=..., auth=..., limiter=..., validate=..., models=...)``."""
    async with contextlib.AsyncExitStack() as exits:

        async def make(
            kind: str = "router",
            *,
            url: str | None = None,
            retry: RetryPolicy | None = None,
            auth: AuthConfig | None = None,
            limiter: RateLimiterConfig | None = None,
            validate: bool = False,
            models: tuple[ModelEntry, ...] = (),
            prometheus: PrometheusMetrics | None = None,
            genai: bool = False,
        ) -> Traced:
            exporter = InMemorySpanExporter()
            tracer_provider = TracerProvider(shutdown_on_exit=False)
            tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
            reader = InMemoryMetricReader()
            readers = [reader] if prometheus is None else [reader, prometheus.reader]
            meter_provider = MeterProvider(metric_readers=readers, shutdown_on_exit=False)
            exits.callback(tracer_provider.shutdown)
            exits.callback(meter_provider.shutdown)
            base = Upstream(url=url or upstream.url, kind=kind, token=SERVER_TOKEN)  # type: ignore[arg-type]
            catalog = ModelCatalog([base], models)
            forwarder = ForwarderConfig(catalog=catalog, retry=retry or RetryPolicy(attempts=2, backoff=0.0))
            metrics = GatewayMetrics(meter_provider, genai=genai)
            found: Traced

            def sink(record: RequestRecord, ctx: RequestContext) -> None:
                found.records.append(record)
                found.contexts.append(ctx)

            config = TracingConfig(tracer_provider=tracer_provider, metrics=metrics, sinks=(sink,), catalog=catalog)
            validator = ValidatorConfig(catalog=catalog) if validate else None
            gateway = layers(forwarder, auth=auth, limiter=limiter, validator=validator)
            app = stack(InnerApp(prometheus), Layer(Tracing, {"config": config}), *gateway)
            found = Traced(app, exporter, reader, metrics, base.url)
            await exits.enter_async_context(resources(forwarder.pool))
            return found

        yield make


# --- helpers -------------------------------------------------------------------------------------


def chat_body(text: str = "one two three", **extra: Any) -> dict[str, Any]:
    return {"model": "org/chat", "messages": [{"role": "user", "content": text}], **extra}


def headers(key: str, scenario: str = "", **extra: str) -> dict[str, str]:
    out = {"x-fake-key": key, **extra}
    if scenario:
        out["x-fake-scenario"] = scenario
    return out


def everything(spans: list[ReadableSpan]) -> str:
    """All that the spans say (names, attributes, events, statuses), as one string to search."""
    parts = []
    for span in spans:
        parts.append(f"{span.name} {dict(span.attributes or {})} {span.status.description}")
        parts.extend(f"{event.name} {dict(event.attributes or {})}" for event in span.events)
    return "\n".join(parts)


def traceparent_ids(value: str) -> tuple[int, int]:
    """The trace id and parent span id of a W3C ``traceparent``."""
    version, trace_id, parent_id, _flags = value.split("-")
    assert version == "00"
    return int(trace_id, 16), int(parent_id, 16)


def sse_events(body: bytes) -> list[Any]:
    return [
        json.loads(line[6:])
        for line in body.decode().split("\n")
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# --- plain requests -------------------------------------------------------------------------------


async def test_chat_has_a_server_span_with_http_and_genai_attributes(
    traced: Callable[..., Awaitable[Traced]], fake: FakeHF
) -> None:
    gw = await traced()
    key = fake_key("chat")
    body = chat_body(max_tokens=5, temperature=0.3, top_p=0.9, seed=7)
    async with gw.client() as client:
        response = await client.post("/v1/chat/completions", json=body, headers=headers(key))
    assert response.status_code == 200
    usage = response.json()["usage"]
    assert usage == shapes.usage(shapes.count_tokens("one two three"), 5)

    server = gw.server()
    assert server.name == "chat"
    attributes = dict(server.attributes or {})
    assert attributes["http.request.method"] == "POST"
    assert attributes["url.path"] == "/v1/chat/completions"
    assert attributes["http.route"] == "/v1/chat/completions"
    assert attributes["http.response.status_code"] == 200
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "huggingface"
    assert attributes["gen_ai.request.model"] == "org/chat"
    assert attributes["gen_ai.response.model"] == response.json()["model"]
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert attributes["gen_ai.request.max_tokens"] == 5
    assert attributes["gen_ai.request.temperature"] == 0.3
    assert attributes["gen_ai.request.top_p"] == 0.9
    assert attributes["gen_ai.request.seed"] == 7
    assert attributes["gen_ai.request.stream"] is False
    assert attributes["hfasgi.request_id"] == response.headers["x-request-id"]
    assert attributes["hfasgi.upstream.name"] == "default"
    assert attributes["hfasgi.upstream.status_code"] == 200
    assert attributes["hfasgi.upstream.attempts"] == 1
    assert "error.type" not in attributes
    assert server.status.status_code is StatusCode.UNSET

    (record,) = gw.records
    assert (record.input_tokens, record.output_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert (record.status, record.route, record.task, record.attempts) == (200, "chat", "chat-completion", 1)


async def test_each_upstream_attempt_is_a_client_span_and_sends_its_traceparent(
    traced: Callable[..., Awaitable[Traced]], fake: FakeHF
) -> None:
    gw = await traced()
    key = fake_key("client")
    async with gw.client() as client:
        response = await client.post("/v1/chat/completions", json=chat_body(max_tokens=2), headers=headers(key))
    assert response.status_code == 200
    server = gw.server()
    (client_span,) = gw.clients()
    assert client_span.name == "POST router"
    assert client_span.parent is not None
    assert client_span.parent.span_id == server.context.span_id
    assert client_span.context.trace_id == server.context.trace_id
    attributes = dict(client_span.attributes or {})
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == port_of(gw.upstream_url)
    assert attributes["http.request.method"] == "POST"
    assert attributes["http.response.status_code"] == 200
    assert attributes["hfasgi.upstream.attempt"] == 1
    assert attributes["url.full"] == gw.upstream_url + "/v1/chat/completions"
    # the upstream received the CLIENT span's context: same trace as the SERVER span
    trace_id, parent_id = traceparent_ids(fake.last().headers["traceparent"])
    assert trace_id == server.context.trace_id
    assert parent_id == client_span.context.span_id
    assert server.start_time is not None and client_span.start_time is not None
    assert server.end_time is not None and client_span.end_time is not None
    assert server.start_time <= client_span.start_time <= client_span.end_time <= server.end_time


async def test_the_callers_traceparent_is_the_server_spans_parent(
    traced: Callable[..., Awaitable[Traced]], fake: FakeHF
) -> None:
    gw = await traced()
    trace_id, caller_span = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331
    parent = f"00-{trace_id:032x}-{caller_span:016x}-01"
    async with gw.client() as client:
        response = await client.post(
            "/v1/chat/completions",
            json=chat_body(max_tokens=1),
            headers=headers(fake_key("parent"), traceparent=parent),
        )
    assert response.status_code == 200
    server = gw.server()
    assert server.parent is not None and server.parent.is_remote
    assert (server.context.trace_id, server.parent.span_id) == (trace_id, caller_span)
    sent_trace, sent_parent = traceparent_ids(fake.last().headers["traceparent"])
    assert sent_trace == trace_id  # the caller's trace continues upstream, through our CLIENT span
    assert sent_parent == gw.clients()[0].context.span_id != caller_span


async def test_the_apps_own_routes_get_a_plain_http_span(traced: Callable[..., Awaitable[Traced]]) -> None:
    gw = await traced()
    async with gw.client() as client:
        hello = await client.get("/app/hello")
        missing = await client.get("/app/missing")
    assert (hello.status_code, missing.status_code) == (200, 404)
    spans = sorted(gw.spans(), key=lambda s: s.start_time or 0)
    assert [(s.name, s.kind) for s in spans] == [("HTTP GET", SpanKind.SERVER), ("HTTP GET", SpanKind.SERVER)]
    for span, status in zip(spans, (200, 404), strict=True):
        attributes = dict(span.attributes or {})
        assert attributes["http.response.status_code"] == status
        assert not any(name.startswith("gen_ai.") for name in attributes)
        assert "http.route" not in attributes
        assert span.status.status_code is StatusCode.UNSET  # a 4xx is the client's doing
    assert [r.route for r in gw.records] == [None, None]


async def test_a_forced_task_names_the_span_after_the_task(traced: Callable[..., Awaitable[Traced]]) -> None:
    gw = await traced()
    async with gw.client() as client:
        response = await client.post(
            "/models/fake/text-classification/pipeline/text-classification", json={"inputs": "I love this"}
        )
    assert response.status_code == 200
    server = gw.server()
    assert server.name == "task text-classification"
    attributes = dict(server.attributes or {})
    assert attributes["gen_ai.operation.name"] == "text-classification"
    assert attributes["http.route"] == "/models/{model}/pipeline/{task}"
    assert attributes["gen_ai.request.model"] == "fake/text-classification"


async def test_the_catalog_names_the_task_of_a_model_route(traced: Callable[..., Awaitable[Traced]]) -> None:
    entry = ModelEntry(id="org/classifier", upstream_model="fake/text-classification", task="text-classification")
    gw = await traced(models=(entry,))
    async with gw.client() as client:
        response = await client.post("/models/org/classifier", json={"inputs": "I love this"})
    assert response.status_code == 200
    server = gw.server()
    assert server.name == "task text-classification"
    assert dict(server.attributes or {})["http.route"] == "/models/{model}"
    assert gw.records[0].task == "text-classification"


async def test_embeddings_report_input_tokens_only(traced: Callable[..., Awaitable[Traced]]) -> None:
    gw = await traced("openai")
    async with gw.client() as client:
        response = await client.post("/v1/embeddings", json={"model": "org/embed", "input": "four words right here"})
    assert response.status_code == 200
    attributes = dict(gw.server().attributes or {})
    assert attributes["gen_ai.operation.name"] == "embeddings"
    assert attributes["gen_ai.usage.input_tokens"] == response.json()["usage"]["prompt_tokens"]
    assert "gen_ai.usage.output_tokens" not in attributes


# --- streams --------------------------------------------------------------------------------------


async def test_a_stream_span_ends_only_after_its_last_event(
    traced: Callable[..., Awaitable[Traced]], fake: FakeHF
) -> None:
    gw = await traced()
    key = fake_key("stream")
    body = chat_body(max_tokens=4, stream=True, stream_options={"include_usage": True})
    async with open_stream(gw.app, "POST", "/v1/chat/completions", json_body=body, headers=headers(key, "gate")) as s:
        assert s.status == 200
        first = await s.chunk()
        assert first.startswith(b"data: ")
        await fake.await_for(lambda: fake.gated(key))
        assert gw.spans() == []  # mid-stream: neither the SERVER nor the CLIENT span has ended
        fake.release(key)
        rest = await s.rest()
    events = sse_events(first + rest)
    usage = events[-1]["usage"]
    assert usage == shapes.usage(shapes.count_tokens("one two three"), 4)
    server = gw.server()
    attributes = dict(server.attributes or {})
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert server.start_time is not None and server.end_time is not None
    first_token = attributes["hfasgi.time_to_first_token"]
    assert isinstance(first_token, float)
    assert 0 < first_token <= (server.end_time - server.start_time) / 1e9
    assert gw.records[0].stream is True
    (client_span,) = gw.clients()
    assert client_span.parent is not None and client_span.parent.span_id == server.context.span_id


async def test_a_stream_that_ends_with_an_error_event_is_an_error(
    traced: Callable[..., Awaitable[Traced]], fake: FakeHF
) -> None:
    gw = await traced()
    body = chat_body(max_tokens=4, stream=True)
    async with gw.client() as client:
        response = await client.post(
            "/v1/chat/completions", json=body, headers=headers(fake_key("stream-error"), "stream-error")
        )
    assert response.status_code == 200
    final = sse_events(response.content)[-1]
    assert "error" in final
    server = gw.server()
    attributes = dict(server.attributes or {})
    assert server.status.status_code is StatusCode.ERROR
    assert attributes["hfasgi.error_type"] == final["error_type"]
    assert attributes["error.type"] == final["error_type"]
    assert attributes["http.response.status_code"] == 200
    assert gw.records[0].error_type == final["error_type"]


async def test_a_tgi_stream_reports_its_generated_tokens(
    traced: Callable[..., Awaitable[Traced]], fake: FakeHF
) -> None:
    gw = await traced("tgi")
    body = {"inputs": "alpha beta", "parameters": {"max_new_tokens": 3, "details": True, "temperature": 0.5}}
    async with gw.client() as client:
        response = await client.post("/generate_stream", json=body, headers=headers(fake_key("tgi")))
    assert response.status_code == 200
    details = sse_events(response.content)[-1]["details"]
    server = gw.server()
    assert server.name == "generate_stream"
    attributes = dict(server.attributes or {})
    assert attributes["gen_ai.operation.name"] == "text_completion"
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.request.max_tokens"] == 3
    assert attributes["gen_ai.request.temperature"] == 0.5
    assert attributes["gen_ai.usage.output_tokens"] == details["generated_tokens"] == 3
    assert attributes["gen_ai.usage.input_tokens"] == details["input_length"]


async def test_a_client_that_leaves_mid_stream_ends_the_span(
    traced: Callable[..., Awaitable[Traced]], fake: FakeHF
) -> None:
    gw = await traced()
    key = fake_key("leave")
    body = chat_body(max_tokens=4, stream=True)
    async with open_stream(gw.app, "POST", "/v1/chat/completions", json_body=body, headers=headers(key, "gate")) as s:
        await s.chunk()
        await fake.await_for(lambda: fake.gated(key))
    # the client hung up (leaving the block), the app returned: the spans have ended
    server = gw.server()
    attributes = dict(server.attributes or {})
    assert attributes["hfasgi.client_disconnected"] is True
    assert server.status.status_code is StatusCode.UNSET  # the caller left: not the gateway's error
    assert len(gw.clients()) == 1


# --- retries and failures ---------------------------------------------------------------------------


async def test_a_retry_after_loading_is_two_client_spans(
    traced: Callable[..., Awaitable[Traced]], fake: FakeHF
) -> None:
    gw = await traced()
    key = fake_key("loading")
    async with gw.client() as client:
        response = await client.post(
            "/v1/chat/completions", json=chat_body(max_tokens=2), headers=headers(key, "loading:1:0.01")
        )
    assert response.status_code == 200
    server = gw.server()
    first, second = gw.clients()
    for attempt, span in enumerate((first, second), start=1):
        assert span.parent is not None and span.parent.span_id == server.context.span_id
        assert dict(span.attributes or {})["hfasgi.upstream.attempt"] == attempt
    assert dict(first.attributes or {})["http.response.status_code"] == 503
    assert first.status.status_code is StatusCode.ERROR
    assert dict(second.attributes or {})["http.response.status_code"] == 200
    assert second.status.status_code is StatusCode.UNSET
    assert dict(server.attributes or {})["hfasgi.upstream.attempts"] == 2
    sent = [r for r in fake.requests if r.headers.get("x-fake-key") == key]
    assert [traceparent_ids(r.headers["traceparent"])[1] for r in sent] == [
        first.context.span_id,
        second.context.span_id,
    ]
    assert gw.records[0].attempts == 2


async def test_a_retry_after_a_dropped_connection_records_the_error(
    traced: Callable[..., Awaitable[Traced]], fake: FakeHF
) -> None:
    gw = await traced()
    async with gw.client() as client:
        response = await client.post(
            "/v1/chat/completions", json=chat_body(max_tokens=2), headers=headers(fake_key("drop"), "drop:1")
        )
    assert response.status_code == 200
    first, second = gw.clients()
    failed = dict(first.attributes or {})
    assert first.status.status_code is StatusCode.ERROR
    assert failed["error.type"]  # the connection error's class, e.g. ServerDisconnectedError
    assert "http.response.status_code" not in failed
    assert dict(second.attributes or {})["http.response.status_code"] == 200


async def test_an_upstream_500_is_an_error_on_both_spans(
    traced: Callable[..., Awaitable[Traced]], fake: FakeHF
) -> None:
    gw = await traced()
    async with gw.client() as client:
        response = await client.post(
            "/v1/chat/completions", json=chat_body(max_tokens=2), headers=headers(fake_key("500"), "error:500")
        )
    assert response.status_code == 500
    server = gw.server()
    attributes = dict(server.attributes or {})
    assert server.status.status_code is StatusCode.ERROR
    assert attributes["http.response.status_code"] == 500
    assert attributes["hfasgi.upstream.status_code"] == 500
    assert attributes["error.type"] == attributes["hfasgi.error_type"] == response.json()["error_type"]
    (client_span,) = gw.clients()
    assert client_span.status.status_code is StatusCode.ERROR
    assert dict(client_span.attributes or {})["http.response.status_code"] == 500


async def test_a_refused_connection_is_a_502_with_one_failed_client_span_per_attempt(
    traced: Callable[..., Awaitable[Traced]],
) -> None:
    gw = await traced(url=f"http://127.0.0.1:{free_port()}", retry=RetryPolicy(attempts=2, backoff=0.0))
    async with gw.client() as client:
        response = await client.post("/v1/chat/completions", json=chat_body(max_tokens=2))
    assert response.status_code == 502
    server = gw.server()
    attributes = dict(server.attributes or {})
    assert server.status.status_code is StatusCode.ERROR
    assert attributes["http.response.status_code"] == 502
    assert attributes["hfasgi.error_type"] == "upstream_unavailable"
    assert attributes["hfasgi.upstream.attempts"] == 2
    assert "hfasgi.upstream.status_code" not in attributes
    spans = gw.clients()
    assert [dict(s.attributes or {})["hfasgi.upstream.attempt"] for s in spans] == [1, 2]
    for span in spans:
        assert span.status.status_code is StatusCode.ERROR
        assert dict(span.attributes or {})["error.type"]
        assert span.parent is not None and span.parent.span_id == server.context.span_id


# --- inner layers add to the SERVER span ---------------------------------------------------------------


async def test_auth_limits_and_validation_annotate_the_server_span(
    traced: Callable[..., Awaitable[Traced]], fake: FakeHF
) -> None:
    gw = await traced(
        auth=AuthConfig(store=MemoryKeyStore.from_keys([f"alice={CLIENT_KEY}"])),
        limiter=RateLimiterConfig(store=MemoryLimiterStore(), rate_limit=Limit(2, 60)),
        validate=True,
    )
    auth = {"authorization": f"Bearer {CLIENT_KEY}"}
    async with gw.client() as client:
        ok = await client.post(
            "/v1/chat/completions", json=chat_body(max_tokens=1), headers={**auth, **headers(fake_key("ok"))}
        )
        assert ok.status_code == 200
        served = gw.server()
        gw.exporter.clear()
        invalid = await client.post("/v1/chat/completions", json=chat_body(temperature="very-hot"), headers=auth)
        assert invalid.status_code == 422
        refused_by_validation = gw.server()
        gw.exporter.clear()
        limited = await client.post("/v1/chat/completions", json=chat_body(), headers=auth)
        assert limited.status_code == 429
        refused_by_limit = gw.server()
        gw.exporter.clear()
        anonymous = await client.post("/v1/chat/completions", json=chat_body())
        assert anonymous.status_code == 401
        refused_by_auth = gw.server()

    attributes = dict(served.attributes or {})
    assert attributes["hfasgi.auth.key_id"] == "alice"
    assert attributes["hfasgi.ratelimit.remaining"] == 1

    (event,) = refused_by_validation.events
    assert event.name == "hfasgi.validation.error"
    assert dict(event.attributes or {}) == {
        "hfasgi.validation.error_type": "validation",
        "hfasgi.validation.field": "temperature",
        "http.response.status_code": 422,
    }
    assert "very-hot" not in everything([refused_by_validation])  # the field, never its value
    assert dict(refused_by_validation.attributes or {})["hfasgi.ratelimit.remaining"] == 0

    (event,) = refused_by_limit.events
    assert event.name == "hfasgi.ratelimit.rejected"
    assert dict(event.attributes or {})["hfasgi.ratelimit.limit"] == "requests"
    assert refused_by_limit.status.status_code is StatusCode.UNSET

    (event,) = refused_by_auth.events
    assert event.name == "hfasgi.auth.refused"
    assert dict(event.attributes or {}) == {"hfasgi.auth.reason": "authentication", "http.response.status_code": 401}
    assert "hfasgi.auth.key_id" not in dict(refused_by_auth.attributes or {})

    assert [r.key_id for r in gw.records] == ["alice", "alice", "alice", None]
    assert [r.attempts for r in gw.records] == [1, 0, 0, 0]
    seen = everything([served, refused_by_validation, refused_by_limit, refused_by_auth]) + repr(gw.records)
    assert CLIENT_KEY not in seen and SERVER_TOKEN not in seen
    assert CLIENT_KEY not in fake.last().headers.get("authorization", "")


# --- no-op, sinks, configuration -------------------------------------------------------------------------


async def test_with_no_op_providers_nothing_is_traced_nor_propagated(upstream: FakeUpstream, fake: FakeHF) -> None:
    forwarder = ForwarderConfig(catalog=ModelCatalog([Upstream(url=upstream.url, token=SERVER_TOKEN)]))
    seen: list[RequestContext] = []

    async def inner(scope: Any, receive: Receive, send: Send) -> None:
        await send_error(scope, send, 404, ErrorType.NOT_FOUND, "no")

    def probe(app: Any) -> Any:  # looks at the context as the forwarder will
        async def run(scope: Any, receive: Receive, send: Send) -> None:
            from hfasgi.context import get_context

            seen.append(get_context(scope))
            await app(scope, receive, send)

        return run

    quiet = TracingConfig(tracer_provider=NoOpTracerProvider(), metrics=GatewayMetrics(NoOpMeterProvider()))
    app = Tracing(probe(stack(inner, *layers(forwarder))), config=quiet)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")
    async with resources(forwarder.pool), client:
        response = await client.post("/v1/chat/completions", json=chat_body(max_tokens=1))
    assert response.status_code == 200
    assert seen[0].span is None
    assert "traceparent" not in fake.last().headers
    assert seen[0].upstream_attempts == 1 and seen[0].upstream_status == 200  # the forwarder still counts


async def test_a_failing_sink_never_breaks_a_request(
    upstream: FakeUpstream, fake: FakeHF, caplog: pytest.LogCaptureFixture
) -> None:
    forwarder = ForwarderConfig(catalog=ModelCatalog([Upstream(url=upstream.url, token=SERVER_TOKEN)]))
    kept: list[RequestRecord] = []

    def broken(record: RequestRecord, ctx: RequestContext) -> None:
        raise RuntimeError("the sink is broken")

    config = TracingConfig(
        tracer_provider=NoOpTracerProvider(),
        metrics=GatewayMetrics(NoOpMeterProvider()),
        sinks=(broken, lambda record, ctx: kept.append(record)),
    )
    app = stack(InnerApp(), Layer(Tracing, {"config": config}), *layers(forwarder))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")
    async with resources(forwarder.pool), client:
        with caplog.at_level(logging.WARNING, logger="hfasgi.observability"):
            response = await client.post("/v1/chat/completions", json=chat_body(max_tokens=1))
    assert response.status_code == 200
    assert [r.status for r in kept] == [200]  # the next sink still got the record
    assert any("failed" in r.getMessage() for r in caplog.records)


def test_tracing_config_refuses_a_sink_that_is_not_callable() -> None:
    with pytest.raises(ValueError, match="sinks"):
        TracingConfig(sinks=("audit.log",))  # type: ignore[arg-type]


async def test_websockets_and_lifespan_pass_through(traced: Callable[..., Awaitable[Traced]]) -> None:
    gw = await traced()
    messages: list[Any] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"type": "websocket.disconnect"}

    async def send(message: Any) -> None:
        messages.append(message)

    await gw.app({"type": "websocket", "path": "/ws", "headers": []}, receive, send)
    assert gw.spans() == [] and gw.records == []


async def test_the_environment_configures_spans(capfd: pytest.CaptureFixture[str]) -> None:
    environ = {
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "gateway-under-test",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test,team=a%2Cb,service.name=ignored",
        "OTEL_METRICS_EXPORTER": "none",
    }
    telemetry = configure_from_environment(environ)
    assert telemetry.tracer_provider is not None and telemetry.prometheus is None
    resource = dict(telemetry.tracer_provider.resource.attributes)
    assert resource["service.name"] == "gateway-under-test"  # OTEL_SERVICE_NAME wins
    assert resource["deployment.environment"] == "test"
    assert resource["team"] == "a,b"
    await telemetry.open()
    telemetry.tracer_provider.get_tracer("test").start_span("exported-to-the-console").end()
    await telemetry.aclose()  # flushes the batch processor
    assert "exported-to-the-console" in capfd.readouterr().out


def test_the_environment_chooses_the_sampler() -> None:
    off = configure_from_environment({"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "always_off"})
    assert off.tracer_provider is not None
    assert not off.tracer_provider.get_tracer("test").start_span("dropped").is_recording()
    ratio = configure_from_environment(
        {"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1"}
    )
    assert ratio.tracer_provider is not None
    assert ratio.tracer_provider.get_tracer("test").start_span("kept").is_recording()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        (
            {"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        ({"OTEL_RESOURCE_ATTRIBUTES": "no-equals-sign"}, "OTEL_RESOURCE_ATTRIBUTES"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "http/protobuf"),
    ],
)
def test_the_environment_refuses_what_it_does_not_know(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        configure_from_environment(environ)


def test_the_sdk_can_be_turned_off() -> None:
    telemetry = configure_from_environment({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"})
    assert (telemetry.tracer_provider, telemetry.meter_provider, telemetry.prometheus) == (None, None, None)


# --- the GenAI helpers, alone ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("POST", "/hf/v1/chat/completions", "/hf/v1/chat/completions"),
        ("POST", "/hf/models/org/m/v1/chat/completions", "/hf/models/{model}/v1/chat/completions"),
        ("POST", "/hf/models/org/m", "/hf/models/{model}"),
        ("POST", "/hf/models/org/m/pipeline/fill-mask", "/hf/models/{model}/pipeline/{task}"),
        ("POST", "/hf/pipeline/fill-mask/org/m", "/hf/pipeline/{task}/{model}"),
        ("GET", "/hf/v1/models/org/m", "/hf/v1/models/{model}"),
        ("POST", "/hf/generate_stream", "/hf/generate_stream"),
        ("POST", "/hf", "/hf/"),
    ],
)
def test_route_templates_name_the_matched_path_shape(method: str, path: str, template: str) -> None:
    routes = Routes("/hf")
    op = routes.match(method, path)
    assert op is not None
    assert route_template(op, path, "/hf") == template


def test_an_operation_set_by_the_task_api_has_no_route_template() -> None:
    op = Operation(Route.TASK, "text-classification", task_forced=True)
    assert route_template(op, "/hf/tasks/text-classification", "/hf") is None


def _watch(content_type: bytes, chunks: list[bytes], status: int = 200) -> ResponseWatch:
    watch = ResponseWatch()
    watch.start({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
    for i, chunk in enumerate(chunks):
        watch.body({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})
    watch.close()
    return watch


def test_usage_split_across_stream_chunks_is_read() -> None:
    event = b'data: {"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":22,"total_tokens":33}}\n\n'
    chunks = [b'data: {"model":"org/m","choices":[{"delta":{"content":"hi"}}]}\n\n', event[:40], event[40:]]
    watch = _watch(b"text/event-stream", [*chunks, b"data: [DONE]\n\n"])
    assert (watch.input_tokens, watch.output_tokens, watch.model) == (11, 22, "org/m")
    assert watch.stream and watch.first_event is not None and not watch.failed


def test_generated_text_cannot_fake_usage_or_errors() -> None:
    text = json.dumps({"choices": [{"delta": {"content": '"error": "completion_tokens": 99'}}]}).encode()
    watch = _watch(b"text/event-stream", [b"data: " + text + b"\n\n"])
    assert (watch.output_tokens, watch.failed, watch.error_type) == (None, False, None)


def test_the_usage_at_the_end_of_a_huge_answer_is_read() -> None:
    head = b'{"object":"list","model":"org/embed","data":['
    filler = [b'{"embedding":[' + b"0.125," * 20000 + b"0.5]}," for _ in range(12)]  # ~1.4 MiB
    tail = b'{"embedding":[1.0]}],"usage":{"prompt_tokens":4096,"total_tokens":4096}}'
    watch = _watch(b"application/json", [head, *filler, tail])
    assert (watch.input_tokens, watch.output_tokens, watch.model) == (4096, None, "org/embed")


def test_an_error_answer_gives_its_error_type() -> None:
    watch = _watch(b"application/json", [b'{"error":"Model is overloaded","error_type":"overloaded"}'], status=503)
    assert watch.error_type == "overloaded" and watch.input_tokens is None


def test_request_attributes_read_both_dialects_and_never_the_prompt() -> None:
    tgi = {"inputs": "secret prompt", "parameters": {"max_new_tokens": 9, "top_k": 5, "temperature": 0.1}}
    assert request_attributes(tgi, Operation(Route.GENERATE)) == {
        "gen_ai.request.max_tokens": 9,
        "gen_ai.request.temperature": 0.1,
        "gen_ai.request.top_k": 5,
        "gen_ai.request.stream": False,
    }
    openai_body = {"messages": [], "max_completion_tokens": 3.0, "max_tokens": 7, "n": 2, "stream": True}
    assert request_attributes(openai_body, Operation(Route.CHAT)) == {
        "gen_ai.request.max_tokens": 3,
        "gen_ai.request.choice.count": 2,
        "gen_ai.request.stream": True,
    }
    assert request_attributes({"temperature": True, "max_tokens": "5"}, Operation(Route.CHAT)) == {
        "gen_ai.request.stream": False
    }
