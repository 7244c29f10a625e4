"""A faithful fake Hugging Face-style inference server: a pure ASGI app, standard library only.

One ``FakeHF`` serves, on one port, the URL shapes of four upstream kinds (hf_api.md §1-§4):

* router: ``POST /v1/chat/completions``, ``POST /hf-inference/models/{id}[/pipeline/{task}]``,
  ``POST /hf-inference/models/{id}/v1/chat/completions``, ``GET /v1/models[/{id}]``;
* serverless: ``POST /models/{id}``, ``POST /pipeline/{task}/{id}``, ``POST /models/{id}/v1/chat/completions``;
* TGI: ``POST /`` (a list, or SSE with ``"stream": true``; the task of ``model_id`` when that is not
  text-generation, e.g. TEI's embeddings), ``/generate``, ``/generate_stream`` (no ``[DONE]``),
  ``/v1/chat/completions``, ``/v1/completions``, ``GET /info``, ``GET /health`` (200, empty);
* OpenAI / transformers serve: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``GET /v1/models``.

Answers are deterministic functions of the request (see ``shapes``). Behaviours are chosen per request by
headers: ``x-fake-scenario`` (comma-separated directives, grammar in :class:`Scenario`), ``x-fake-key``
(the key for attempt counting, stream bookkeeping and gates; default ``"<METHOD> <path>"``),
``x-fake-quirks: transformers`` (``transformers serve`` quirks; also ``FakeHF(quirks="transformers")``) and
``x-fake-only: openai|tgi|router|serverless`` (serve only that kind's routes, 404 ``{"detail": "Not Found"}``
for the others, so a test proves which dialect a gateway spoke; also ``FakeHF(only=...)``, see :func:`serves`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from . import shapes
from .shapes import JSON, dumps

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
T = TypeVar("T")

#: ``fake/<task>`` → task for every task the fake knows.
DEFAULT_TASKS: dict[str, str] = {f"fake/{task}": task for task in shapes.TASKS}
STREAM_ERROR = "Request failed during generation: fake stream error"
PROBE_AGENT = "hfasgi-health/"
"""The ``User-Agent`` prefix of the gateway's health probes."""
ONLY_KINDS = ("openai", "tgi", "router", "serverless")
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it (header names lower-cased, repeated headers joined by ``, ``)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: JSON


@dataclass
class StreamState:
    """Bookkeeping of one SSE response (``fake.streams[key]``)."""

    key: str
    path: str
    events_sent: int = 0  # ``data:`` events written, ``[DONE]`` and error events included
    finished: bool = False  # the whole stream was sent
    cancelled: bool = False  # the client went away before the end
    aborted: bool = False  # the fake dropped the connection on purpose (``stream-drop``)


