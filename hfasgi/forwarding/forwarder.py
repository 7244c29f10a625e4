"""HFForwarder: the transport from the gateway to a Hugging Face-style upstream.

It knows transport, not meaning: it resolves the model in the catalog, builds the upstream URL,
swaps the client's credentials for the gateway's token, retries before the response has started,
streams the answer back chunk by chunk (SSE framed for HF clients), cancels the upstream when the
client leaves, and turns upstream failures into the error envelope. Dialect translation belongs to
``hfasgi.reformat``.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from hfasgi import __version__
from hfasgi.body import DEFAULT_MAX_BODY_BYTES, ClientDisconnected, read_body
from hfasgi.catalog import ModelCatalog, ModelRoute
from hfasgi.context import RequestContext, encode_json, get_context
from hfasgi.errors import ErrorType, GatewayError, send_error
from hfasgi.forwarding.headers import request_headers, response_headers
from hfasgi.forwarding.local import info_document, models_document, send_json
from hfasgi.forwarding.pool import UpstreamPool
from hfasgi.forwarding.retry import RetryPolicy, parse_retry_after
from hfasgi.forwarding.sse import SSEFramer
from hfasgi.forwarding.upstream import Upstream, UpstreamCall, UpstreamKind
from hfasgi.forwarding.upstream_errors import normalize_error_body, parse_loading
from hfasgi.forwarding.watchdog import Watchdog
from hfasgi.observability.tracing import end_upstream_span, inject_trace_context, upstream_span
from hfasgi.operations import DEFAULT_ROUTES, Dialect, Operation, Route, Routes
from hfasgi.types import ASGIApp, Headers, Receive, Scope, Send

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["ForwarderConfig", "HFForwarder", "UpstreamBroken"]

_MAX_ERROR_BODY = 256 * 1024
_SMALL_BODY = 256 * 1024
_JSON_BODY_ROUTES = (Route.CHAT, Route.COMPLETIONS, Route.EMBEDDINGS)
_CONNECTION_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError)
_SSE_HEADERS: Headers = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
_SSE_HEADER_NAMES = frozenset(name for name, _ in _SSE_HEADERS)


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwarderConfig:
    """Configuration of :class:`HFForwarder`."""

    catalog: ModelCatalog
    """Upstreams and models; ``ModelCatalog.single(Upstream(...))`` for one upstream and no list."""
    pool: UpstreamPool = field(default_factory=UpstreamPool)
    """The shared HTTP client pool, opened and closed by the application's lifespan."""
    routes: Routes = DEFAULT_ROUTES
    """The client-facing route table (set a prefix to serve the gateway under a path)."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """Retries before the response has started."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """Larger request bodies are refused with 413."""

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1:
            raise ValueError(f"ForwarderConfig.max_body_bytes must be >= 1, got {self.max_body_bytes}")

    @classmethod
    def to(
        cls,
        url: str,
        *,
        kind: UpstreamKind | str = UpstreamKind.ROUTER,
        token: str | None = None,
        default_model: str | None = None,
        **options: Any,
    ) -> ForwarderConfig:
        """A configuration for one upstream and no model list: ``ForwarderConfig.to("http://tgi:80", kind="tgi")``."""
        upstream = Upstream(url=url, kind=UpstreamKind(kind), token=token)
        return cls(catalog=ModelCatalog.single(upstream, default_model=default_model), **options)


class UpstreamBroken(RuntimeError):
    """The upstream failed after the response had started and no in-band signal was possible."""


class HFForwarder:
    """Forward recognised inference requests to their upstream; pass everything else to ``app``.

    Pure ASGI; lifespan and websocket scopes pass through untouched.
    """

    def __init__(self, app: ASGIApp, *, config: ForwarderConfig) -> None:
        self.app = app
        self.config = config
        self._client_timeouts: dict[str, aiohttp.ClientTimeout] = {}

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        s: Scope = scope
        if s["type"] != "http":
            await self.app(s, receive, send)
            return
        try:
            op = self.config.routes.recognize(s)
        except GatewayError as err:
            await err.send(s, send)
            return
        if op is None:
            await self.app(s, receive, send)
            return
        translated = get_context(s).upstream_operation
        exchange = _Exchange(self, s, receive, send, op if translated is None else translated)
        try:
            call = await exchange.prepare()
        except ClientDisconnected:
            return
        except GatewayError as err:
            await err.send(s, send)
            return
        if call is not None:
            await exchange.run(call)

    def client_timeout(self, upstream: Upstream) -> aiohttp.ClientTimeout:
        """aiohttp's per-request timeout for ``upstream`` (connect only; the rest is one deadline)."""
        timeout = self._client_timeouts.get(upstream.name)
        if timeout is None:
            connect = upstream.timeouts.connect
            timeout = self._client_timeouts[upstream.name] = aiohttp.ClientTimeout(
                total=None, connect=connect, sock_connect=connect
            )
        return timeout


