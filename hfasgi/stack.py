"""Composing the layers: :class:`Layer`, :func:`stack`, the canonical order and the shared resources.

The canonical order, outermost first::

    Tracing, RequestId, ErrorEnvelope, TasksAPI, ApiKeyAuth, RateLimiter, UsageMeter,
    RequestValidator, ResponseCache, ResponseReformatter, HFForwarder

:func:`stack` wraps an app so the list reads top-down (the first layer is the outermost), and refuses
an order that contradicts the canonical one. Layers it does not know may go anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hfasgi.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CANONICAL_ORDER", "Layer", "Lifespan", "Resource", "layer_resources", "resources", "stack"]

CANONICAL_ORDER: tuple[str, ...] = (
    "Tracing",
    "RequestId",
    "ErrorEnvelope",
    "TasksAPI",
    "ApiKeyAuth",
    "RateLimiter",
    "UsageMeter",
    "RequestValidator",
    "ResponseCache",
    "ResponseReformatter",
    "HFForwarder",
)
"""Class names of the pack's layers, outermost first."""


@dataclass(frozen=True, slots=True)
class Layer:
    """A middleware class and its keyword arguments: what every framework adapter consumes."""

    cls: Any
    kwargs: dict[str, Any] = field(default_factory=dict)
    resources: tuple[Resource, ...] = ()
    """Shared resources the layer needs open while it serves (see :func:`layer_resources`)."""

    def __call__(self, app: ASGIApp) -> ASGIApp:
        """Instantiate the middleware around ``app``."""
        wrapped: ASGIApp = self.cls(app, **self.kwargs)
        return wrapped

    @property
    def name(self) -> str:
        """The middleware class name."""
        return str(getattr(self.cls, "__name__", repr(self.cls)))


def check_order(layers: list[Layer]) -> None:
    """Raise ``ValueError`` when known layers are out of the canonical order."""
    ranks = [(CANONICAL_ORDER.index(layer.name), layer.name) for layer in layers if layer.name in CANONICAL_ORDER]
    for (rank_a, name_a), (rank_b, name_b) in zip(ranks, ranks[1:], strict=False):
        if rank_a >= rank_b:
            raise ValueError(
                f"layer order: {name_a} must come after {name_b} (canonical order, outermost first: "
                f"{', '.join(CANONICAL_ORDER)})"
            )


def stack(app: ASGIApp, *layers: Layer) -> ASGIApp:
    """Wrap ``app`` in ``layers``, the first one outermost, after checking their order."""
    check_order(list(layers))
    for layer in reversed(layers):
        app = layer(app)
    return app


class Resource(Protocol):
    """Something shared by requests that must be opened before serving and closed after (a pool, a store)."""

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...


def layer_resources(layers: Iterable[Layer]) -> list[Resource]:
    """The resources ``layers`` declare, each once, in order: what the app's lifespan must open and close."""
    found: dict[int, Resource] = {}
    for layer in layers:
        for item in layer.resources:
            found.setdefault(id(item), item)
    return list(found.values())


@contextlib.asynccontextmanager
async def resources(*items: Resource) -> AsyncIterator[None]:
    """Open ``items`` in order, close them in reverse order (also when opening one of them fails)."""
    async with contextlib.AsyncExitStack() as exits:
        for item in items:
            await item.open()
            exits.push_async_callback(item.aclose)
        yield


class Lifespan:
    """Open and close shared resources around an app's own lifespan (for plain ASGI apps).

    ``Lifespan(app, resources=[pool])`` answers the lifespan protocol: at startup it opens the
    resources, then runs ``app``'s own startup if ``app`` speaks lifespan; at shutdown it does both in
    reverse. A failure is reported as ``lifespan.startup.failed`` with the reason.
    """

    def __init__(self, app: ASGIApp, *, resources: list[Resource]) -> None:
        self.app = app
        self.resources = list(resources)

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        s: Scope = scope
        if s["type"] != "lifespan":
            await self.app(s, receive, send)
            return
        await receive()  # lifespan.startup
        to_app: asyncio.Queue[Message] = asyncio.Queue()
        from_app: asyncio.Queue[Message] = asyncio.Queue()

        async def run_app() -> None:
            try:
                await self.app(s, to_app.get, from_app.put)
            except Exception as exc:  # apps that do not speak lifespan raise on its scope
                await from_app.put({"type": "unsupported", "message": str(exc)})
            else:
                await from_app.put({"type": "unsupported", "message": "returned"})

        exits = contextlib.AsyncExitStack()
        task = asyncio.get_running_loop().create_task(run_app())
        try:
            await exits.enter_async_context(resources(*self.resources))
            await to_app.put({"type": "lifespan.startup"})
            reply = await from_app.get()
            if reply["type"] == "lifespan.startup.failed":
                raise RuntimeError(reply.get("message") or "the application's startup failed")
        except Exception as exc:
            task.cancel()
            await exits.aclose()
            await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
            raise  # as Starlette does: servers and test managers both see the failure
        app_speaks_lifespan = reply["type"] == "lifespan.startup.complete"
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        failure = ""
        if app_speaks_lifespan:
            await to_app.put({"type": "lifespan.shutdown"})
            reply = await from_app.get()
            if reply["type"] == "lifespan.shutdown.failed":
                failure = reply.get("message") or "the application's shutdown failed"
        await task
        try:
            await exits.aclose()
        except Exception as exc:
            failure = failure or f"{type(exc).__name__}: {exc}"
        if failure:
            await send({"type": "lifespan.shutdown.failed", "message": failure})
        else:
            await send({"type": "lifespan.shutdown.complete"})
