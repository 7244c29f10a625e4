"""The OpenTelemetry SDK of the reference app, configured from the standard ``OTEL_*`` environment variables.

:func:`configure_from_environment` builds the providers (no I/O, no thread) and returns a
:class:`Telemetry`, a shared resource: the app's lifespan opens it (the span exporters and their
background processor start) and closes it (pending spans are flushed, the providers shut down).

=================================  ==============================================================
``OTEL_SDK_DISABLED``              ``true``: no SDK at all (spans and metrics are no-ops)
``OTEL_SERVICE_NAME``              ``service.name`` (default ``hfasgi``)
``OTEL_RESOURCE_ATTRIBUTES``       ``key=value,...`` (values percent-decoded)
``OTEL_TRACES_EXPORTER``           ``none`` (default), ``console``, ``otlp`` or a list of them
``OTEL_TRACES_SAMPLER`` (``_ARG``)  ``parentbased_always_on`` (default), ``always_on``, ``always_off``,
                                   ``traceidratio``, ``parentbased_always_off``, ``parentbased_traceidratio``
``OTEL_METRICS_EXPORTER``          ``prometheus`` (default: ``GET /metrics``) or ``none``
``OTEL_EXPORTER_OTLP_*``           read by the OTLP exporter itself (process environment; http/protobuf)
=================================  ==============================================================

The SDK is the ``otel`` extra (``pip install 'hfasgi[otel]'``); it is imported only when needed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from hfasgi import __version__
from hfasgi.observability.metrics import GatewayMetrics, PrometheusMetrics
from hfasgi.observability.tracing import TracingConfig

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.trace import TracerProvider

__all__ = ["Telemetry", "configure_from_environment"]

logger = logging.getLogger("hfasgi.observability")

_TRACE_EXPORTERS = ("console", "otlp")
_METRIC_EXPORTERS = ("prometheus",)
_INSTALL = "pip install 'hfasgi[otel]'"


class Telemetry:
    """The SDK providers of an app, and the Prometheus reader behind ``GET /metrics``.

    A shared resource (``async open()`` / ``async aclose()``): :attr:`tracer_provider` and
    :attr:`meter_provider` exist from the start (``None``: the OpenTelemetry globals, no-ops unless the
    process installed an SDK), span exporters are attached by :meth:`open`. :meth:`aclose` shuts the
    providers down for good: one Telemetry serves one lifespan.
    """

    def __init__(
        self,
        *,
        tracer_provider: SDKTracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        prometheus: PrometheusMetrics | None = None,
        exporters: tuple[str, ...] = (),
    ) -> None:
        self.tracer_provider: SDKTracerProvider | None = tracer_provider
        self.meter_provider = meter_provider
        self.prometheus = prometheus
        """What ``GET /metrics`` serves (:func:`~hfasgi.observability.send_metrics`); ``None``: no /metrics."""
        self.exporters = exporters
        """The span exporters :meth:`open` attaches (``console``, ``otlp``)."""
        self._opened = False
        self._metrics: GatewayMetrics | None = None

    def tracing_config(self, **options: Any) -> TracingConfig:
        """A :class:`TracingConfig` with these providers (``routes=``, ``sinks=``, ``catalog=``, ...)."""
        provider: TracerProvider | None = self.tracer_provider
        if "metrics" not in options and self.prometheus is not None and self.meter_provider is not None:
            # the Prometheus reader is this app's only reader: the histograms are aggregated in hfasgi
            if self._metrics is None:
                self._metrics = GatewayMetrics(self.meter_provider, readers=(self.prometheus.reader,))
            options["metrics"] = self._metrics
        return TracingConfig(tracer_provider=provider, meter_provider=self.meter_provider, **options)

    async def open(self) -> None:
        """Start the span exporters (a batch processor each: a background thread, off the request path)."""
        if self._opened or self.tracer_provider is None:
            return
        self._opened = True
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        for name in self.exporters:
            self.tracer_provider.add_span_processor(BatchSpanProcessor(_span_exporter(name)))

    async def aclose(self) -> None:
        """Flush pending spans and shut the providers down (in a thread: an export may wait on the network)."""
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        shutdown = getattr(self.meter_provider, "shutdown", None)
        if shutdown is not None:
            shutdown()


def configure_from_environment(environ: Mapping[str, str] | None = None) -> Telemetry:
    """The app's :class:`Telemetry` from ``OTEL_*`` variables (``environ``, default ``os.environ``).

    Raises ``ValueError`` on a value it does not know (at start-up, naming the variable), and
    ``RuntimeError`` when an exporter is asked for and the ``otel`` extra is not installed. With nothing
    asked for and no SDK installed, tracing and metrics are simply off.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return Telemetry()
    traces = _names(env, "OTEL_TRACES_EXPORTER", "none", _TRACE_EXPORTERS)
    metric_exporters = _names(env, "OTEL_METRICS_EXPORTER", "prometheus", _METRIC_EXPORTERS)
    if not traces and not metric_exporters:
        return Telemetry()
    needed = ["opentelemetry.sdk"]
    if metric_exporters:
        needed.append("opentelemetry.exporter.prometheus")
    if "otlp" in traces:
        protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        if protocol and protocol.strip() != "http/protobuf":
            raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: hfasgi exports OTLP as http/protobuf")
        needed.append("opentelemetry.exporter.otlp.proto.http")
    missing = [module for module in needed if not _installed(module)]
    if missing:
        if "OTEL_TRACES_EXPORTER" not in env and "OTEL_METRICS_EXPORTER" not in env:  # the defaults: no fuss
            logger.info("hfasgi: the OpenTelemetry SDK is not installed: no spans, no /metrics (%s)", _INSTALL)
            return Telemetry()
        raise RuntimeError(f"the OTEL_* settings need {missing[0]}, which is not installed: {_INSTALL}")

    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter
    from opentelemetry.sdk.metrics import MeterProvider as SDKMeterProvider
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider

    resource = _resource(env)
    tracer_provider = None
    if traces:
        sampler_name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
        sampler = _sampler(sampler_name, env.get("OTEL_TRACES_SAMPLER_ARG"))
        tracer_provider = SDKTracerProvider(sampler=sampler, resource=resource, shutdown_on_exit=False)
    prometheus = meter_provider = None
    if metric_exporters:
        prometheus = PrometheusMetrics()
        meter_provider = SDKMeterProvider(
            metric_readers=[prometheus.reader],
            resource=resource,
            exemplar_filter=AlwaysOffExemplarFilter(),  # Prometheus text carries none: do not collect them
            shutdown_on_exit=False,
        )
    return Telemetry(
        tracer_provider=tracer_provider, meter_provider=meter_provider, prometheus=prometheus, exporters=traces
    )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _names(env: Mapping[str, str], variable: str, default: str, known: tuple[str, ...]) -> tuple[str, ...]:
    """The exporters a variable lists (``none`` alone: none)."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in env.get(variable, default).split(",") if n.strip()))
    if names == ("none",) or not names:
        return ()
    for name in names:
        if name not in known:
            raise ValueError(
                f"{variable}={env[variable]!r}: {name!r} is not supported (use {', '.join(known)} or none)"
            )
    return names


def _resource_attributes(value: str) -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES``: ``key1=value1,key2=value2`` with percent-encoded values."""
    out: dict[str, str] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"OTEL_RESOURCE_ATTRIBUTES: {item.strip()!r} is not key=value")
        out[key.strip()] = unquote(raw.strip())
    return out


