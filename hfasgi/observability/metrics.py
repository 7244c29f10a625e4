"""The gateway's metrics (OpenTelemetry instruments) and ``GET /metrics`` in the Prometheus text format.

:class:`GatewayMetrics` records each finished request (it is :class:`~hfasgi.observability.Tracing`'s
first sink); :class:`PrometheusMetrics` holds a Prometheus reader on a private registry (never the
global one: an app's metrics are its own), and :func:`send_metrics` answers a scrape with it.

Labels are few and bounded: route, status, model, upstream, key id (a key's name, never the key).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from hfasgi import __version__
from hfasgi.errors import ErrorType, send_error
from hfasgi.observability.genai import PROVIDER, operation_name
from hfasgi.observability.histograms import FastHistogram, publish
from hfasgi.observability.record import RequestRecord
from hfasgi.types import Scope, Send

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricReader

    from hfasgi.context import RequestContext

__all__ = ["METRICS_CONTENT_TYPE", "GatewayMetrics", "PrometheusMetrics", "send_metrics"]

METRICS_CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_FIRST_TOKEN = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""The GenAI conventions' advice for ``gen_ai.server.time_to_first_token``."""
_DURATION = "From a request's arrival to the last byte of its response"
_UPSTREAM = "From the first upstream attempt to the end of the upstream's answer"
_FIRST = "From a streamed request's arrival to its first event"
_GENAI_SECONDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_GENAI_TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)


class _Tally:
    """Cumulative counts by label values, kept in a dict and read by an observable instrument's callback.

    An SDK measurement costs microseconds (its attributes are validated and hashed each time); adding
    to a dict costs a tenth of that, and the SDK reads the totals only when it collects. At most
    :data:`_MAX_SERIES` label sets; beyond, counts go to one ``otel.metric.overflow`` series.
    """

    __slots__ = ("counts", "names")

    def __init__(self, *names: str) -> None:
        self.names = names
        self.counts: dict[tuple[Any, ...], int] = {}

    def add(self, key: tuple[Any, ...], amount: int = 1) -> None:
        counts = self.counts
        if key in counts:
            counts[key] += amount
        elif len(counts) < _MAX_SERIES:
            counts[key] = amount
        else:
            counts[_OVERFLOW] = counts.get(_OVERFLOW, 0) + amount

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        """The totals (a copy first: the event loop's thread may add while a scrape's thread reads)."""
        names = self.names
        out = []
        for key, value in self.counts.copy().items():
            if key is _OVERFLOW:
                out.append(Observation(value, {"otel.metric.overflow": True}))
            else:
                out.append(Observation(value, {n: v for n, v in zip(names, key, strict=True) if v is not None}))
        return out


_MAX_SERIES = 2000
_OVERFLOW: tuple[Any, ...] = ("otel.metric.overflow",)


