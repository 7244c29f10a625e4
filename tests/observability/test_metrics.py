"""Metrics: the instruments after a mixed workload, and ``GET /metrics`` read back with the Prometheus text parser.

The stack is the one of test_tracing.py (``traced``): the layers in process, the fake HF upstream on a socket.
Expected values come from what the clients received (status codes, the ``usage`` of each answer) and from
the records the sink kept, never from the metrics themselves.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import prometheus_client
import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client.parser import text_string_to_metric_families

from hfasgi.auth import AuthConfig, MemoryKeyStore
from hfasgi.limits import Limit
from hfasgi.observability import GatewayMetrics, PrometheusMetrics, RequestRecord, configure_from_environment
from hfasgi.observability.metrics import METRICS_CONTENT_TYPE, send_metrics
from hfasgi.ratelimit import MemoryLimiterStore, RateLimiterConfig
from tests.asgi_driver import open_stream
from tests.observability.test_tracing import (
    CLIENT_KEY,
    SERVER_TOKEN,
    Traced,
    chat_body,
    fake_key,
    headers,
    sse_events,
    traced_fixture,  # noqa: F401  (the `traced` fixture, shared)
)
from tests.upstream.fake_hf import FakeHF

pytestmark = pytest.mark.anyio

AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}


def points(reader: InMemoryMetricReader, name: str) -> list[tuple[dict[str, Any], Any]]:
    """``(attributes, data point)`` of one metric (empty when it was never recorded)."""
    data = reader.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found += [(dict(p.attributes or {}), p) for p in metric.data.data_points]
    return found


def by(reader: InMemoryMetricReader, name: str, *labels: str) -> Counter[tuple[Any, ...]]:
    """A counter's (or a histogram's count's) totals by some of its labels."""
    totals: Counter[tuple[Any, ...]] = Counter()
    for attributes, point in points(reader, name):
        value = point.count if hasattr(point, "bucket_counts") else point.value
        totals[tuple(attributes.get(label) for label in labels)] += value
    return totals


async def workload(gw: Traced, fake: FakeHF) -> dict[str, Any]:
    """A mixed workload; what the clients saw (statuses, reported usage) for the expectations."""
    statuses: Counter[tuple[str, int]] = Counter()
    prompt = completion = 0
    async with gw.client() as client:

        async def chat(body: dict[str, Any], scenario: str = "", auth: bool = True) -> httpx.Response:
            nonlocal prompt, completion
            sent = {**(AUTH if auth else {}), **headers(fake_key("load"), scenario)}
            response = await client.post("/v1/chat/completions", json=body, headers=sent)
            statuses["chat", response.status_code] += 1
            if response.status_code == 200:
                usage = sse_events(response.content)[-1]["usage"] if body.get("stream") else response.json()["usage"]
                prompt += usage["prompt_tokens"]
                completion += usage["completion_tokens"]
            return response

        for tokens in (2, 3, 4):
            await chat(chat_body(max_tokens=tokens))
        for tokens in (2, 5):
            await chat(chat_body(max_tokens=tokens, stream=True, stream_options={"include_usage": True}))
        await chat(chat_body(max_tokens=2), "error:500")
        await chat(chat_body(max_tokens=1), "loading:1:0.01")  # one retry
        await chat(chat_body(temperature="hot"))  # 422, counted by the limiter first
        await chat(chat_body(max_tokens=1))  # the 9th counted request: the last one the limit allows
        await chat(chat_body(max_tokens=1))  # 429
        await chat(chat_body(max_tokens=1), auth=False)  # 401
        hello = await client.get("/app/hello")
        statuses["other", hello.status_code] += 1
    return {"statuses": statuses, "prompt": prompt, "completion": completion}


async def limited_gateway(traced: Callable[..., Awaitable[Traced]], **options: Any) -> Traced:
    return await traced(
        auth=AuthConfig(store=MemoryKeyStore.from_keys([f"alice={CLIENT_KEY}"])),
        limiter=RateLimiterConfig(store=MemoryLimiterStore(), rate_limit=Limit(9, 60)),
        validate=True,
        **options,
    )