@dataclass
class Scenario:
    """Directives of the ``x-fake-scenario`` header, comma-separated (``N`` counts attempts per key).

    ``loading:N[:SECS]`` 503 "currently loading" with ``estimated_time`` SECS (0.2) for the first N attempts
    (blocks SECS instead when ``x-wait-for-model: true`` or ``options.wait_for_model``);
    ``rate:N[:SECS]`` 429 with ``Retry-After: SECS`` (1); ``drop:N`` close the connection without a response;
    ``slow:SECS`` wait before answering; ``stall:SECS`` send headers and the first event (or, not streaming,
    the headers) then wait; ``error:STATUS[:STYLE[:N]]`` answer an error in a style of
    ``shapes.ERROR_STYLES`` (``tgi``; every attempt unless N); ``stream-error`` / ``stream-error-openai``
    two events then an in-stream error; ``stream-drop`` two events then drop the connection;
    ``nospace`` ``data:{...}`` framing; ``gate`` first event, then wait for ``fake.release(key)``;
    ``gate-after:N`` the same after N events (for translations that may hold one event back);
    ``chunks:N`` generate N tokens (overrides max tokens); ``delay:SECS`` pause between events.
    """

    loading: tuple[int, float] | None = None
    rate: tuple[int, float] | None = None
    drop: int = 0
    slow: float = 0.0
    stall: float = 0.0
    error: tuple[int, str, int | None] | None = None
    stream_error: str | None = None
    stream_drop: bool = False
    nospace: bool = False
    gate: bool = False
    gate_after: int = 0
    chunks: int | None = None
    delay: float = 0.0

    @classmethod
    def parse(cls, header: str) -> Scenario:
        """Parse the header; ``ValueError`` on an unknown or malformed directive."""
        scen = cls()
        for item in filter(None, (part.strip() for part in header.split(","))):
            name, *args = item.split(":")
            if name in ("loading", "rate"):
                count = int(args[0]) if args else 1
                secs = float(args[1]) if len(args) > 1 else (0.2 if name == "loading" else 1.0)
                setattr(scen, name, (count, secs))
            elif name == "drop":
                scen.drop = int(args[0]) if args else 1
            elif name in ("slow", "stall", "delay") and len(args) == 1:
                setattr(scen, name, float(args[0]))
            elif name == "chunks" and len(args) == 1:
                scen.chunks = int(args[0])
            elif name == "gate-after" and len(args) == 1 and int(args[0]) >= 1:
                scen.gate_after = int(args[0])
            elif name == "error" and args:
                style = args[1] if len(args) > 1 else "tgi"
                if style not in shapes.ERROR_STYLES:
                    raise ValueError(f"unknown error style {style!r}")
                scen.error = (int(args[0]), style, int(args[2]) if len(args) > 2 else None)
            elif name in ("stream-error", "stream-error-openai") and not args:
                scen.stream_error = "openai" if name.endswith("openai") else "tgi"
            elif name in ("stream-drop", "nospace", "gate") and not args:
                setattr(scen, name.replace("-", "_"), True)
            else:
                raise ValueError(f"unknown directive {item!r}")
        return scen


def resolve(method: str, path: str) -> tuple[str, str | None, str | None]:
    """Map a request to ``(kind, model id from the path, forced task)``; model ids may contain ``/``."""
    p = path.rstrip("/") or "/"
    if method in ("GET", "HEAD"):
        if p in ("/", "/health", "/ping"):
            return "health", None, None
        if p in ("/info", "/v1/models"):
            return p.rsplit("/", 1)[1], None, None
        if p.startswith("/v1/models/"):
            return "model", p[len("/v1/models/") :], None
        return "not-found", None, None
    if method != "POST":
        return "method", None, None
    if p.startswith("/hf-inference/"):
        p = p[len("/hf-inference") :]
    if p in ("/", "/generate", "/generate_stream"):
        return {"/": "compat", "/generate": "generate", "/generate_stream": "stream"}[p], None, None
    for suffix, kind in (
        ("/v1/chat/completions", "chat"),
        ("/v1/completions", "completions"),
        ("/v1/embeddings", "embeddings"),
    ):
        if p == suffix:
            return kind, None, None
        if p.startswith("/models/") and p.endswith(suffix) and len(p) > len("/models/") + len(suffix):
            return kind, p[len("/models/") : -len(suffix)], None
    if p.startswith("/pipeline/"):
        task, _, model = p[len("/pipeline/") :].partition("/")
        if task and model:
            return "task", model, task
    elif p.startswith("/models/"):
        model, _, task = p[len("/models/") :].partition("/pipeline/")
        if model:
            return "task", model, task or None
    return "not-found", None, None


_ONLY_PATHS: dict[str, frozenset[str]] = {
    "openai": frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/health"}),
    "tgi": frozenset(
        {
            "/",
            "/generate",
            "/generate_stream",
            "/v1/chat/completions",
            "/v1/completions",
            "/info",
            "/health",
            "/v1/models",
        }
    ),
    "router": frozenset({"/v1/chat/completions", "/v1/models"}),
    "serverless": frozenset(),
}
_ONLY_PREFIXES: dict[str, tuple[str, ...]] = {
    "openai": (),
    "tgi": (),
    "router": ("/hf-inference/", "/v1/models/"),
    "serverless": ("/models/", "/pipeline/"),
}