class GatewayMetrics:
    """The gateway's instruments, recorded from each request's :class:`RequestRecord`.

    ``hfasgi.requests`` (route, status, model), ``hfasgi.request.duration`` (s; route, status, model),
    ``hfasgi.upstream.duration`` (s; upstream, status), ``hfasgi.time_to_first_token`` (s; route, model),
    ``hfasgi.tokens`` (direction ``input``/``output``, key_id, model), ``hfasgi.upstream.retries``
    (upstream), ``hfasgi.ratelimit.rejections`` (key_id) and ``hfasgi.streams.active`` (route). The
    counters are observable (totals kept here, read when the SDK collects), the durations histograms.
    ``genai=True`` adds the GenAI conventions' ``gen_ai.client.operation.duration`` and
    ``gen_ai.client.token.usage`` for the upstream hop (three more histogram records, ~15 µs, per request).
    ``meter_provider=None``: the global provider (a no-op with ``opentelemetry-api`` alone).
    ``readers``: the provider's SDK metric readers (cumulative ones, such as :attr:`PrometheusMetrics.reader`):
    the three duration histograms are then aggregated here and added to each of their collections
    (:mod:`~hfasgi.observability.histograms`, about 1 µs a record instead of 6–7 µs).
    """

    def __init__(
        self, meter_provider: metrics.MeterProvider | None = None, *, genai: bool = False, readers: Sequence[Any] = ()
    ) -> None:
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        self._provider = provider
        self._static: bool | None = not isinstance(provider, metrics.NoOpMeterProvider)
        if meter_provider is None and provider is _unset_meter_provider():
            self._static = None  # the global proxy: recording once the process installs an SDK
        meter = provider.get_meter("hfasgi", __version__)
        self.requests = _Tally("route", "status", "model")
        self.tokens = _Tally("direction", "key_id", "model")
        self.retries = _Tally("upstream")
        self.rejections = _Tally("key_id")
        self.streams = _Tally("route")
        meter.create_observable_counter(
            "hfasgi.requests", [self.requests.observe], "{request}", "Requests served, by route, status, model"
        )
        meter.create_observable_counter(
            "hfasgi.tokens", [self.tokens.observe], "{token}", "Tokens the upstream reported, by direction"
        )
        meter.create_observable_counter(
            "hfasgi.upstream.retries", [self.retries.observe], "{retry}", "Upstream attempts beyond the first"
        )
        meter.create_observable_counter(
            "hfasgi.ratelimit.rejections",
            [self.rejections.observe],
            "{request}",
            "Requests refused by the gateway's rate limiter (429)",
        )
        meter.create_observable_up_down_counter(
            "hfasgi.streams.active", [self.streams.observe], "{stream}", "Streamed responses in flight"
        )
        self.fast: tuple[FastHistogram, FastHistogram, FastHistogram] | None = None
        """With ``readers``: the three histograms, aggregated here and published to those readers."""
        if readers:
            fast = (
                FastHistogram("hfasgi.request.duration", "s", _DURATION, _SECONDS, ("route", "status", "model")),
                FastHistogram("hfasgi.upstream.duration", "s", _UPSTREAM, _SECONDS, ("upstream", "status")),
                FastHistogram("hfasgi.time_to_first_token", "s", _FIRST, _FIRST_TOKEN, ("route", "model")),
            )
            self.fast = fast
            for reader in readers:
                publish(reader, lambda: fast, ("hfasgi", __version__))
        else:
            self.duration = meter.create_histogram(
                "hfasgi.request.duration", "s", _DURATION, explicit_bucket_boundaries_advisory=_SECONDS
            )
            self.upstream_duration = meter.create_histogram(
                "hfasgi.upstream.duration", "s", _UPSTREAM, explicit_bucket_boundaries_advisory=_SECONDS
            )
            self.first_token = meter.create_histogram(
                "hfasgi.time_to_first_token", "s", _FIRST, explicit_bucket_boundaries_advisory=_FIRST_TOKEN
            )
        self.genai = genai
        if genai:
            self.operation_duration = meter.create_histogram(
                "gen_ai.client.operation.duration",
                "s",
                "GenAI operation duration (the upstream hop)",
                explicit_bucket_boundaries_advisory=_GENAI_SECONDS,
            )
            self.token_usage = meter.create_histogram(
                "gen_ai.client.token.usage",
                "{token}",
                "Tokens used per GenAI operation, by gen_ai.token.type",
                explicit_bucket_boundaries_advisory=_GENAI_TOKENS,
            )

    @property
    def enabled(self) -> bool:
        """Whether recording reaches an SDK (``False`` for a no-op provider: Tracing then skips the work)."""
        static = self._static
        if static is None:
            return metrics.get_meter_provider() is not self._provider
        return static

    def stream_started(self, route: str) -> None:
        """A streamed response began (called by Tracing)."""
        self.streams.add((route,), 1)

    def stream_ended(self, route: str) -> None:
        """A streamed response ended, however it ended (called by Tracing)."""
        self.streams.add((route,), -1)

    def record(self, record: RequestRecord, ctx: RequestContext | None = None) -> None:
        """Record one finished request (:class:`~hfasgi.observability.Tracing` calls it first, for every request)."""
        route = record.route or "other"
        model = record.model
        status = record.status
        self.requests.add((route, status, model))
        upstream = record.upstream
        fast = self.fast
        if fast is not None:
            fast[0].record(record.duration, (route, status, model))
            if record.upstream_duration is not None and upstream is not None:
                fast[1].record(record.upstream_duration, (upstream, record.upstream_status or 0))
            if record.time_to_first_token is not None:
                fast[2].record(record.time_to_first_token, (route, model))
        else:
            self._sdk_histograms(record, route, status, model, upstream)
        if record.attempts > 1 and upstream is not None:
            self.retries.add((upstream,), record.attempts - 1)
        key = record.key_id or "anonymous"
        if status == 429 and record.attempts == 0:  # refused here, not by the upstream
            self.rejections.add((key,))
        inputs, outputs = record.input_tokens, record.output_tokens
        if inputs is not None:
            self.tokens.add(("input", key, model), inputs)
        if outputs is not None:
            self.tokens.add(("output", key, model), outputs)
        if self.genai and record.attempts:
            self._genai(record, inputs, outputs)

    def _sdk_histograms(
        self, record: RequestRecord, route: str, status: int, model: str | None, upstream: str | None
    ) -> None:
        attributes: dict[str, Any] = {"route": route, "status": status}
        if model is not None:
            attributes["model"] = model
        self.duration.record(record.duration, attributes)
        if record.upstream_duration is not None and upstream is not None:
            self.upstream_duration.record(
                record.upstream_duration, {"upstream": upstream, "status": record.upstream_status or 0}
            )
        if record.time_to_first_token is not None:
            timing: dict[str, Any] = {"route": route}
            if model is not None:
                timing["model"] = model
            self.first_token.record(record.time_to_first_token, timing)

    def _genai(self, record: RequestRecord, inputs: int | None, outputs: int | None) -> None:
        operation = operation_name(record.route, record.task)
        if operation is None:
            return
        attributes: dict[str, Any] = {"gen_ai.operation.name": operation, "gen_ai.provider.name": PROVIDER}
        if record.upstream_model is not None:
            attributes["gen_ai.request.model"] = record.upstream_model
        if record.upstream_duration is not None:
            timed = attributes
            if record.upstream_status is not None and record.upstream_status >= 400:
                timed = {**attributes, "error.type": str(record.upstream_status)}
            self.operation_duration.record(record.upstream_duration, timed)
        if inputs is not None:
            self.token_usage.record(inputs, {**attributes, "gen_ai.token.type": "input"})
        if outputs is not None:
            self.token_usage.record(outputs, {**attributes, "gen_ai.token.type": "output"})