async def test_the_instruments_count_a_mixed_workload(traced: Callable[..., Awaitable[Traced]], fake: FakeHF) -> None:
    gw = await limited_gateway(traced)
    seen = await workload(gw, fake)
    statuses = seen["statuses"]
    assert statuses == Counter(
        {("chat", 200): 7, ("chat", 500): 1, ("chat", 422): 1, ("chat", 429): 1, ("chat", 401): 1, ("other", 200): 1}
    )
    reader = gw.reader
    assert by(reader, "hfasgi.requests", "route", "status") == statuses
    assert by(reader, "hfasgi.request.duration", "route", "status") == statuses
    assert by(reader, "hfasgi.requests", "model")[("org/chat",)] == sum(r.model == "org/chat" for r in gw.records)

    tokens = by(reader, "hfasgi.tokens", "direction", "key_id", "model")
    assert tokens == Counter(
        {("input", "alice", "org/chat"): seen["prompt"], ("output", "alice", "org/chat"): seen["completion"]}
    )
    assert by(reader, "hfasgi.upstream.retries", "upstream") == Counter({("default",): 1})
    assert by(reader, "hfasgi.ratelimit.rejections", "key_id") == Counter({("alice",): 1})
    # the upstream answered 8 requests: 7 successes (one after a retry) and the 500
    assert by(reader, "hfasgi.upstream.duration", "upstream", "status") == Counter(
        {("default", 200): 7, ("default", 500): 1}
    )
    assert by(reader, "hfasgi.time_to_first_token", "route") == Counter({("chat",): 2})
    assert by(reader, "hfasgi.streams.active", "route") == Counter({("chat",): 0})
    durations = {tuple(sorted(a.items())): p.sum for a, p in points(reader, "hfasgi.request.duration")}
    assert sum(durations.values()) == pytest.approx(sum(r.duration for r in gw.records))
    assert points(reader, "gen_ai.client.token.usage") == []  # the GenAI histograms are opt-in


async def test_active_streams_go_up_and_down(traced: Callable[..., Awaitable[Traced]], fake: FakeHF) -> None:
    gw = await traced()
    key = fake_key("active")
    body = chat_body(max_tokens=3, stream=True)
    async with open_stream(gw.app, "POST", "/v1/chat/completions", json_body=body, headers=headers(key, "gate")) as s:
        await s.chunk()
        await fake.await_for(lambda: fake.gated(key))
        assert by(gw.reader, "hfasgi.streams.active", "route") == Counter({("chat",): 1})
        fake.release(key)
        await s.rest()
    assert by(gw.reader, "hfasgi.streams.active", "route") == Counter({("chat",): 0})


async def test_the_genai_histograms_when_asked(traced: Callable[..., Awaitable[Traced]], fake: FakeHF) -> None:
    gw = await traced(genai=True)
    usage = {"prompt_tokens": 0, "completion_tokens": 0}
    async with gw.client() as client:
        for tokens in (2, 3):
            response = await client.post(
                "/v1/chat/completions", json=chat_body(max_tokens=tokens), headers=headers(fake_key("genai"))
            )
            for name in usage:
                usage[name] += response.json()["usage"][name]
    token_usage = {a["gen_ai.token.type"]: p for a, p in points(gw.reader, "gen_ai.client.token.usage")}
    assert token_usage["input"].sum == usage["prompt_tokens"] and token_usage["input"].count == 2
    assert token_usage["output"].sum == usage["completion_tokens"]
    ((attributes, duration),) = points(gw.reader, "gen_ai.client.operation.duration")
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "huggingface",
        "gen_ai.request.model": "org/chat",
    }
    assert duration.count == 2
    assert duration.sum == pytest.approx(sum(r.upstream_duration or 0 for r in gw.records))


def _family(text: str, name: str) -> Any:
    for family in text_string_to_metric_families(text):
        if family.name == name:
            return family
    raise AssertionError(f"no metric family {name!r} in /metrics")