def serves(only: str, path: str) -> bool:
    """Whether an upstream of kind ``only`` (one of :data:`ONLY_KINDS`) has a route at ``path`` (any method).

    openai (``transformers serve``): the ``/v1`` chat, completions, embeddings and models routes and
    ``/health``; tgi: ``/``, ``/generate``, ``/generate_stream``, ``/v1/chat/completions``,
    ``/v1/completions``, ``/info``, ``/health``, ``/v1/models``; router: ``/v1/chat/completions``,
    ``/hf-inference/...``, ``/v1/models[/{id}]``; serverless: ``/models/...``, ``/pipeline/...``.
    """
    p = path.rstrip("/") or "/"
    return p in _ONLY_PATHS[only] or p.startswith(_ONLY_PREFIXES[only])


@contextlib.contextmanager
def dropping_server(*, reset: bool = False) -> Iterator[str]:
    """A raw TCP server on 127.0.0.1 that reads a request and closes the connection without answering.

    Yields its base URL. ``reset=True`` closes with an RST (``SO_LINGER`` 0) instead of a FIN. For
    connection-error tests that need no HTTP at all (``x-fake-scenario: drop:N`` does it per request).
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(0.5)
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                if reset:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    thread = threading.Thread(target=serve, name="dropping-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


class Exchange:
    """One request in flight: the parsed scenario, response helpers and disconnect tracking."""

    def __init__(self, fake: FakeHF, send: Send, req: RecordedRequest, key: str, attempt: int) -> None:
        self.fake, self.req, self.key, self.attempt = fake, req, key, attempt
        self._send = send
        self.gone = asyncio.Event()  # set when the client disconnected (or the response completed)
        self.scen = Scenario()
        quirk = req.headers.get("x-fake-quirks")
        self.tf = (quirk if quirk is not None else fake.quirks or "") == "transformers"
        only = req.headers.get("x-fake-only")
        self.only = only if only is not None else fake.only

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Send the status line and headers (echoing ``x-request-id``)."""
        request_id = self.req.headers.get("x-request-id")
        if request_id:
            headers = [*headers, (b"x-request-id", request_id.encode("latin-1"))]
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def respond(
        self, status: int, body: bytes, content_type: str | None, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        """A complete response; with ``stall:SECS`` a 200's body waits SECS after the headers."""
        hs = [(b"content-length", str(len(body)).encode())]
        if content_type:
            hs.append((b"content-type", content_type.encode()))
        await self.start(status, hs + (headers or []))
        if status == 200 and self.scen.stall and await self.pause(self.scen.stall):
            return
        await self._send({"type": "http.response.body", "body": body})

    async def json(self, status: int, obj: JSON, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        """A compact JSON response."""
        await self.respond(status, dumps(obj), "application/json", headers)

    async def fail(self, status: int, message: str, error_type: str | None = None) -> None:
        """The fake's own errors: TGI/HF ``{"error"[, "error_type"]}``, or FastAPI ``{"detail"}`` (transformers)."""
        if self.tf:
            return await self.json(status, {"detail": message})
        body: dict[str, str] = {"error": message}
        if error_type:
            body["error_type"] = error_type
        await self.json(status, body)

    async def pause(self, seconds: float) -> bool:
        """Wait up to ``seconds`` (less if the client leaves); True if the client is gone."""
        if seconds > 0 and not self.gone.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gone.wait(), seconds)
        return self.gone.is_set()

    async def abort(self) -> None:
        """Close the TCP connection under uvicorn's feet (no response, or a truncated body)."""
        transport = getattr(getattr(self._send, "__self__", None), "transport", None)
        if transport is None:  # not uvicorn (e.g. an in-process transport): the best we can do
            raise ConnectionAbortedError("fake upstream dropped the connection")
        transport.close()
        await self.pause(2.0)  # until uvicorn has seen the connection go (so it logs nothing)

    async def sse(self, events: list[JSON], *, done: bool) -> None:
        """Stream ``events`` as SSE (plus ``data: [DONE]`` when ``done``), applying the stream scenarios."""
        scen = self.scen
        state = StreamState(self.key, self.req.path)
        with self.fake._lock:
            self.fake.streams[self.key] = state
        payloads: list[JSON] = list(events)
        if scen.stream_error:
            error: JSON = {"error": STREAM_ERROR, "error_type": "generation"}
            if scen.stream_error == "openai":
                error = {"error": {"message": STREAM_ERROR, "http_status_code": 422}}
            payloads, done = [*payloads[:2], error], False
        if scen.stream_drop:
            payloads, done = payloads[:2], False
        if done:
            payloads.append("[DONE]")
        prefix = b"data:" if scen.nospace else b"data: "
        gate_at = scen.gate_after or (1 if scen.gate else 0)
        await self.start(200, SSE_HEADERS)
        for i, payload in enumerate(payloads):
            if i > 0:
                gone = await self.pause(scen.delay)
                if not gone and i == 1 and scen.stall:
                    gone = await self.pause(scen.stall)
                if not gone and i == gate_at:
                    gone = await self.fake._wait_gate(self.key, self.gone)
                if gone:
                    state.cancelled = True
                    return
            data = payload.encode() if isinstance(payload, str) else dumps(payload)
            await self._send({"type": "http.response.body", "body": prefix + data + b"\n\n", "more_body": True})
            state.events_sent += 1
        if scen.stream_drop:
            state.aborted = True
            return await self.abort()
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})
        state.finished = True


