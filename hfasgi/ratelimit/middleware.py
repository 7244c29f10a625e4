"""RateLimiter: requests and tokens per principal and window, reserved up front, settled on the real usage."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from hfasgi.body import DEFAULT_MAX_BODY_BYTES, ClientDisconnected, read_body, replay_receive
from hfasgi.catalog import ModelCatalog
from hfasgi.context import RequestContext, encode_json, get_context
from hfasgi.errors import GatewayError
from hfasgi.limits import Limit
from hfasgi.operations import CATALOG_ROUTES, DEFAULT_ROUTES, Operation, Route, Routes
from hfasgi.ratelimit.stores import Charge, Decision, LimiterStore, MemoryLimiterStore
from hfasgi.redis_client import STORE_ERRORS
from hfasgi.tokens import TokenPlan, UsageProbe, plan, with_maximum
from hfasgi.types import ASGIApp, Headers, Message, Receive, Scope, Send

__all__ = ["RateLimiter", "RateLimiterConfig"]

logger = logging.getLogger("hfasgi.ratelimit")

_UNLIMITED_ROUTES = CATALOG_ROUTES
_WARN_EVERY = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimiterConfig:
    """Configuration of :class:`RateLimiter`. A principal's own limits override the defaults here."""

    store: LimiterStore = field(default_factory=MemoryLimiterStore)
    """Where counters live: :class:`MemoryLimiterStore` (per process) or ``RedisLimiterStore`` (shared)."""
    rate_limit: Limit | None = None
    """Default requests per window for every principal (``Limit.parse("60/minute")``)."""
    token_limit: Limit | None = None
    """Default tokens per window for every principal."""
    default_max_tokens: int = 4096
    """Output tokens reserved for a request that names no maximum (and, on OpenAI routes, asked for)."""
    on_store_error: Literal["open", "closed"] = "open"
    """When the store fails: ``open`` serves the request uncounted (and logs), ``closed`` answers 503."""
    routes: Routes = DEFAULT_ROUTES
    """The gateway's routes: only inference requests are limited (model lists and ``/info`` are not)."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Largest body read to plan a token reservation (larger ones get 413)."""
    catalog: ModelCatalog | None = None
    """Gives the task of ``/models/{id}`` requests, so their output budget is planned for that task."""
    policy: str = "api"
    """The quota name in the ``RateLimit`` headers (``huggingface_hub`` shows it: "your 'api' rate limit")."""

    def __post_init__(self) -> None:
        if self.default_max_tokens < 1:
            raise ValueError(f"RateLimiterConfig.default_max_tokens must be >= 1, got {self.default_max_tokens}")
        if self.on_store_error not in ("open", "closed"):
            raise ValueError(
                f"RateLimiterConfig.on_store_error must be 'open' or 'closed', got {self.on_store_error!r}"
            )
        if not self.policy.isidentifier():
            raise ValueError(f"RateLimiterConfig.policy must be a word, got {self.policy!r}")


