"""The reference app: the layers assembled in the canonical order in front of a tiny inner app.

``create_app(Settings.load())`` is what ``hfasgi serve`` runs. The inner app answers the lifespan
(opening and closing the shared resources), ``GET /health``, ``/health/upstream``, ``/metrics``, and an
enveloped 404/405 for anything else.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from hfasgi import __version__
from hfasgi.auth import (
    ApiKeyAuth,
    AuthConfig,
    ChainKeyStore,
    FileKeyStore,
    KeyStore,
    MemoryKeyStore,
    RedisKeyStore,
)
from hfasgi.cache import CacheConfig, MemoryCacheStore, RedisCacheStore
from hfasgi.catalog import ModelCatalog
from hfasgi.envelope import ErrorEnvelope
from hfasgi.errors import ErrorType, send_error
from hfasgi.forwarding.forwarder import ForwarderConfig, HFForwarder
from hfasgi.forwarding.pool import UpstreamPool
from hfasgi.forwarding.retry import RetryPolicy
from hfasgi.forwarding.upstream import Timeouts, Upstream, UpstreamKind
from hfasgi.limits import Limit
from hfasgi.local.wiring import add_local_model, install_local_model
from hfasgi.observability import (
    AuditConfig,
    AuditLog,
    PrometheusMetrics,
    Telemetry,
    Tracing,
    TracingConfig,
    configure_from_environment,
    send_metrics,
)
from hfasgi.observability.health import HealthConfig, UpstreamHealth, send_health, send_upstream_health
from hfasgi.operations import DEFAULT_ROUTES, Routes
from hfasgi.ratelimit import MemoryLimiterStore, RateLimiter, RateLimiterConfig, RedisLimiterStore
from hfasgi.redis_client import RedisConnection
from hfasgi.reformat import ReformatterConfig, ResponseReformatter, TasksAPI, TasksAPIConfig
from hfasgi.request_id import RequestId
from hfasgi.settings import Settings
from hfasgi.stack import Layer, Resource, layer_resources, resources, stack
from hfasgi.types import ASGIApp, Receive, Scope, Send
from hfasgi.usage.meter import UsageMeter, UsageMeterConfig
from hfasgi.usage.prices import PriceTable
from hfasgi.validation import RequestValidator, ValidatorConfig

__all__ = [
    "build_auth",
    "build_cache",
    "build_limiter",
    "build_meter",
    "build_tracing",
    "create_app",
    "layers",
    "layers_from_settings",
    "send_unrouted",
]


def build_catalog(settings: Settings) -> ModelCatalog:
    """The model catalog of ``settings``: the default upstream, plus the catalog file if any, plus the local model
    (``local_model``: see :func:`hfasgi.local.wiring.add_local_model`)."""
    timeouts = Timeouts(total=settings.upstream_timeout, read=min(120.0, settings.upstream_timeout))
    default = Upstream(
        name="default",
        kind=UpstreamKind(settings.upstream_kind),
        url=settings.upstream_url,
        token=settings.hf_token,
        timeouts=timeouts,
    )
    if settings.models_file:
        catalog = ModelCatalog.from_toml(settings.models_file, default)
        if settings.default_model:
            catalog.default_model = settings.default_model
    else:
        catalog = ModelCatalog.single(default, default_model=settings.default_model)
    return add_local_model(catalog, settings) if settings.local_model else catalog


def layers(
    forwarder: ForwarderConfig,
    *,
    auth: AuthConfig | None = None,
    limiter: RateLimiterConfig | None = None,
    meter: UsageMeterConfig | None = None,
    validator: ValidatorConfig | None = None,
    cache: CacheConfig | None = None,
    reformatter: ReformatterConfig | bool = True,
    tasks_api: TasksAPIConfig | None = None,
    tracing: TracingConfig | None = None,
    tracing_resources: tuple[Resource, ...] = (),
) -> list[Layer]:
    """The reference app's layers, outermost first; each declares the shared resources it needs.

    ``reformatter=True`` translates between dialects with the forwarder's catalog and routes (``False``:
    no translation, every client must speak its upstream's dialect). ``tasks_api`` serves the
    provider-style task API (``/hf/tasks/...``). ``tracing`` puts :class:`Tracing` outermost (spans,
    metrics, the audit log), with the resources it needs (the SDK's :class:`Telemetry`, an :class:`AuditLog`).
    ``meter`` records every inference request's usage in its ledger (and serves the billing endpoints);
    ``cache`` answers deterministic requests from its store.
    """
    found = [Layer(RequestId), Layer(ErrorEnvelope)]
    if tracing is not None:
        found.insert(0, Layer(Tracing, {"config": tracing}, tracing_resources))
    if tasks_api is not None:
        found.append(Layer(TasksAPI, {"config": tasks_api}))
    if auth is not None:
        auth_resources = tuple(r for r in (auth.store, auth.jwt) if r is not None)
        found.append(Layer(ApiKeyAuth, {"config": auth}, auth_resources))
    if limiter is not None:
        found.append(Layer(RateLimiter, {"config": limiter}, (limiter.store,)))
    if meter is not None:
        ledger = meter.ledger
        opened = (ledger,) if callable(getattr(ledger, "open", None)) else ()
        found.append(Layer(UsageMeter, {"config": meter}, opened))  # type: ignore[arg-type]
    if validator is not None:
        found.append(Layer(RequestValidator, {"config": validator}))
    if cache is not None:
        found.append(cache.middleware)
    if reformatter is True:
        reformatter = ReformatterConfig(
            catalog=forwarder.catalog, routes=forwarder.routes, max_body_bytes=forwarder.max_body_bytes
        )
    if isinstance(reformatter, ReformatterConfig):
        found.append(Layer(ResponseReformatter, {"config": reformatter}))
    found.append(Layer(HFForwarder, {"config": forwarder}, (forwarder.pool,)))
    return found


def build_auth(
    settings: Settings, catalog: ModelCatalog, redis: RedisConnection | None, *, routes: Routes = DEFAULT_ROUTES
) -> AuthConfig | None:
    """The authentication of ``settings`` (``None`` with ``no_auth``); raises ``ValueError`` when none is set up."""
    if settings.no_auth:
        return None
    if not settings.auth_configured:
        raise ValueError(
            "no API keys are configured (HFASGI_API_KEYS, HFASGI_API_KEYS_FILE, HFASGI_KEY_STORE=redis or "
            "HFASGI_JWT_JWKS_FILE): the gateway would spend its Hugging Face token for anyone. Configure keys "
            "(`hfasgi keys add NAME --file keys.toml`), or pass --no-auth (HFASGI_NO_AUTH=1) to run it open."
        )
    stores: list[KeyStore] = []
    if settings.api_keys:
        stores.append(MemoryKeyStore.from_keys(k for k in settings.api_keys.split(",") if k.strip()))
    if settings.api_keys_file:
        stores.append(FileKeyStore(settings.api_keys_file))
    if settings.key_store == "redis" and redis is not None:
        stores.append(RedisKeyStore(redis))
    store: KeyStore | None = stores[0] if len(stores) == 1 else ChainKeyStore(stores) if stores else None
    verifier = None
    if settings.jwt_jwks_file:
        from hfasgi.auth.jwt import JWTConfig, JWTVerifier

        verifier = JWTVerifier(
            JWTConfig(jwks_file=settings.jwt_jwks_file, issuer=settings.jwt_issuer, audience=settings.jwt_audience)
        )
    return AuthConfig(store=store, jwt=verifier, catalog=catalog, routes=routes, max_body_bytes=settings.max_body_bytes)


def build_limiter(
    settings: Settings,
    catalog: ModelCatalog,
    redis: RedisConnection | None,
    auth: bool,
    *,
    routes: Routes = DEFAULT_ROUTES,
) -> RateLimiterConfig | None:
    """The rate limiter of ``settings``: present when limits are set, or when keys may carry their own."""
    if settings.rate_limit is None and settings.token_limit is None and not auth:
        return None
    return RateLimiterConfig(
        store=RedisLimiterStore(redis) if redis is not None else MemoryLimiterStore(),
        rate_limit=Limit.parse(settings.rate_limit) if settings.rate_limit else None,
        token_limit=Limit.parse(settings.token_limit) if settings.token_limit else None,
        default_max_tokens=settings.default_max_tokens,
        on_store_error="closed" if settings.rate_limit_failure == "closed" else "open",
        max_body_bytes=settings.max_body_bytes,
        catalog=catalog,
        routes=routes,
    )


def build_cache(
    settings: Settings, catalog: ModelCatalog, redis: RedisConnection | None, *, routes: Routes = DEFAULT_ROUTES
) -> CacheConfig | None:
    """The response cache of ``settings`` (``None`` with ``cache_ttl = 0``): in Redis when it is configured."""
    if not settings.cache_ttl > 0:
        return None
    ttl = settings.cache_ttl
    store = RedisCacheStore(redis, ttl) if redis is not None else MemoryCacheStore(settings.cache_max_entries, ttl)
    return CacheConfig(store=store, catalog=catalog, routes=routes, ttl=ttl, max_body_bytes=settings.max_body_bytes)


def build_meter(settings: Settings, routes: Routes = DEFAULT_ROUTES) -> UsageMeterConfig | None:
    """Usage metering of ``settings`` (``None`` with ``usage_db`` off): the ledger, its spool and the prices."""
    if settings.usage_db is None:
        return None
    from hfasgi.usage.ledger import UsageLedger
    from hfasgi.usage.stores import store_for

    database = settings.usage_db
    spool = settings.usage_spool
    if spool is None:
        spool = "hfasgi-usage.spool" if "://" in database else database + ".spool"
    prices = PriceTable.from_toml(settings.prices_file) if settings.prices_file else PriceTable()
    ledger = UsageLedger(store_for(database), spool)
    return UsageMeterConfig(ledger=ledger, prices=prices, routes=routes, default_max_tokens=settings.default_max_tokens)


def layers_from_settings(settings: Settings, forwarder: ForwarderConfig) -> list[Layer]:
    """The reference app's layers as ``settings`` configure them, around ``forwarder`` (whose routes they share).

    This is how an existing app gets the same keys, limits and Redis as ``hfasgi serve``
    (``install(app, layers_from_settings(settings, gateway))``). Raises ``ValueError`` when no way of
    authenticating callers is configured and ``no_auth`` is not set.
    """
    redis = RedisConnection(settings.redis_url) if settings.redis_url else None
    routes, catalog = forwarder.routes, forwarder.catalog
    auth = build_auth(settings, catalog, redis, routes=routes)
    limiter = build_limiter(settings, catalog, redis, auth is not None, routes=routes)
    validator = None
    if settings.validate:
        validator = ValidatorConfig(routes=routes, catalog=catalog, max_body_bytes=settings.max_body_bytes)
    tasks_api = None
    if settings.tasks_prefix:
        tasks_api = TasksAPIConfig(
            catalog=catalog, prefix=routes.prefix + settings.tasks_prefix, max_body_bytes=settings.max_body_bytes
        )
    tracing, observers = build_tracing(settings, catalog, routes)
    return layers(
        forwarder,
        auth=auth,
        limiter=limiter,
        meter=build_meter(settings, routes),
        validator=validator,
        cache=build_cache(settings, catalog, redis, routes=routes),
        tasks_api=tasks_api,
        tracing=tracing,
        tracing_resources=observers,
    )


def build_tracing(
    settings: Settings, catalog: ModelCatalog, routes: Routes = DEFAULT_ROUTES, environ: Mapping[str, str] | None = None
) -> tuple[TracingConfig, tuple[Resource, ...]]:
    """Spans, metrics and the audit log of ``settings`` and the ``OTEL_*`` variables, with the resources they need.

    The SDK comes from ``OTEL_*`` (:func:`configure_from_environment`); ``HFASGI_METRICS=0`` turns the
    Prometheus metrics off; ``HFASGI_AUDIT_LOG`` adds the audit log, told every secret it must never write
    (each upstream's token and the configured API keys).
    """
    env = dict(os.environ if environ is None else environ)
    if not settings.metrics:
        env["OTEL_METRICS_EXPORTER"] = "none"
    telemetry = configure_from_environment(env)
    observers: list[Resource] = [telemetry]
    sinks = []
    if settings.audit_log:
        secrets = [u.token for u in catalog.upstreams.values() if u.token]
        for entry in (settings.api_keys or "").split(","):
            key = entry.partition("=")[2] if "=" in entry else entry
            if key.strip():
                secrets.append(key.strip())
        audit_config = AuditConfig(destination=settings.audit_log, bodies=settings.audit_bodies, secrets=tuple(secrets))
        audit = AuditLog(audit_config)
        sinks.append(audit.sink)
        observers.append(audit)
    config = telemetry.tracing_config(routes=routes, sinks=tuple(sinks), catalog=catalog)
    return config, tuple(observers)


def create_app(settings: Settings | None = None) -> ASGIApp:
    """The reference gateway as an ASGI app (with a lifespan that opens and closes the shared resources).

    Raises ``ValueError`` when no way of authenticating callers is configured and ``no_auth`` is not set.
    """
    settings = settings or Settings.load()
    catalog = build_catalog(settings)
    forwarder = ForwarderConfig(
        catalog=catalog,
        pool=UpstreamPool(),
        max_body_bytes=settings.max_body_bytes,
        retry=RetryPolicy(attempts=settings.upstream_attempts, loading_wait=settings.loading_wait),
    )
    gateway_layers = layers_from_settings(settings, forwarder)
    if settings.local_model:  # the child `transformers serve`: its gate before the forwarder, its process a resource
        gateway_layers = install_local_model(gateway_layers, settings, forwarder)
    health = UpstreamHealth(catalog, forwarder.pool, HealthConfig.for_interval(settings.health_interval))
    shared = [*layer_resources(gateway_layers), health]  # the pool opens first, the probes close first
    prometheus = next((r.prometheus for r in shared if isinstance(r, Telemetry)), None)
    inner = _GatewayApp(catalog, forwarder.routes, health, shared, prometheus)
    return stack(inner, *gateway_layers)


async def send_unrouted(scope: Scope, send: Send, routes: Routes) -> None:
    """Answer a request no layer took: 405 with ``Allow`` on a gateway path, else 404 (websockets: 4404)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 4404})
        return
    path, method = scope["path"], scope["method"]
    allowed = routes.allowed_methods(path)
    if allowed:
        message = f"Method {method} is not allowed on {path}; use {' or '.join(allowed)}"
        allow = [(b"allow", ", ".join(allowed).encode())]
        await send_error(scope, send, 405, ErrorType.METHOD_NOT_ALLOWED, message, allow)
        return
    await send_error(scope, send, 404, ErrorType.NOT_FOUND, f"No route {method} {path} on this gateway")


