"""UsageMeter: one usage record per inference request, written before the client has its last byte.

The layer sits inside the limiter (the caller is known) and outside the cache (a hit is metered too).
It watches the response as it goes out (:class:`~hfasgi.observability.genai.ResponseWatch`: a chunk
reference per message, nothing parsed until the end) and, when the last body message is about to leave,
or the client has gone, or the app failed, it builds a :class:`~hfasgi.usage.record.UsageRecord` and
hands it to the ledger's synchronous ``submit`` (an append to a local file), so a request whose answer
was delivered always has its record, even if the process dies the next instant.

Tokens are the upstream's own count (``usage``, TGI ``details``; for a translated answer, the usage the
upstream gave the reformatter). What the upstream did not report is estimated: a stream's output as one
token per event, a prompt as :func:`hfasgi.tokens.plan` bounds it (UTF-8 bytes / 3). Cost comes from the
:class:`~hfasgi.usage.prices.PriceTable`; a cache hit costs nothing (the gateway paid once already),
and an error answer uses and costs nothing. ``GET {tasks}billing/usage`` and ``POST {tasks}billing/cost``
are answered here (:mod:`hfasgi.usage.billing`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from hfasgi.body import ClientDisconnected
from hfasgi.context import RequestContext, get_context
from hfasgi.errors import GatewayError
from hfasgi.observability.genai import ResponseWatch
from hfasgi.operations import CATALOG_ROUTES, DEFAULT_ROUTES, Operation, Route, Routes
from hfasgi.tokens import plan
from hfasgi.types import ASGIApp, Message, Receive, Scope, Send
from hfasgi.usage.billing import send_cost, send_usage
from hfasgi.usage.prices import PriceTable
from hfasgi.usage.record import UsageRecord

__all__ = ["UsageLedgerLike", "UsageMeter", "UsageMeterConfig"]

logger = logging.getLogger("hfasgi.usage")

_BILLING = (Route.BILLING_USAGE, Route.BILLING_COST)


class UsageLedgerLike(Protocol):
    """Where records go (:class:`~hfasgi.usage.ledger.UsageLedger`): a cheap synchronous ``submit``."""

    def submit(self, record: UsageRecord) -> None: ...

    async def flush(self) -> Any: ...

    async def query(self, key_id: str | None, limit: int, offset: int) -> Any: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageMeterConfig:
    """Configuration of :class:`UsageMeter`."""

    ledger: UsageLedgerLike
    """Receives every record (``submit`` must not block nor raise)."""
    prices: PriceTable = field(default_factory=PriceTable)
    """Nano-USD per token or per request, by model; unpriced models cost 0."""
    routes: Routes = DEFAULT_ROUTES
    """The gateway's routes (catalog routes are not metered)."""
    default_max_tokens: int = 4096
    """Only for the prompt estimate of a stream that reports no usage (see :func:`hfasgi.tokens.plan`)."""

    def __post_init__(self) -> None:
        if not callable(getattr(self.ledger, "submit", None)):
            raise ValueError(f"UsageMeterConfig.ledger must have a submit(record) method, got {self.ledger!r}")
        if not isinstance(self.prices, PriceTable):
            raise ValueError(f"UsageMeterConfig.prices must be a PriceTable, got {self.prices!r}")