def _unset_meter_provider() -> Any:
    """What ``metrics.get_meter_provider()`` returns while no provider is installed (the API's proxy), else ``None``."""
    provider = metrics.get_meter_provider()
    return provider if type(provider).__name__ == "_ProxyMeterProvider" else None


class PrometheusMetrics:
    """A Prometheus reader on a private registry: give :attr:`reader` to the ``MeterProvider``, serve :meth:`render`.

    Needs the ``otel`` extra (``opentelemetry-exporter-prometheus``, ``prometheus_client``).
    """

    def __init__(self) -> None:
        try:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import CollectorRegistry
        except ImportError as exc:
            raise RuntimeError(
                f"GET /metrics needs the OpenTelemetry Prometheus exporter ({exc.name} is missing): "
                "pip install 'hfasgi[otel]'"
            ) from None
        self.registry = CollectorRegistry(auto_describe=False)
        """This app's registry (never prometheus_client's global one)."""
        self.reader: MetricReader = PrometheusMetricReader(registry=self.registry)

    def render(self) -> bytes:
        """The current metrics in the Prometheus text format (0.0.4)."""
        from prometheus_client import generate_latest

        text: bytes = generate_latest(self.registry)
        return text


async def send_metrics(scope: Scope, send: Send, reader: PrometheusMetrics | None) -> None:
    """Answer ``GET /metrics`` (``HEAD`` too) with ``reader``'s metrics; 404 when metrics are off (``None``)."""
    method = scope["method"]
    if method not in ("GET", "HEAD"):
        allow = [(b"allow", b"GET, HEAD")]
        await send_error(scope, send, 405, ErrorType.METHOD_NOT_ALLOWED, f"Method {method} is not allowed", allow)
        return
    if reader is None:
        await send_error(scope, send, 404, ErrorType.NOT_FOUND, "Metrics are not enabled on this gateway")
        return
    body = await asyncio.to_thread(reader.render)  # a large registry takes milliseconds: off the event loop
    headers = [(b"content-type", METRICS_CONTENT_TYPE), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body, "more_body": False})
