"""Litestar adapter: :class:`HFPlugin` gives a Litestar app the gateway under a path prefix.

::

    from hfasgi.app import layers
    from hfasgi.contrib.litestar import HFPlugin

    gateway = ForwarderConfig.to("http://tgi:8080", kind="tgi", routes=Routes("/hf"))
    app = Litestar(route_handlers=[...], plugins=[HFPlugin(layers(gateway))])

Why a mount and not Litestar middleware: Litestar middleware (``middleware=[DefineMiddleware(...)]``)
is built per route handler after routing, so it never sees a path the app has no route for (the
gateway's ``/hf/v1/chat/completions`` would be a 404 before any layer ran), never sees the lifespan,
and is instantiated once per route. A plugin cannot wrap the app's top-level ASGI handler either
(``on_app_init`` runs before it exists). So the plugin registers one ASGI *mount* at the prefix: every
request under it, whatever its method, reaches one instance of the layer stack, built once here; the
app's own routes never touch the layers; the app's guards, CORS and app-level middleware apply to the
mount like to any route. The shared resources are opened by an ``on_startup`` hook (first) and closed
by an ``on_shutdown`` hook (last), because the lifespan never reaches route handlers.

Two Litestar quirks to know: a mount prefix is matched as a string prefix, so ``/hf`` also takes
``/hfoo/...`` from parametrised routes (choose a prefix no other route starts with); and a mount at
``/`` would shadow every parametrised route, so the plugin needs a prefix. To put the layers in front
of the *whole* app (the gateway at the root, request ids on the app's own routes and 404s), wrap it:
``Lifespan(stack(Litestar(...), *layers), resources=layer_resources(layers))`` (:mod:`hfasgi.stack`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from hfasgi.app import send_unrouted
from hfasgi.operations import Routes
from hfasgi.stack import Layer, Resource, layer_resources, stack
from hfasgi.types import ASGIApp, Receive, Scope, Send

try:
    from litestar.config.app import AppConfig
    from litestar.handlers import ASGIRouteHandler
    from litestar.plugins import InitPlugin
except ImportError as exc:  # pragma: no cover - tests hide the framework to check the message
    raise ImportError("hfasgi.contrib.litestar needs Litestar: pip install litestar") from exc

__all__ = ["HFPlugin"]


class HFPlugin(InitPlugin):
    """Serve ``layers`` (outermost first) under ``path`` of a Litestar app, as one ASGI mount.

    ``path`` defaults to the prefix of the forwarder's :class:`~hfasgi.operations.Routes`; an explicit
    one must equal it. Paths under the prefix that are no gateway route get the envelope's 404 (or 405
    with ``Allow``); websockets there are closed with 4404. ``resources`` defaults to those the layers
    declare (:func:`~hfasgi.stack.layer_resources`). Building the plugin does no I/O.
    """

    __slots__ = ("gateway", "path", "resources")

    def __init__(
        self, layers: Sequence[Layer], *, path: str | None = None, resources: Sequence[Resource] | None = None
    ) -> None:
        routes = _routes_of(layers)
        if path is None:
            path = routes.prefix if routes is not None else ""
        path = path.rstrip("/")
        if not path.startswith("/"):
            raise ValueError(
                "HFPlugin needs a path prefix such as '/hf' (the forwarder's Routes('/hf'), or path=...); "
                "for a gateway at the root, wrap the app: stack(Litestar(...), *layers)"
            )
        if routes is not None and routes.prefix != path:
            raise ValueError(f"HFPlugin path {path!r} must equal the forwarder's Routes prefix {routes.prefix!r}")
        self.path = path
        """The mount prefix."""
        self.resources: tuple[Resource, ...] = tuple(layer_resources(layers) if resources is None else resources)
        """What the app's startup opens and its shutdown closes."""
        self.gateway: ASGIApp = stack(_NotOurs(routes or Routes(path)), *layers)
        """The layer stack the mount calls (one instance for every request)."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Register the mount and the hooks that open and close the resources."""
        app_config.route_handlers.append(self._mount())
        app_config.on_startup.insert(0, self._open)
        app_config.on_shutdown.append(self._close)
        return app_config

    def _mount(self) -> ASGIRouteHandler:
        gateway, prefix = self.gateway, self.path

        async def hfasgi_gateway(scope: Any, receive: Any, send: Any) -> None:
            # Litestar hands a mount the rest of the path plus a trailing "/": the layers route on the whole path.
            scope["path"] = prefix + scope["path"].rstrip("/")
            await gateway(scope, receive, send)

        handler = ASGIRouteHandler(prefix, is_mount=True, copy_scope=True, name=f"hfasgi:{prefix}")
        return handler(hfasgi_gateway)

    async def _open(self) -> None:
        for item in self.resources:
            await item.open()

    async def _close(self) -> None:
        async with contextlib.AsyncExitStack() as exits:  # all of them, in reverse, even if one fails
            for item in self.resources:
                exits.push_async_callback(item.aclose)


def _routes_of(layers: Sequence[Layer]) -> Routes | None:
    """The route table of the first layer whose config has one (the forwarder's)."""
    for layer in layers:
        for value in layer.kwargs.values():
            routes = getattr(value, "routes", None)
            if isinstance(routes, Routes):
                return routes
    return None


class _NotOurs:
    """The mount's innermost app: what no layer answered is not a gateway route (404, or 405 with Allow)."""

    def __init__(self, routes: Routes) -> None:
        self.routes = routes

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        s: Scope = scope
        if s["type"] in ("http", "websocket"):
            await send_unrouted(s, send, self.routes)