class _Exchange:
    """One request's trip upstream and back (per-request state lives here, never on the middleware)."""

    __slots__ = (
        "body",
        "ctx",
        "disconnected",
        "error_extra",
        "error_payload",
        "framer",
        "fwd",
        "headers",
        "op",
        "receive",
        "response",
        "route",
        "scope",
        "send",
        "span",
        "started",
        "upstream_started",
    )

    def __init__(self, fwd: HFForwarder, scope: Scope, receive: Receive, send: Send, op: Operation) -> None:
        self.fwd = fwd
        self.scope = scope
        self.receive = receive
        self.send = send
        self.op = op
        self.ctx: RequestContext = get_context(scope)
        self.body: bytes = b""
        self.headers: dict[str, str] = {}
        self.route: ModelRoute | None = None
        self.response: aiohttp.ClientResponse | None = None
        self.framer: SSEFramer | None = None
        self.started = False
        self.disconnected = False
        self.error_payload: bytes | None = None
        self.error_extra: Headers | None = None
        self.span: Span | None = None
        """The CLIENT span of the current upstream attempt (only while tracing)."""
        self.upstream_started: float | None = None

    # ------------------------------------------------------------------ before the upstream
    async def prepare(self) -> UpstreamCall | None:
        """Read the body, resolve the model and build the upstream call (``None``: answered locally)."""
        op, cfg, ctx = self.op, self.fwd.config, self.ctx
        if ctx.deferred_error is not None:
            raise ctx.deferred_error
        catalog = cfg.catalog
        body = b""
        if self.scope["method"] == "POST":
            body = await read_body(self.scope, self.receive, cfg.max_body_bytes)
        route = op.route
        document: Any = None
        if route in _JSON_BODY_ROUTES:
            document = ctx.json()
            if not isinstance(document, dict):
                raise GatewayError(400, ErrorType.INVALID_REQUEST, "The request body must be a JSON object")
            model = op.path_model or document.get("model")
            if model is not None and not isinstance(model, str):
                raise GatewayError(400, ErrorType.INVALID_REQUEST, "'model' must be a string")
        elif route is Route.MODELS:
            return await self._models(catalog)
        elif route is Route.BILLING_USAGE or route is Route.BILLING_COST:
            raise GatewayError(
                404, ErrorType.NOT_FOUND, "Billing is not enabled on this gateway (usage metering is off)"
            )
        elif route is Route.INFO and catalog.default_upstream.kind is not UpstreamKind.TGI:
            await send_json(self.send, 200, info_document(catalog, __version__))
            return None
        else:
            model = op.path_model
        resolved = self.route = catalog.resolve(model)
        upstream = resolved.upstream
        ctx.model = resolved.model
        ctx.upstream_name = upstream.name
        ctx.upstream_model = resolved.upstream_model
        task = op.task if op.task_forced or resolved.task is None else resolved.task
        call = upstream.call(op, resolved.upstream_model, task or op.task)
        if call.body_model is not None and document is not None and document.get("model") != call.body_model:
            document = {**document, "model": call.body_model}
            body = encode_json(document)
            ctx.set_json(document, body)
        self.body = body
        self.headers = request_headers(self.scope["headers"], upstream.token, ctx.request_id)
        return call

    async def _models(self, catalog: ModelCatalog) -> UpstreamCall | None:
        """``GET /v1/models[/{id}]``: the catalog's list when there is one, else the default upstream's."""
        only = self.op.path_model
        if catalog.models or catalog.default_upstream.kind is UpstreamKind.SERVERLESS:
            doc = models_document(catalog, only)
            if doc is None:
                raise GatewayError(404, ErrorType.MODEL_NOT_FOUND, f"Model {only!r} is not served by this gateway")
            await send_json(self.send, 200, doc)
            return None
        upstream = catalog.default_upstream
        self.route = ModelRoute(only or "", upstream, only or "", None)
        self.headers = request_headers(self.scope["headers"], upstream.token, self.ctx.request_id)
        call = upstream.call(self.op, only or "", None)
        return UpstreamCall(f"{call.url}/{only}" if only else call.url, None)

    # ------------------------------------------------------------------ the exchange
    async def run(self, call: UpstreamCall) -> None:
        """Send the request upstream (with retries) and relay the answer; never raises before the start."""
        assert self.route is not None
        upstream = self.route.upstream
        loop = asyncio.get_running_loop()
        failure: str | None = None
        try:
            with Watchdog(self.receive, upstream.timeouts.total) as dog:
                response = await self._request(call, upstream, loop)
                await self._relay(response, upstream, dog)
            if dog.reason == "disconnect":
                self.disconnected = True
            elif dog.reason == "timeout":
                failure = "timeout"
                if self.started:
                    await self._fail_stream(
                        f"Upstream {upstream.name!r} stopped sending (timeout)", ErrorType.UPSTREAM_TIMEOUT
                    )
                else:
                    await send_error(
                        self.scope,
                        self.send,
                        504,
                        ErrorType.UPSTREAM_TIMEOUT,
                        f"Upstream {upstream.name!r} did not answer within {upstream.timeouts.total:g} s",
                    )
        except GatewayError as err:
            failure = err.error_type
            if self.started:
                raise
            await err.send(self.scope, self.send)
        except _CONNECTION_ERRORS as exc:
            failure = type(exc).__name__
            if not self.started:
                await send_error(
                    self.scope,
                    self.send,
                    502,
                    ErrorType.UPSTREAM_UNAVAILABLE,
                    f"Upstream {upstream.name!r} failed: {_describe(exc)}",
                )
            elif not self.disconnected:
                await self._fail_stream(
                    f"Upstream {upstream.name!r} connection lost: {_describe(exc)}", ErrorType.UPSTREAM_UNAVAILABLE
                )
        except BaseException as exc:
            failure = type(exc).__name__
            raise
        finally:
            upstream_response = self.response
            if upstream_response is not None:
                if self.disconnected or not upstream_response.content.at_eof():
                    upstream_response.close()  # abandon the connection: the upstream sees the cancel at once
                else:
                    upstream_response.release()
            if self.upstream_started is not None:  # the end of the upstream's answer
                self.ctx.upstream_duration = time.perf_counter() - self.upstream_started
            self._end_attempt(self.ctx.upstream_status, failure)

    def _end_attempt(self, status: int | None, error: str | None = None) -> None:
        """End the current attempt's CLIENT span, if tracing."""
        span = self.span
        if span is not None:
            self.span = None
            end_upstream_span(span, status, error)

    async def _request(
        self, call: UpstreamCall, upstream: Upstream, loop: asyncio.AbstractEventLoop
    ) -> aiohttp.ClientResponse:
        """The upstream response, after the retries the policy allows."""
        policy = self.fwd.config.retry
        session = self.fwd.config.pool.session()
        method = self.scope["method"]
        data = self.body or None
        timeout = self.fwd.client_timeout(upstream)
        loading_deadline: float | None = None
        ctx = self.ctx
        traced = ctx.span is not None
        attempt = 0
        self.upstream_started = time.perf_counter()
        while True:
            attempt += 1
            ctx.upstream_attempts = attempt
            if traced:
                span = self.span = upstream_span(ctx, upstream, method, call.url, attempt)
                inject_trace_context(ctx.span if span is None else span, self.headers)
            try:
                response = await session.request(
                    method, call.url, data=data, headers=self.headers, timeout=timeout, allow_redirects=False
                )
            except _CONNECTION_ERRORS as exc:
                self._end_attempt(None, type(exc).__name__)
                if attempt >= policy.attempts:
                    raise GatewayError(
                        502,
                        ErrorType.UPSTREAM_UNAVAILABLE,
                        f"Upstream {upstream.name!r} is unreachable after {attempt} attempt(s): {_describe(exc)}",
                    ) from None
                await asyncio.sleep(policy.delay(attempt))
                continue
            status = ctx.upstream_status = response.status
            if status == 503:
                payload = await response.read()
                estimate = parse_loading(payload)
                if estimate is not None:
                    if loading_deadline is None:
                        budget = upstream.timeouts.total if self._wants_to_wait() else policy.loading_wait
                        loading_deadline = loop.time() + budget
                    remaining = loading_deadline - loop.time()
                    if remaining > 0:
                        response.release()
                        self._end_attempt(status)
                        await asyncio.sleep(min(max(estimate, 0.05), remaining))
                        continue
                    # Still loading after the wait: the client gets the 503 with a Retry-After.
                    self.error_extra = [(b"retry-after", str(max(1, math.ceil(estimate))).encode())]
                self.error_payload = payload
            elif status == 429 and attempt < policy.attempts:
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                if retry_after is not None and retry_after <= policy.max_retry_after:
                    response.release()
                    self._end_attempt(status)
                    await asyncio.sleep(retry_after)
                    continue
            self.response = response
            return response

    def _wants_to_wait(self) -> bool:
        """Whether the client asked to wait for a loading model (header or ``options.wait_for_model``)."""
        for name, value in self.scope["headers"]:
            if name.lower() == b"x-wait-for-model":
                return value.strip().lower() in (b"true", b"1", b"yes")
        if self.body[:1] == b"{":
            try:
                document = self.ctx.json()
            except GatewayError:
                return False
            options = document.get("options") if isinstance(document, dict) else None
            return isinstance(options, dict) and options.get("wait_for_model") is True
        return False

    # ------------------------------------------------------------------ back to the client
    async def _relay(
        self,
        response: aiohttp.ClientResponse,
        upstream: Upstream,
        dog: Watchdog,
    ) -> None:
        status = response.status
        if status >= 400:
            payload = self.error_payload
            if payload is None:
                payload = await response.content.read(_MAX_ERROR_BODY)
            dog.finishing()
            await self._send_error_response(response, payload, self.error_extra)
            return
        send = self.send
        headers = response_headers(response.raw_headers, upstream.token)
        content_type = response.headers.get("content-type", "")
        if content_type.startswith("text/event-stream"):
            headers = [h for h in headers if h[0] not in _SSE_HEADER_NAMES] + _SSE_HEADERS
            framer = self.framer = SSEFramer(openai=self.op.dialect is Dialect.OPENAI, secret=upstream.token)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            self.started = True
            idle = upstream.timeouts.read
            dog.set_timeout(idle)
            async for chunk in response.content.iter_any():
                out = framer.feed(chunk)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                dog.set_timeout(idle)
            dog.finishing()
            await send({"type": "http.response.body", "body": framer.end(), "more_body": False})
            return
        length = response.content_length
        encoded = "content-encoding" in response.headers
        if length is not None and length <= _SMALL_BODY and not encoded:
            # the hot path, inlined (a helper coroutine here measured ~5,000 instructions per request)
            payload = await response.read()
            headers.append((b"content-length", str(len(payload)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            self.started = True
            dog.finishing()
            await send({"type": "http.response.body", "body": payload, "more_body": False})
            return
        first = b""
        if encoded:  # decoded here, so its length is unknown until read: buffer up to _SMALL_BODY of it
            parts: list[bytes] = []
            size = 0
            while size <= _SMALL_BODY and (part := await response.content.readany()):
                parts.append(part)
                size += len(part)
            first = b"".join(parts)
            if response.content.at_eof():
                await self._send_whole(status, headers, first, dog)
                return
        elif length is not None:
            headers.append((b"content-length", str(length).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        self.started = True
        if first:
            await send({"type": "http.response.body", "body": first, "more_body": True})
        try:
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except _CONNECTION_ERRORS as exc:
            raise UpstreamBroken(f"upstream {upstream.name!r} broke mid-body: {_describe(exc)}") from exc
        dog.finishing()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_whole(self, status: int, headers: Headers, body: bytes, dog: Watchdog) -> None:
        """A complete response in one body message, with its true ``content-length``."""
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        self.started = True
        dog.finishing()
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    async def _send_error_response(
        self, response: aiohttp.ClientResponse, payload: bytes, extra: Headers | None = None
    ) -> None:
        """An upstream error, as the envelope, with the upstream's status (and useful headers)."""
        upstream = self.route.upstream if self.route else None
        body = normalize_error_body(
            response.status, payload, response.headers.get("content-type", ""), upstream.token if upstream else None
        )
        token = upstream.token if upstream else None
        headers = [h for h in response_headers(response.raw_headers, token) if h[0] != b"content-type"]
        if extra:
            names = {name for name, _ in extra}
            headers = [h for h in headers if h[0] not in names] + extra
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await self.send({"type": "http.response.start", "status": response.status, "headers": headers})
        self.started = True
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    async def _fail_stream(self, message: str, error_type: str) -> None:
        """End a started response after an upstream failure: an SSE error event, or an abort."""
        if self.framer is None:
            raise UpstreamBroken(message)
        event = self.framer.fail(message, error_type)
        await self.send({"type": "http.response.body", "body": event, "more_body": False})


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
