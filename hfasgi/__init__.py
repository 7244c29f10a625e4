"""hfasgi: pure-ASGI middlewares that make any ASGI app a Hugging Face-compatible inference gateway.

The public names, importable from here; the framework adapters live in :mod:`hfasgi.contrib`.
"""

__version__ = "0.1.0"

from hfasgi.app import create_app, layers, layers_from_settings
from hfasgi.auth import ApiKeyAuth, AuthConfig
from hfasgi.cache import CacheConfig, MemoryCacheStore, RedisCacheStore, ResponseCache
from hfasgi.catalog import ModelCatalog, ModelEntry
from hfasgi.context import RequestContext, get_context
from hfasgi.envelope import ErrorEnvelope
from hfasgi.errors import ErrorType, GatewayError, send_error
from hfasgi.forwarding.forwarder import ForwarderConfig, HFForwarder
from hfasgi.forwarding.pool import UpstreamPool
from hfasgi.forwarding.retry import RetryPolicy
from hfasgi.forwarding.upstream import Timeouts, Upstream, UpstreamKind
from hfasgi.limits import Limit
from hfasgi.observability import AuditConfig, AuditLog, GatewayMetrics, RequestRecord, Tracing, TracingConfig
from hfasgi.operations import Dialect, Operation, Route, Routes
from hfasgi.principal import Principal
from hfasgi.ratelimit import RateLimiter, RateLimiterConfig
from hfasgi.reformat import ReformatterConfig, ResponseReformatter, TasksAPI, TasksAPIConfig
from hfasgi.request_id import RequestId, RequestIdConfig
from hfasgi.settings import Settings
from hfasgi.stack import CANONICAL_ORDER, Layer, Lifespan, Resource, layer_resources, resources, stack
from hfasgi.usage.ledger import UsageLedger
from hfasgi.usage.meter import UsageMeter, UsageMeterConfig
from hfasgi.usage.prices import Price, PriceTable
from hfasgi.usage.record import UsageRecord
from hfasgi.validation import RequestValidator, ValidatorConfig

__all__ = [
    "CANONICAL_ORDER",
    "ApiKeyAuth",
    "AuditConfig",
    "AuditLog",
    "AuthConfig",
    "CacheConfig",
    "Dialect",
    "ErrorEnvelope",
    "ErrorType",
    "ForwarderConfig",
    "GatewayError",
    "GatewayMetrics",
    "HFForwarder",
    "Layer",
    "Lifespan",
    "Limit",
    "MemoryCacheStore",
    "ModelCatalog",
    "ModelEntry",
    "Operation",
    "Price",
    "PriceTable",
    "Principal",
    "RateLimiter",
    "RateLimiterConfig",
    "RedisCacheStore",
    "ReformatterConfig",
    "RequestContext",
    "RequestId",
    "RequestIdConfig",
    "RequestRecord",
    "RequestValidator",
    "Resource",
    "ResponseCache",
    "ResponseReformatter",
    "RetryPolicy",
    "Route",
    "Routes",
    "Settings",
    "TasksAPI",
    "TasksAPIConfig",
    "Timeouts",
    "Tracing",
    "TracingConfig",
    "Upstream",
    "UpstreamKind",
    "UpstreamPool",
    "UsageLedger",
    "UsageMeter",
    "UsageMeterConfig",
    "UsageRecord",
    "ValidatorConfig",
    "__version__",
    "create_app",
    "get_context",
    "layer_resources",
    "layers",
    "layers_from_settings",
    "resources",
    "send_error",
    "stack",
]