class UsageMeter:
    """Meter every inference request into the ledger (see the module docstring). Pure ASGI; http only."""

    def __init__(self, app: ASGIApp, *, config: UsageMeterConfig) -> None:
        self.app = app
        self.config = config
        self._submit = config.ledger.submit
        self._warned = 0.0

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        s: Scope = scope
        if s["type"] != "http":
            await self.app(s, receive, send)
            return
        try:
            op = self.config.routes.recognize(s)
        except GatewayError as err:  # a malformed model path: answered by the first layer that sees it
            await err.send(s, send)
            return
        if op is None or op.route in CATALOG_ROUTES:
            if op is not None and op.route in _BILLING:
                await self._billing(s, receive, send, op)
                return
            await self.app(s, receive, send)
            return
        ctx = get_context(s)
        watch = ResponseWatch(count_events=True)
        started = time.time()
        recorded = False

        def record() -> None:
            nonlocal recorded
            recorded = True
            try:
                self._submit(self._record(ctx, op, watch, started))
            except Exception:  # a record must never break its request
                self._warn("metering a request failed")

        async def metered(message: Message) -> None:
            if message.get("more_body", False):  # a body message with more to come: the hot path of a stream
                chunk = message.get("body")
                if chunk:
                    if watch.first_event is not None:  # a stream's next event: ResponseWatch.add, inline
                        watch.recent.append(chunk)
                        watch.events += chunk.count(b"data:")
                    else:
                        watch.add(chunk)
                await send(message)
                return
            kind = message["type"]
            if kind == "http.response.body":
                chunk = message.get("body")
                if chunk:
                    watch.add(chunk)
                watch.complete = True
                if not recorded:
                    record()  # before the last byte leaves: a delivered answer always has its record
            elif kind == "http.response.start":
                watch.start(message)
            await send(message)

        try:
            await self.app(s, receive, metered)
        finally:
            if not recorded:
                record()  # the client left, or the app failed, before the end

    def _record(self, ctx: RequestContext, op: Operation, watch: ResponseWatch, started: float) -> UsageRecord:
        watch.close()
        status = watch.status
        model = ctx.model or op.path_model
        inputs = outputs = 0
        if 0 < status < 400:
            found_in, found_out = watch.input_tokens, watch.output_tokens
            upstream = ctx.upstream_usage  # a translated answer: the upstream's own counts come first
            if upstream is not None:
                found_in = upstream[0] if upstream[0] is not None else found_in
                found_out = upstream[1] if upstream[1] is not None else found_out
            if found_out is None and watch.stream:
                found_out = watch.events  # a stream that reported nothing: one token per event
            outputs = found_out or 0
            if found_in is None:  # the upstream gave no prompt count (TGI, task routes): estimated
                found_in = self._prompt_estimate(ctx, op)
            inputs = found_in or 0
        cache_hit = ctx.cache_hit is True
        cost = 0 if cache_hit or not 0 < status < 400 else self.config.prices.cost(model, inputs, outputs)
        principal = ctx.principal
        task = op.task
        upstream_op = ctx.upstream_operation
        if task is None and upstream_op is not None:
            task = upstream_op.task
        return UsageRecord(
            request_id=ctx.request_id,
            timestamp=started,
            key_id=principal.id if principal is not None else None,
            model=model,
            task=task,
            route=op.route.value,
            status=status or 499,
            input_tokens=inputs,
            output_tokens=outputs,
            cost_nano_usd=cost,
            cache_hit=cache_hit,
            stream=watch.stream,
            upstream=ctx.upstream_name,
        )

    def _prompt_estimate(self, ctx: RequestContext, op: Operation) -> int:
        try:
            document = ctx.json() if ctx.body else None
        except GatewayError:
            return 0
        return plan(op, document, self.config.default_max_tokens).prompt if isinstance(document, dict) else 0

    async def _billing(self, scope: Scope, receive: Receive, send: Send, op: Operation) -> None:
        ctx = get_context(scope)
        try:
            if ctx.deferred_error is not None:
                raise ctx.deferred_error
            if op.route is Route.BILLING_USAGE:
                await send_usage(scope, send, self.config.ledger, ctx.principal)
            else:
                await send_cost(scope, receive, send, self.config.prices)
        except GatewayError as err:
            await err.send(scope, send)
        except ClientDisconnected:
            return

    def _warn(self, what: str) -> None:
        now = time.monotonic()
        if now - self._warned >= 10.0:
            self._warned = now
            logger.warning("hfasgi: %s", what, exc_info=True)
