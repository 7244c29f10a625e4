"""See everything, leak nothing: spans, metrics, the audit log and upstream health.

:class:`Tracing` (the outermost layer) makes one SERVER span per request and one
:class:`RequestRecord` at its end, which :class:`GatewayMetrics` and the sinks (:class:`AuditLog`)
consume; :func:`configure_from_environment` sets the OpenTelemetry SDK up from ``OTEL_*`` variables.
"""

from hfasgi.observability.audit import AuditConfig, AuditLog
from hfasgi.observability.genai import PROVIDER, ResponseWatch, operation_name
from hfasgi.observability.health import UpstreamHealth
from hfasgi.observability.metrics import METRICS_CONTENT_TYPE, GatewayMetrics, PrometheusMetrics, send_metrics
from hfasgi.observability.otel_setup import Telemetry, configure_from_environment
from hfasgi.observability.record import RequestRecord
from hfasgi.observability.tracing import Sink, Tracing, TracingConfig

__all__ = [
    "METRICS_CONTENT_TYPE",
    "PROVIDER",
    "AuditConfig",
    "AuditLog",
    "GatewayMetrics",
    "PrometheusMetrics",
    "RequestRecord",
    "ResponseWatch",
    "Sink",
    "Telemetry",
    "Tracing",
    "TracingConfig",
    "UpstreamHealth",
    "configure_from_environment",
    "operation_name",
    "send_metrics",
]
