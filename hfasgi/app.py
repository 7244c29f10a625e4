"""The reference app: the layers assembled in the canonical order in front of a tiny inner app.

``create_app(Settings.load())`` is what ``hfasgi serve`` runs. The inner app answers the lifespan
(opening and closing the upstream pool), ``GET /health``, and an enveloped 404/405 for anything else.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from hfasgi import __version__
from hfasgi.catalog import ModelCatalog
from hfasgi.envelope import ErrorEnvelope
from hfasgi.errors import ErrorType, send_error
from hfasgi.forwarding.forwarder import ForwarderConfig, HFForwarder
from hfasgi.forwarding.local import send_json
from hfasgi.forwarding.pool import UpstreamPool
from hfasgi.forwarding.retry import RetryPolicy
from hfasgi.forwarding.upstream import Timeouts, Upstream, UpstreamKind
from hfasgi.operations import Routes
from hfasgi.request_id import RequestId
from hfasgi.settings import Settings
from hfasgi.stack import Layer, Resource, layer_resources, resources, stack
from hfasgi.types import ASGIApp, Receive, Scope, Send

__all__ = ["create_app", "layers", "send_unrouted"]

_HEALTH_TTL = 5.0
_PROBE_TIMEOUT = 2.0


def build_catalog(settings: Settings) -> ModelCatalog:
    """The model catalog of ``settings``: the default upstream, plus the catalog file if any."""
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
        return catalog
    return ModelCatalog.single(default, default_model=settings.default_model)


def layers(forwarder: ForwarderConfig) -> list[Layer]:
    """The reference app's layers, outermost first (the forwarder's layer declares its pool as a resource)."""
    return [Layer(RequestId), Layer(ErrorEnvelope), Layer(HFForwarder, {"config": forwarder}, (forwarder.pool,))]


def create_app(settings: Settings | None = None) -> ASGIApp:
    """The reference gateway as an ASGI app (with a lifespan that opens and closes the upstream pool)."""
    settings = settings or Settings.load()
    catalog = build_catalog(settings)
    forwarder = ForwarderConfig(
        catalog=catalog,
        pool=UpstreamPool(),
        max_body_bytes=settings.max_body_bytes,
        retry=RetryPolicy(attempts=settings.upstream_attempts, loading_wait=settings.loading_wait),
    )
    gateway_layers = layers(forwarder)
    inner = _GatewayApp(catalog, forwarder.routes, forwarder.pool, layer_resources(gateway_layers))
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

    def __init__(self, catalog: ModelCatalog, routes: Routes, pool: UpstreamPool, shared: list[Resource]) -> None:
        self.catalog = catalog
        self.routes = routes
        self.pool = pool
        self.shared = shared
        self.started = time.monotonic()
        self._health: tuple[float, dict[str, str]] | None = None

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        s: Scope = scope
        if s["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if s["type"] == "http" and s["path"] == self.routes.prefix + "/health" and s["method"] in ("GET", "HEAD"):
            document = await self._health_document()
            await send_json(send, 503 if document["status"] == "unhealthy" else 200, document)
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

    async def _health_document(self) -> dict[str, Any]:
        """Liveness plus the upstreams' state, probed at most every 5 s: 503 when no upstream answers."""
        now = time.monotonic()
        cached = self._health
        if cached is None or now - cached[0] > _HEALTH_TTL:
            probes = await asyncio.gather(*(self._probe(u) for u in self.catalog.upstreams.values()))
            cached = self._health = (now, dict(zip(self.catalog.upstreams, probes, strict=True)))
        providers = cached[1]
        answering = sum(v == "healthy" for v in providers.values())
        status = "healthy" if answering == len(providers) else "degraded" if answering else "unhealthy"
        document: dict[str, Any] = {"status": status}
        if status == "unhealthy":  # what TGI answers (hf_api.md §8.15): HF clients read `error`
            document.update(error="unhealthy", error_type="healthcheck")
        return {
            **document,
            "uptime": int(now - self.started),
            "models": len(self.catalog.models),
            "provider_status": providers,
            "version": __version__,
        }

    async def _probe(self, upstream: Upstream) -> str:
        """``healthy`` when the upstream answers its health URL below 500 within 2 s."""
        pool = self.pool
        headers = {"authorization": f"Bearer {upstream.token}"} if upstream.token else {}
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT):
                async with pool.session().get(upstream.health_url(), headers=headers) as response:
                    await response.read()
                    return "healthy" if response.status < 500 else "unhealthy"
        except Exception:  # timeouts, refused connections, TLS errors: all mean "not answering"
            return "unhealthy"