class RateLimiter:
    """Limit requests and tokens per principal (or per client address when auth is off).

    Every limited response carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
    ``X-RateLimit-Reset`` (seconds) for the request limit (``-Tokens`` variants for the token limit).
    A refusal is a 429 in the envelope (``error_type`` ``rate_limit``) with ``Retry-After`` and the IETF
    ``RateLimit``/``RateLimit-Policy`` headers that ``huggingface_hub`` turns into a precise message.

    Tokens are reserved before the request goes on (the prompt estimate plus its output budget, see
    :mod:`hfasgi.tokens`) and settled on the real usage when the response ends, errors or the client
    leaves, so concurrent streams can never spend more than the budget.
    """

    def __init__(self, app: ASGIApp, *, config: RateLimiterConfig) -> None:
        self.app = app
        self.config = config
        self._warned = 0.0
        self._settling: set[asyncio.Task[None]] = set()
        self._one_request: dict[Limit, Charge] = {}

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        s: Scope = scope
        if s["type"] != "http":
            await self.app(s, receive, send)
            return
        config = self.config
        try:
            op = config.routes.recognize(s)
        except GatewayError as err:
            await err.send(s, send)
            return
        if op is None or op.route in _UNLIMITED_ROUTES:
            await self.app(s, receive, send)
            return
        ctx = get_context(s)
        principal = ctx.principal
        requests = config.rate_limit if principal is None or principal.rate_limit is None else principal.rate_limit
        tokens = config.token_limit if principal is None or principal.token_limit is None else principal.token_limit
        if requests is None and tokens is None:
            await self.app(s, receive, send)
            return
        identity = principal.id if principal is not None else _anonymous(s)
        charges: list[Charge] = []
        if requests is not None:
            charge = self._one_request.get(requests)
            if charge is None:
                charge = self._one_request[requests] = Charge("requests", requests, 1)
            charges.append(charge)
        reservation: TokenPlan | None = None
        try:
            if tokens is not None:
                unread = ctx.body is None
                reservation = await self._plan(s, receive, ctx, op, tokens)
                if unread:
                    receive = replay_receive(s, receive)  # this layer read the body: the app still gets it
                charges.append(Charge("tokens", tokens, reservation.total))
            try:
                decision = await config.store.acquire(identity, charges)
            except STORE_ERRORS as exc:
                if config.on_store_error == "closed":
                    self._warn(exc, "refusing requests (on_store_error='closed')")
                    raise GatewayError(
                        503,
                        "rate_limit_unavailable",
                        "The rate limiter is not answering; try again shortly",
                        headers=[(b"retry-after", b"1")],
                    ) from None
                self._warn(exc, "serving requests uncounted (on_store_error='open')")
                if ctx.span is not None:
                    ctx.span.set_attribute("hfasgi.ratelimit.uncounted", True)
                await self.app(s, receive, send)
                return
            if ctx.span is not None:
                _annotate(ctx.span, charges, decision)
            if not decision.allowed:
                raise self._refusal(identity, charges, decision, reservation)
        except GatewayError as err:
            await err.send(s, send)
            return
        except ClientDisconnected:
            return
        headers = _headers(charges, decision)
        if reservation is None:

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), *headers]
                await send(message)

            await self.app(s, receive, send_with_headers)
            return
        await self._metered(s, receive, send, headers, identity, charges[-1], decision, reservation)

    async def _metered(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: Headers,
        identity: str,
        charge: Charge,
        decision: Decision,
        reservation: TokenPlan,
    ) -> None:
        """Run the request with a token reservation, then settle it on what the response really used."""
        probe = UsageProbe(reservation.prompt)

        async def send_metered(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *headers]
            probe.observe(message)
            await send(message)

        window_id = decision.states[-1].window_id
        try:
            await self.app(scope, receive, send_metered)
        except asyncio.CancelledError:  # the server gave up on the request: settle without waiting
            self._settle_later(identity, charge, window_id, probe.used() - reservation.total)
            raise
        except BaseException:
            await self._settle(identity, charge, window_id, probe.used() - reservation.total)
            raise
        await self._settle(identity, charge, window_id, probe.used() - reservation.total)

    def _settle_later(self, identity: str, charge: Charge, window_id: int, delta: int) -> None:
        task = asyncio.get_running_loop().create_task(self._settle(identity, charge, window_id, delta))
        self._settling.add(task)  # a strong reference until it is done
        task.add_done_callback(self._settling.discard)

    async def _settle(self, identity: str, charge: Charge, window_id: int, delta: int) -> None:
        if not delta:
            return
        try:
            await self.config.store.settle(identity, charge, window_id, delta)
        except STORE_ERRORS as exc:
            self._warn(exc, "a token reservation could not be settled")

    async def _plan(
        self, scope: Scope, receive: Receive, ctx: RequestContext, op: Operation, tokens: Limit
    ) -> TokenPlan:
        """The request's token reservation; on OpenAI routes an unbounded request gets an explicit maximum."""
        body = await read_body(scope, receive, self.config.max_body_bytes) if scope["method"] == "POST" else b""
        document: Any = None
        if body[:64].lstrip()[:1] in (b"{", b"[", b'"'):
            try:
                document = ctx.json()
            except GatewayError:
                document = None  # malformed JSON: the next layer that needs the body refuses it
        catalog = self.config.catalog
        if catalog is not None and op.route is Route.TASK and not op.task_forced:
            task = catalog.resolve(op.path_model).task
            if task is not None:
                op = replace(op, task=task)
        default = self.config.default_max_tokens
        cap = ctx.principal.max_tokens if ctx.principal is not None else None
        reservation = plan(op, document, default if cap is None else min(default, cap))
        if reservation.defaulted:  # a default never makes a request impossible: it shrinks to what fits
            room = max(1, (tokens.count - reservation.prompt) // reservation.choices)
            if reservation.output > room * reservation.choices:
                reservation = replace(reservation, output=room * reservation.choices)
            if reservation.inject is not None and isinstance(document, dict):
                document = with_maximum(document, reservation.inject, reservation.output // reservation.choices)
                ctx.set_json(document, encode_json(document))
        if reservation.total > tokens.count:
            raise GatewayError(
                400,
                "token_limit",
                f"This request may use up to {reservation.total} tokens (about {reservation.prompt} of prompt "
                f"and {reservation.output} of output), more than the whole token limit of {tokens.count} per "
                f"{tokens.window} s: lower max_tokens or shorten the prompt",
            )
        return reservation

    def _refusal(
        self, identity: str, charges: list[Charge], decision: Decision, reservation: TokenPlan | None
    ) -> GatewayError:
        assert decision.refused is not None
        charge = charges[decision.refused]
        state = decision.states[decision.refused]
        limit = charge.limit
        retry = state.reset_seconds()
        policy = self.config.policy if charge.name == "requests" else "tokens"
        if charge.name == "requests":
            message = f"Rate limit exceeded: {limit.count} requests per {limit.window} s for {identity!r}"
        else:
            message = (
                f"Token limit exceeded: this request may use up to {charge.cost} tokens and "
                f"{state.remaining(limit)} of {limit.count} per {limit.window} s remain for {identity!r}"
            )
        headers = [
            *_headers(charges, decision),
            (b"retry-after", str(retry).encode()),
            (b"ratelimit", f'"{policy}";r=0;t={retry}'.encode()),
            (b"ratelimit-policy", f'"fixed window";"{policy}";q={limit.count};w={limit.window}'.encode()),
        ]
        return GatewayError(429, "rate_limit", f"{message}; retry in {retry} s", headers=headers)

    def _warn(self, exc: BaseException, consequence: str) -> None:
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:  # once per 10 s, not once per request
            self._warned = now
            logger.warning("hfasgi: the rate-limit store failed (%s: %s); %s", type(exc).__name__, exc, consequence)


_REQUEST_NAMES = (b"x-ratelimit-limit", b"x-ratelimit-remaining", b"x-ratelimit-reset")
_TOKEN_NAMES = (b"x-ratelimit-limit-tokens", b"x-ratelimit-remaining-tokens", b"x-ratelimit-reset-tokens")


def _headers(charges: list[Charge], decision: Decision) -> Headers:
    """``X-RateLimit-*`` for the request limit, ``X-RateLimit-*-Tokens`` for the token limit.

    With a token limit only, the token counter is also sent as ``X-RateLimit-*``, so every limited
    response carries those three headers whatever the configuration.
    """
    out: Headers = []
    for charge, state in zip(charges, decision.states, strict=True):
        limit = charge.limit
        values = (
            b"%d" % limit.count,
            b"%d" % (limit.count - state.used if state.used < limit.count else 0),
            b"%d" % state.reset_seconds(),
        )
        if charge.name == "requests":
            out += zip(_REQUEST_NAMES, values, strict=True)
        else:
            if len(charges) == 1:
                out += zip(_REQUEST_NAMES, values, strict=True)
            out += zip(_TOKEN_NAMES, values, strict=True)
    return out


def _annotate(span: Any, charges: list[Charge], decision: Decision) -> None:
    """What is left of each limit on the request's span, and an event when the request is refused."""
    for charge, state in zip(charges, decision.states, strict=True):
        left = max(0, charge.limit.count - state.used)
        span.set_attribute(
            "hfasgi.ratelimit.remaining" if charge.name == "requests" else "hfasgi.ratelimit.remaining_tokens", left
        )
    if decision.refused is not None:
        refused = charges[decision.refused]
        retry = decision.states[decision.refused].reset_seconds()
        span.add_event(
            "hfasgi.ratelimit.rejected", {"hfasgi.ratelimit.limit": refused.name, "hfasgi.ratelimit.retry_after": retry}
        )


def _anonymous(scope: Scope) -> str:
    client = scope.get("client")
    return f"anonymous:{client[0]}" if client else "anonymous"