async def test_metrics_endpoint_serves_the_prometheus_text(
    traced: Callable[..., Awaitable[Traced]], fake: FakeHF
) -> None:
    prometheus = PrometheusMetrics()
    gw = await limited_gateway(traced, prometheus=prometheus)
    seen = await workload(gw, fake)
    records: list[RequestRecord] = list(gw.records)
    async with gw.client() as client:
        response = await client.get("/metrics")
        head = await client.head("/metrics")
        post = await client.post("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == METRICS_CONTENT_TYPE.decode()
    assert (head.status_code, head.content) == (200, b"")
    assert post.status_code == 405
    text = response.text

    requests = _family(text, "hfasgi_requests")
    counted: Counter[tuple[str, int]] = Counter()
    for sample in requests.samples:
        if sample.name == "hfasgi_requests_total":
            counted[sample.labels["route"], int(sample.labels["status"])] += int(sample.value)
    assert counted == seen["statuses"]

    tokens = _family(text, "hfasgi_tokens")
    totals = {s.labels["direction"]: s.value for s in tokens.samples if s.name == "hfasgi_tokens_total"}
    assert totals == {"input": seen["prompt"], "output": seen["completion"]}
    assert {s.labels["key_id"] for s in tokens.samples if s.name == "hfasgi_tokens_total"} == {"alice"}

    duration = _family(text, "hfasgi_request_duration_seconds")
    count = sum(s.value for s in duration.samples if s.name.endswith("_count"))
    total = sum(s.value for s in duration.samples if s.name.endswith("_sum"))
    assert count == len(records) == sum(seen["statuses"].values())
    assert total == pytest.approx(sum(r.duration for r in records))
    retries = _family(text, "hfasgi_upstream_retries")
    assert [s.value for s in retries.samples if s.name.endswith("_total")] == [1]
    rejections = _family(text, "hfasgi_ratelimit_rejections")
    assert [s.value for s in rejections.samples if s.name.endswith("_total")] == [1]
    assert CLIENT_KEY not in text and SERVER_TOKEN not in text


async def test_each_app_has_its_own_registry(traced: Callable[..., Awaitable[Traced]], fake: FakeHF) -> None:
    first, second = PrometheusMetrics(), PrometheusMetrics()
    one = await traced(prometheus=first)
    await traced(prometheus=second)
    async with one.client() as client:
        await client.post("/v1/chat/completions", json=chat_body(max_tokens=1), headers=headers(fake_key("one")))
    assert b"hfasgi_requests_total" in first.render()
    assert b"hfasgi_requests_total" not in second.render()
    global_names = {family.name for family in prometheus_client.REGISTRY.collect()}
    assert not any(name.startswith("hfasgi") for name in global_names)


async def test_metrics_off_is_a_404() -> None:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    await send_metrics({"type": "http", "method": "GET", "path": "/metrics", "headers": []}, send, None)
    assert sent[0]["status"] == 404


def test_metrics_follow_their_provider() -> None:
    assert GatewayMetrics(NoOpMeterProvider()).enabled is False
    assert GatewayMetrics().enabled is False  # the global provider, with no SDK installed in the process
    provider = MeterProvider(shutdown_on_exit=False)
    assert GatewayMetrics(provider).enabled is True
    provider.shutdown()


def test_label_sets_are_bounded() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    metrics = GatewayMetrics(provider)
    for i in range(2005):
        record = RequestRecord(
            request_id=str(i), started=0.0, duration=0.01, method="POST", path="/", route="chat", status=200
        )
        metrics.record(RequestRecord(**{**_fields(record), "model": f"model-{i}"}))
    series = by(reader, "hfasgi.requests", "model", "otel.metric.overflow")
    assert len(series) == 2001
    assert series[None, True] == 5
    assert sum(series.values()) == 2005
    provider.shutdown()


def _fields(record: RequestRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


def test_the_environment_configures_metrics() -> None:
    telemetry = configure_from_environment({"OTEL_SERVICE_NAME": "metered"})
    assert telemetry.tracer_provider is None  # OTEL_TRACES_EXPORTER defaults to none
    assert telemetry.prometheus is not None and telemetry.meter_provider is not None
    metrics = GatewayMetrics(telemetry.meter_provider)
    metrics.record(
        RequestRecord(request_id="r", started=0.0, duration=0.5, method="GET", path="/", route=None, status=200)
    )
    text = telemetry.prometheus.render().decode()
    assert 'service_name="metered"' in text  # target_info carries the resource
    assert _family(text, "hfasgi_request_duration_seconds") is not None
    assert configure_from_environment({"OTEL_METRICS_EXPORTER": "none"}).prometheus is None
    with pytest.raises(ValueError, match="OTEL_METRICS_EXPORTER"):
        configure_from_environment({"OTEL_METRICS_EXPORTER": "otlp"})


def _records() -> list[RequestRecord]:
    """Records spread over every bucket boundary, label sets with and without a model, streams and not."""
    durations = [0.0, 0.005, 0.0050001, 0.01, 0.3, 1.0, 2.5, 7.0, 299.0, 300.0, 301.0, 1e6]
    found = []
    for index, duration in enumerate(durations * 3):
        found.append(
            RequestRecord(
                request_id=str(index),
                started=0.0,
                duration=duration,
                method="POST",
                path="/",
                route=("chat", "task", None)[index % 3],
                status=(200, 429, 502)[index % 3],
                model=("m/a", None)[index % 2],
                upstream="default" if index % 4 else None,
                upstream_duration=duration / 2,
                upstream_status=(200, 503)[index % 2],
                time_to_first_token=duration / 3 if index % 2 else None,
                stream=bool(index % 2),
            )
        )
    return found


@pytest.mark.parametrize("name", ["hfasgi.request.duration", "hfasgi.upstream.duration", "hfasgi.time_to_first_token"])
def test_histograms_aggregated_in_hfasgi_equal_the_sdks(name: str) -> None:
    sdk_reader, fast_reader = InMemoryMetricReader(), InMemoryMetricReader()
    sdk_provider = MeterProvider(metric_readers=[sdk_reader], shutdown_on_exit=False)
    fast_provider = MeterProvider(metric_readers=[fast_reader], shutdown_on_exit=False)
    sdk, fast = GatewayMetrics(sdk_provider), GatewayMetrics(fast_provider, readers=(fast_reader,))
    assert sdk.fast is None and fast.fast is not None
    for record in _records():
        sdk.record(record)
        fast.record(record)

    def shape(reader: InMemoryMetricReader) -> list[tuple[Any, ...]]:
        return sorted(
            (
                tuple(sorted(attributes.items())),
                tuple(p.bucket_counts),
                tuple(p.explicit_bounds),
                p.count,
                round(p.sum, 9),
                p.min,
                p.max,
            )
            for attributes, p in points(reader, name)
        )

    expected = shape(sdk_reader)
    assert expected and shape(fast_reader) == expected
    assert shape(fast_reader) == expected  # a second collection: cumulative, unchanged
    sdk_provider.shutdown()
    fast_provider.shutdown()


def test_the_reference_setup_serves_hfasgis_histograms_in_prometheus_text() -> None:
    telemetry = configure_from_environment({})
    metrics = telemetry.tracing_config().metrics
    assert metrics is not None and metrics.fast is not None
    assert telemetry.tracing_config().metrics is metrics  # one aggregation, published once
    reference = PrometheusMetrics()
    provider = MeterProvider(metric_readers=[reference.reader], shutdown_on_exit=False)
    sdk = GatewayMetrics(provider)
    for record in _records():
        metrics.record(record)
        sdk.record(record)
    assert telemetry.prometheus is not None
    ours = _family(telemetry.prometheus.render().decode(), "hfasgi_request_duration_seconds")
    theirs = _family(reference.render().decode(), "hfasgi_request_duration_seconds")
    assert ours is not None and theirs is not None
    assert sorted((s.name, sorted(s.labels.items()), s.value) for s in ours.samples) == sorted(
        (s.name, sorted(s.labels.items()), s.value) for s in theirs.samples
    )
    provider.shutdown()


def test_fast_histograms_bound_their_label_sets() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    metrics = GatewayMetrics(provider, readers=(reader,))
    base = RequestRecord(request_id="r", started=0.0, duration=0.01, method="POST", path="/", route="chat", status=200)
    for i in range(2005):
        metrics.record(RequestRecord(**{**_fields(base), "model": f"model-{i}"}))
    series = points(reader, "hfasgi.request.duration")
    assert len(series) == 2001
    overflow = [p for attributes, p in series if attributes.get("otel.metric.overflow") is True]
    assert len(overflow) == 1 and overflow[0].count == 5
    assert sum(p.count for _, p in series) == 2005
    provider.shutdown()