class _GatewayApp:
    """What is left after the layers: lifespan, ``/health``, and enveloped 404/405."""

    def __init__(
        self,
        catalog: ModelCatalog,
        routes: Routes,
        health: UpstreamHealth,
        shared: list[Resource],
        prometheus: PrometheusMetrics | None = None,
    ) -> None:
        self.catalog = catalog
        self.prometheus = prometheus
        self._metrics_path = routes.prefix + "/metrics"
        self.routes = routes
        self.health = health
        self.shared = shared
        self.started = time.monotonic()
        self._health_path = routes.prefix + "/health"
        self._upstream_path = routes.prefix + "/health/upstream"

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        s: Scope = scope
        if s["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if s["type"] == "http" and s["method"] in ("GET", "HEAD"):
            path = s["path"]
            if path == self._health_path:
                models = len(self.catalog.models)
                await send_health(s, send, self.health, started=self.started, version=__version__, models_count=models)
                return
            if path == self._upstream_path:
                await send_upstream_health(s, send, self.health)
                return
            if path == self._metrics_path and self.prometheus is not None:
                await send_metrics(s, send, self.prometheus)
                return
        if s["type"] in ("http", "websocket"):
            await send_unrouted(s, send, self.routes)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        shared = resources(*self.shared)
        try:
            await shared.__aenter__()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
            raise
        try:
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        finally:
            await shared.__aexit__(None, None, None)
        await send({"type": "lifespan.shutdown.complete"})
