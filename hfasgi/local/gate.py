"""LocalModelGate: a 503 with ``Retry-After`` for requests to a managed local model while it is down.

It sits right inside the reformatter, in front of :class:`~hfasgi.forwarding.forwarder.HFForwarder`.
While the managed child is available it only watches the start of each answer (one attribute read per
message); if the child dies under a request, the forwarder's ``502 upstream_unavailable`` for that
upstream becomes the 503. While the child is known to be down or restarting, a request that the catalog
sends to it is answered at once: 503, ``error_type`` ``upstream_unavailable``, a ``Retry-After`` header
and the Hugging Face loading shape (``"Model … is currently loading"`` with ``estimated_time``), so HF
clients and a gateway in front of this one know to come back. A client that asked to wait
(``x-wait-for-model: true`` or ``options.wait_for_model``) waits for the restart instead, up to the
upstream's timeout. Requests for other upstreams, catalog routes and non-HTTP scopes pass untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from hfasgi.body import DEFAULT_MAX_BODY_BYTES, ClientDisconnected, read_body, replay_receive
from hfasgi.catalog import ModelCatalog
from hfasgi.context import RequestContext, get_context
from hfasgi.errors import ErrorType, GatewayError, send_error
from hfasgi.operations import CATALOG_ROUTES, DEFAULT_ROUTES, Route, Routes
from hfasgi.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["LocalGateConfig", "LocalModelGate", "Supervised"]

_JSON_BODY_ROUTES = (Route.CHAT, Route.COMPLETIONS, Route.EMBEDDINGS)
_WAIT_VALUES = (b"true", b"1", b"yes")


class Supervised(Protocol):
    """What the gate needs of a managed upstream (:class:`~hfasgi.local.process.ManagedProcess` has it)."""

    @property
    def available(self) -> bool:
        """Whether it answers right now."""
        ...

    @property
    def retry_after(self) -> int:
        """Whole seconds after which it should answer again."""
        ...

    async def wait_available(self, limit: float) -> bool:
        """Wait until it is available (at most ``limit`` seconds); return whether it is."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalGateConfig:
    """Configuration of :class:`LocalModelGate`."""

    process: Supervised
    """The managed child (a shared resource: the lifespan opens and closes it)."""
    upstream: str
    """The catalog name of the upstream the child serves."""
    catalog: ModelCatalog
    """The forwarder's catalog, to tell which requests go to :attr:`upstream`."""
    model: str
    """The model id clients use for the child's model (for the 503's message)."""
    routes: Routes = DEFAULT_ROUTES
    """The client-facing route table (the forwarder's)."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Larger request bodies are refused with 413 (the body is read only while the child is down)."""

    def __post_init__(self) -> None:
        if self.upstream not in self.catalog.upstreams:
            known = ", ".join(sorted(self.catalog.upstreams))
            raise ValueError(f"LocalGateConfig.upstream: {self.upstream!r} is not in the catalog (known: {known})")
        if self.max_body_bytes < 1:
            raise ValueError(f"LocalGateConfig.max_body_bytes must be >= 1, got {self.max_body_bytes}")


class LocalModelGate:
    """Answer 503 + ``Retry-After`` for the managed local model while it restarts. Pure ASGI; http only."""

    def __init__(self, app: ASGIApp, *, config: LocalGateConfig) -> None:
        self.app = app
        self.config = config
        catalog = config.catalog
        self._only = all(name == config.upstream for name in catalog.upstreams)
        """Every request the forwarder sends anywhere goes to the child: no model lookup needed."""
        self._wait_limit = catalog.upstreams[config.upstream].timeouts.total

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        s: Scope = scope
        if s["type"] != "http":
            await self.app(s, receive, send)
            return
        if self.config.process.available:
            await self.app(s, receive, self._watch(s, send))
            return
        ctx = get_context(s)
        try:
            targeted = await self._targets(s, receive, ctx)
        except ClientDisconnected:
            return
        except GatewayError:
            targeted = False  # the forwarder answers a bad request as it always does
        if ctx.body is not None:
            receive = replay_receive(s, receive)
        if targeted and self._wants_to_wait(s, ctx):
            targeted = not await self.config.process.wait_available(self._wait_limit)
        if targeted:
            await self._unavailable(s, send)
            return
        await self.app(s, receive, self._watch(s, send))

    def _watch(self, scope: Scope, send: Send) -> Send:
        """``send``, except that a 502 for the child's upstream while it is down becomes the 503."""
        process, upstream, ctx = self.config.process, self.config.upstream, get_context(scope)
        replaced = False

        async def watched(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the rest of the forwarder's 502
            if (
                message["type"] == "http.response.start"
                and message["status"] == 502
                and not process.available
                and ctx.upstream_name == upstream
            ):
                replaced = True
                await self._unavailable(scope, send)
                return
            await send(message)

        return watched

    async def _targets(self, scope: Scope, receive: Receive, ctx: RequestContext) -> bool:
        """Whether the forwarder would send this request to the child's upstream."""
        op = ctx.upstream_operation or self.config.routes.recognize(scope)
        if op is None:
            return False
        catalog = self.config.catalog
        if op.route in CATALOG_ROUTES:  # answered from the catalog, except an upstream's own model list
            return (
                op.route is Route.MODELS
                and not catalog.models
                and catalog.default_upstream.name == self.config.upstream
            )
        if self._only:
            return True
        model = op.path_model
        if model is None and op.route in _JSON_BODY_ROUTES:
            await read_body(scope, receive, self.config.max_body_bytes)
            document = ctx.json()
            if isinstance(document, dict) and isinstance(document.get("model"), str):
                model = document["model"]
        return catalog.resolve(model).upstream.name == self.config.upstream

    @staticmethod
    def _wants_to_wait(scope: Scope, ctx: RequestContext) -> bool:
        """Whether the client asked to wait for a loading model (header, or ``options.wait_for_model``)."""
        for name, value in scope["headers"]:
            if name.lower() == b"x-wait-for-model":
                return value.strip().lower() in _WAIT_VALUES
        if ctx.body is None or ctx.body[:1] != b"{":
            return False
        try:
            document = ctx.json()
        except GatewayError:
            return False
        options = document.get("options") if isinstance(document, dict) else None
        return isinstance(options, dict) and options.get("wait_for_model") is True

    async def _unavailable(self, scope: Scope, send: Send) -> None:
        seconds = self.config.process.retry_after
        message = (
            f"Model {self.config.model!r} is currently loading: its local server is restarting; retry in {seconds} s"
        )
        await send_error(
            scope,
            send,
            503,
            ErrorType.UPSTREAM_UNAVAILABLE,
            message,
            [(b"retry-after", str(seconds).encode())],
            {"estimated_time": float(seconds)},
        )