class FakeHF:
    """The fake server (an ASGI app). Thread-safe recording; see the module docstring for routes and headers.

    ``tasks`` maps model ids to tasks (merged over :data:`DEFAULT_TASKS`); ``model_id`` is the TGI/OpenAI
    served model (``/info``, ``/v1/models``, chat without ``model``; ``POST /`` serves its task, so
    ``model_id="fake/feature-extraction"`` is a TEI-style embedding endpoint); ``quirks="transformers"`` turns on
    transformers-serve quirks for every request; ``only`` restricts every request to one upstream kind's
    routes (as the ``x-fake-only`` header does for one request); ``compat_return_full_text`` is TGI's
    pipeline-tag default of ``return_full_text`` on ``POST /`` and ``/models/{id}`` text generation;
    ``gate_timeout`` bounds the wait of a ``gate`` stream.
    """

    dropping_server = staticmethod(dropping_server)

    def __init__(
        self,
        *,
        tasks: dict[str, str] | None = None,
        model_id: str = "fake/text-generation",
        quirks: str | None = None,
        only: str | None = None,
        compat_return_full_text: bool = False,
        gate_timeout: float = 30.0,
    ) -> None:
        if quirks not in (None, "transformers"):
            raise ValueError(f"unknown quirks {quirks!r}")
        if only is not None and only not in ONLY_KINDS:
            raise ValueError(f"unknown upstream kind {only!r} (one of {', '.join(ONLY_KINDS)})")
        self.tasks = {**DEFAULT_TASKS, **(tasks or {})}
        self.model_id = model_id
        self.quirks = quirks
        self.only = only
        self.compat_return_full_text = compat_return_full_text
        self.gate_timeout = gate_timeout
        self.requests: list[RecordedRequest] = []
        self.probes: list[RecordedRequest] = []
        """The gateway's background health probes (``User-Agent: hfasgi-health/...``), kept out of :attr:`requests`."""
        self.streams: dict[str, StreamState] = {}
        self.attempts: dict[str, int] = {}
        self.lifespan_events: list[str] = []
        self._lock = threading.Lock()
        self._released: set[str] = set()
        self._gates: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self._ids = itertools.count(1)

    # --- test-side helpers (callable from any thread) ---------------------------------------------

    def last(self, path_prefix: str | None = None) -> RecordedRequest:
        """The latest recorded request (whose path starts with ``path_prefix``); ``LookupError`` if none."""
        with self._lock:
            for req in reversed(self.requests):
                if path_prefix is None or req.path.startswith(path_prefix):
                    return req
        raise LookupError(f"no request recorded{f' under {path_prefix}' if path_prefix else ''}")

    def clear(self) -> None:
        """Forget requests, attempts, streams and pending releases."""
        with self._lock:
            self.requests.clear()
            self.probes.clear()
            self.attempts.clear()
            self.streams.clear()
            self._released.clear()

    def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:
        """Poll ``predicate`` until it returns something truthy (returned); ``TimeoutError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(0.005)
        return value

    async def await_for(self, predicate: Callable[[], T], timeout: float = 5.0) -> T:  # noqa: ASYNC109
        """``wait_for`` for async tests (asyncio): polls without blocking the test's event loop."""
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            await asyncio.sleep(0.005)
        return value

    def gated(self, key: str) -> bool:
        """Whether a ``gate`` stream with this key is waiting for :meth:`release`."""
        with self._lock:
            return bool(self._gates.get(key))

    def release(self, key: str) -> None:
        """Let the ``gate`` stream(s) of ``key`` continue (or the next one, if none is waiting yet)."""
        with self._lock:
            waiters = self._gates.pop(key, [])
            if not waiters:
                self._released.add(key)
        for loop, opened in waiters:
            with contextlib.suppress(RuntimeError):  # the server's loop is already closed
                loop.call_soon_threadsafe(opened.set)

    def release_all(self) -> None:
        """Release every waiting gate."""
        with self._lock:
            keys = list(self._gates)
        for key in keys:
            self.release(key)

    async def _wait_gate(self, key: str, gone: asyncio.Event) -> bool:
        opened = asyncio.Event()
        entry = (asyncio.get_running_loop(), opened)
        with self._lock:
            if key in self._released:
                self._released.discard(key)
                return gone.is_set()
            self._gates.setdefault(key, []).append(entry)
        waits = [asyncio.ensure_future(opened.wait()), asyncio.ensure_future(gone.wait())]
        try:
            await asyncio.wait(waits, timeout=self.gate_timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
            with self._lock:
                if entry in self._gates.get(key, []):
                    self._gates[key].remove(entry)
                    if not self._gates[key]:
                        del self._gates[key]
        return gone.is_set()

    # --- ASGI ---------------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.lifespan_events.append(message["type"])
                if message["type"] == "lifespan.shutdown":
                    self.release_all()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope.get("headers", []):
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        req = RecordedRequest(
            scope["method"],
            scope["path"],
            scope.get("query_string", b"").decode("latin-1"),
            headers,
            body,
            _loads(body),
        )
        key = headers.get("x-fake-key") or f"{req.method} {req.path}"
        with self._lock:
            if headers.get("user-agent", "").startswith(PROBE_AGENT):  # the gateway's background health probes
                self.probes.append(req)
            else:
                self.requests.append(req)
            attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
        ex = Exchange(self, send, req, key, attempt)
        watcher = asyncio.ensure_future(_watch(receive, ex.gone))
        try:
            await self._handle(ex)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def _handle(self, ex: Exchange) -> None:
        try:
            ex.scen = scen = Scenario.parse(ex.req.headers.get("x-fake-scenario", ""))
        except ValueError as exc:
            return await ex.json(400, {"error": f"bad x-fake-scenario: {exc}"})
        if ex.only is not None:
            if ex.only not in ONLY_KINDS:
                return await ex.json(400, {"error": f"bad x-fake-only: {ex.only!r} (one of {', '.join(ONLY_KINDS)})"})
            if not serves(ex.only, ex.req.path):
                return await ex.json(404, {"detail": "Not Found"})
        kind, model, task = resolve(ex.req.method, ex.req.path)
        if scen.slow and await ex.pause(scen.slow):
            return None
        if ex.attempt <= scen.drop:
            return await ex.abort()
        if scen.loading and ex.attempt <= scen.loading[0]:
            if not _wants_to_wait(ex.req):
                name = model or _body_get(ex.req, "model") or self.model_id
                return await ex.json(
                    503, {"error": f"Model {name} is currently loading", "estimated_time": scen.loading[1]}
                )
            if await ex.pause(scen.loading[1]):
                return None
        if scen.rate and ex.attempt <= scen.rate[0]:
            retry_after = f"{scen.rate[1]:g}".encode()
            body = {"error": "Rate limit reached", "error_type": "overloaded"}
            return await ex.json(429, body, [(b"retry-after", retry_after)])
        if scen.error and (scen.error[2] is None or ex.attempt <= scen.error[2]):
            status, style, _ = scen.error
            payload, content_type = shapes.error_body(status, style)
            return await ex.respond(status, payload, content_type)
        await self._route(ex, kind, model, task)

    async def _route(self, ex: Exchange, kind: str, model: str | None, task: str | None) -> None:
        if kind == "health":
            return await ex.respond(200, b"", None)
        if kind == "info":
            return await ex.json(200, shapes.tgi_info(self.model_id))
        if kind == "models":
            ids = [self.model_id, *(m for m in self.tasks if m != self.model_id)]
            return await ex.json(200, {"object": "list", "data": [shapes.model_card(m) for m in ids]})
        if kind == "model":
            if model != self.model_id and model not in self.tasks:
                return await ex.fail(404, f"Model {model} does not exist")
            return await ex.json(200, shapes.model_card(str(model)))
        if kind == "compat" and self.tasks.get(self.model_id, "text-generation") != "text-generation":
            return await self._task(ex, self.model_id, None)  # an endpoint of another task (e.g. TEI)
        if kind in ("compat", "generate", "stream"):
            return await self._generate(ex, kind)
        if kind == "chat":
            return await self._chat(ex, model)
        if kind == "completions":
            return await self._completions(ex, model)
        if kind == "embeddings":
            return await self._embeddings(ex)
        if kind == "task":
            return await self._task(ex, str(model), task)
        if kind == "method":
            return await ex.fail(405, "Method Not Allowed")
        await ex.fail(404, "Not Found")

    async def _task(self, ex: Exchange, model: str, forced_task: str | None) -> None:
        known = self.tasks.get(model)
        if known is None:
            return await ex.fail(404, f"Model {model} does not exist")
        task = forced_task or known
        if task == "text-generation":
            return await self._generate(ex, "compat")
        body = ex.req.json if ex.req.json is not None else ex.req.body.decode("utf-8", "replace")
        try:
            out = shapes.run_task(task, body)
        except KeyError as exc:
            return await ex.fail(400, f"Missing field {exc.args[0]!r} in inputs or parameters")
        except (TypeError, ValueError, AttributeError) as exc:
            return await ex.fail(400, str(exc))
        await ex.json(200, out, [(b"x-compute-type", b"cpu"), (b"x-compute-time", b"0.001")])

    async def _generate(self, ex: Exchange, mode: str) -> None:
        body = ex.req.json
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), str):
            msg = "Failed to deserialize the JSON body into the target type: missing field `inputs`"
            return await ex.fail(422, msg, "validation")
        prompt: str = body["inputs"]
        params = body.get("parameters") or {}
        max_new = params.get("max_new_tokens")
        if not prompt:
            return await ex.fail(422, "Input validation error: `inputs` cannot be empty", "validation")
        if max_new is not None and (not isinstance(max_new, int) or max_new <= 0):
            return await ex.fail(
                422, "Input validation error: `max_new_tokens` must be strictly positive", "validation"
            )
        n = ex.scen.chunks or max_new or shapes.DEFAULT_TOKENS
        full = params.get("return_full_text")
        if full is None:
            full = self.compat_return_full_text and mode == "compat"
        seed, details, finish = params.get("seed"), bool(params.get("details")), "length" if max_new else "eos_token"
        if mode == "stream" or (mode == "compat" and body.get("stream") is True):
            if params.get("decoder_input_details"):
                msg = "Input validation error: `decoder_input_details` == true is not supported when streaming tokens"
                return await ex.fail(422, msg, "validation")
            events = shapes.tgi_stream_events(
                prompt, n, details=details, seed=seed, return_full_text=bool(full), finish_reason=finish
            )
            return await ex.sse(events, done=False)
        out = shapes.tgi_generate_response(
            prompt,
            n,
            details=details,
            decoder_input_details=bool(params.get("decoder_input_details")),
            seed=seed,
            return_full_text=bool(full),
            finish_reason=finish,
        )
        headers = [
            (b"x-compute-type", b"cpu"),
            (b"x-compute-characters", str(len(prompt)).encode()),
            (b"x-prompt-tokens", str(shapes.count_tokens(prompt)).encode()),
            (b"x-generated-tokens", str(n).encode()),
        ]
        await ex.json(200, [out] if mode == "compat" else out, headers)

    def _reply(
        self,
        ex: Exchange,
        body: dict[str, Any],
        path_model: str | None,
        prefix: str,
        max_tokens: Any,
        use: dict[str, int],
    ) -> shapes.Reply:
        """The shared part of an OpenAI-style reply; ``model`` echoes the body (``<id>@main`` for transformers)."""
        model = str(body.get("model") or path_model or self.model_id)
        if ex.tf and "@" not in model:
            model += "@main"
        finish = "length" if max_tokens else "stop"
        return shapes.Reply(f"{prefix}-{next(self._ids)}", int(time.time()), model, finish, use, ex.tf)

    async def _chat(self, ex: Exchange, path_model: str | None) -> None:
        body = ex.req.json
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            msg = "Failed to deserialize the JSON body into the target type: missing field `messages`"
            return await ex.fail(422, msg, "validation")
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        n = ex.scen.chunks or max_tokens or shapes.DEFAULT_TOKENS
        prompt = shapes.messages_text(body["messages"])
        reply = self._reply(ex, body, path_model, "chatcmpl", max_tokens, shapes.usage(shapes.count_tokens(prompt), n))
        if body.get("stream"):
            events = shapes.chat_chunks(reply, shapes.token_texts(prompt, n), _include_usage(body))
            return await ex.sse(events, done=not ex.tf)
        await ex.json(200, shapes.chat_completion(reply, shapes.expected_generation(prompt, n)))

    async def _completions(self, ex: Exchange, path_model: str | None) -> None:
        body = ex.req.json
        prompt = body.get("prompt") if isinstance(body, dict) else None
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(body, dict) or not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            return await ex.fail(422, "`prompt` must be a string or a list of strings", "validation")
        max_tokens = body.get("max_tokens")
        n = ex.scen.chunks or max_tokens or shapes.DEFAULT_TOKENS
        use = shapes.usage(sum(shapes.count_tokens(p) for p in prompts), n * len(prompts))
        reply = self._reply(ex, body, path_model, "cmpl", max_tokens, use)
        if body.get("stream"):
            tokens = [shapes.token_texts(p, n) for p in prompts]
            return await ex.sse(shapes.completion_chunks(reply, tokens, _include_usage(body)), done=not ex.tf)
        await ex.json(200, shapes.completion(reply, [shapes.expected_generation(p, n) for p in prompts]))

    async def _embeddings(self, ex: Exchange) -> None:
        body = ex.req.json
        inputs = body.get("input") if isinstance(body, dict) else None
        texts = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(body, dict) or not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return await ex.fail(422, "`input` must be a string or a list of strings", "validation")
        dim = body.get("dimensions") or shapes.EMBEDDING_DIM
        if not isinstance(dim, int) or dim <= 0:
            return await ex.fail(422, "`dimensions` must be a positive integer", "validation")
        data = []
        for i, text in enumerate(texts):
            vec = shapes.expected_embedding(text, dim)
            emb: JSON = vec
            if body.get("encoding_format") == "base64":  # what the openai client asks for by default
                emb = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(shapes.count_tokens(t) for t in texts)
        model = body.get("model") or self.model_id
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        await ex.json(200, {"object": "list", "data": data, "model": model, "usage": usage})


async def _watch(receive: Receive, gone: asyncio.Event) -> None:
    """Set ``gone`` when the server reports ``http.disconnect``."""
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


def _loads(body: bytes) -> JSON:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _body_get(req: RecordedRequest, name: str) -> Any:
    return req.json.get(name) if isinstance(req.json, dict) else None


def _wants_to_wait(req: RecordedRequest) -> bool:
    """``x-wait-for-model: true`` / ``X-wait-for-model: 1`` header or ``options.wait_for_model`` in the body."""
    if req.headers.get("x-wait-for-model", "").lower() in ("true", "1"):
        return True
    options = _body_get(req, "options")
    return isinstance(options, dict) and options.get("wait_for_model") is True
