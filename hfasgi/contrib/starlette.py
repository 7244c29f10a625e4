"""Starlette adapter: the layers as ``Middleware`` entries, or installed on an app that already exists.

::

    from hfasgi.contrib.starlette import install, middleware

    app = Starlette(routes=routes, middleware=middleware(layers(gateway)), lifespan=my_lifespan)
    # my_lifespan opens the pool: async with hfasgi.stack.resources(*layer_resources(layers(gateway))): ...

    install(app, layers(gateway))  # or: on an existing app, which also opens the resources for you
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, cast

from hfasgi.stack import Layer, Resource, check_order, layer_resources
from hfasgi.stack import resources as open_resources

try:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.types import Lifespan
except ImportError as exc:  # pragma: no cover - tests hide the framework to check the message
    raise ImportError("hfasgi.contrib.starlette needs Starlette: pip install starlette") from exc

__all__ = ["install", "middleware"]


def middleware(layers: Sequence[Layer]) -> list[Middleware]:
    """``Middleware`` entries for ``Starlette(middleware=...)``, in the layers' order (the first is outermost).

    Raises ``ValueError`` when the layers contradict the canonical order. Starlette does not know the
    layers' resources: open them in the app's lifespan (see the module docstring), or use :func:`install`.
    """
    check_order(list(layers))
    return [Middleware(layer.cls, **layer.kwargs) for layer in layers]


def install(app: Starlette, layers: Sequence[Layer], *, resources: Sequence[Resource] | None = None) -> None:
    """Put ``layers`` in front of ``app`` (the first outermost) and open their resources in its lifespan.

    The layers are added with ``add_middleware`` in reverse (the last added is outermost), so they sit
    outside the app's own user middleware and see every request, 404s included; routes that are not
    the gateway's pass through to the app untouched. ``resources`` defaults to those the layers declare
    (:func:`~hfasgi.stack.layer_resources`): they are opened before the app's own lifespan starts and
    closed after it ends, whatever form that lifespan takes (``lifespan=``, FastAPI's ``on_startup``,
    included routers' lifespans), and its state passes through. Call it before the app starts serving.
    """
    check_order(list(layers))
    for layer in reversed(layers):
        app.add_middleware(layer.cls, **layer.kwargs)
    items = layer_resources(layers) if resources is None else list(resources)
    if items:
        app.router.lifespan_context = _opening(items, app.router.lifespan_context)


def _opening(items: list[Resource], inner: Lifespan[Any]) -> Lifespan[Any]:
    """``inner`` (the app's lifespan) run with ``items`` open around it."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[Mapping[str, Any] | None]:
        async with open_resources(*items), inner(app) as state:
            yield state

    return cast("Lifespan[Any]", lifespan)