def _resource(env: Mapping[str, str]) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.version import __version__ as sdk_version

    attributes: dict[str, str] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": sdk_version,
        "service.version": __version__,
    }
    attributes.update(_resource_attributes(env.get("OTEL_RESOURCE_ATTRIBUTES", "")))
    attributes["service.name"] = env.get("OTEL_SERVICE_NAME", "").strip() or attributes.get("service.name") or "hfasgi"
    return Resource(attributes)


def _sampler(name: str, argument: str | None) -> Sampler:
    from opentelemetry.sdk.trace import sampling

    def ratio() -> float:
        try:
            rate = 1.0 if argument is None or not argument.strip() else float(argument)
        except ValueError:
            raise ValueError(f"OTEL_TRACES_SAMPLER_ARG={argument!r} is not a number") from None
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"OTEL_TRACES_SAMPLER_ARG={argument!r} must be between 0 and 1")
        return rate

    samplers: dict[str, Any] = {
        "always_on": lambda: sampling.ALWAYS_ON,
        "always_off": lambda: sampling.ALWAYS_OFF,
        "traceidratio": lambda: sampling.TraceIdRatioBased(ratio()),
        "parentbased_always_on": lambda: sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": lambda: sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": lambda: sampling.ParentBased(sampling.TraceIdRatioBased(ratio())),
    }
    make = samplers.get(name)
    if make is None:
        raise ValueError(f"OTEL_TRACES_SAMPLER={name!r} is not supported (use {', '.join(samplers)})")
    sampler: Sampler = make()
    return sampler


def _span_exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stdout)  # the stream of the moment, not the one at import
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise RuntimeError(
            f"OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http: {_INSTALL}"
        ) from None
    return OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_* of the process environment
