"""The contract every layer keeps (docs/asgi_craft.md §6, "Testing every layer"), parametrised over the layers.

Subjects: ``Tracing`` (no-op and with an SDK), ``RequestId``, ``ErrorEnvelope``, ``TasksAPI``,
``ApiKeyAuth``, ``RateLimiter``, ``RequestValidator`` and ``ResponseReformatter`` (with keys, limits
and schemas configured, on paths that are not the gateway's: they must behave like no-ops), and
``HFForwarder`` twice: on a path that is not the gateway's and on a gateway path, where the "inner
app" is the fake HF upstream on a real socket. Each test drives ASGI by hand (``tests.asgi_driver``
for responses in flight), so streaming is observed chunk by chunk; order comes from gates and events,
never sleeps.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from asgi_lifespan import LifespanManager

from hfasgi.app import layers
from hfasgi.auth import ApiKeyAuth, AuthConfig, MemoryKeyStore
from hfasgi.cache import CacheConfig, MemoryCacheStore, ResponseCache
from hfasgi.context import get_context
from hfasgi.envelope import ErrorEnvelope
from hfasgi.forwarding.forwarder import ForwarderConfig, HFForwarder
from hfasgi.limits import Limit
from hfasgi.observability import Tracing, TracingConfig
from hfasgi.operations import Routes
from hfasgi.ratelimit import RateLimiter, RateLimiterConfig
from hfasgi.reformat import ReformatterConfig, ResponseReformatter, TasksAPI, TasksAPIConfig
from hfasgi.request_id import RequestId
from hfasgi.stack import CANONICAL_ORDER, Layer, resources, stack
from hfasgi.types import Receive, Send
from hfasgi.usage.meter import UsageMeter, UsageMeterConfig
from hfasgi.validation import RequestValidator, ValidatorConfig
from tests.asgi_driver import open_stream, request
from tests.fakes import serve_lifespan
from tests.upstream import FakeHF, expected_chat
from tests.upstream.fixtures import Upstream

pytestmark = pytest.mark.anyio

Message = dict[str, Any]
CHAT_PATH = "/hf/v1/chat/completions"


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "org/chat-model", "messages": [{"role": "user", "content": text}], "max_tokens": 2, **extra}


# --- the fake upstream and the gateway config --------------------------------------------------------


@pytest.fixture
async def gateway(upstream: Upstream) -> AsyncIterator[ForwarderConfig]:
    """The forwarder's config for the test (router dialect under ``/hf``), its pool open."""
    config = ForwarderConfig.to(upstream.url, kind="router", token="hf_contract_token", routes=Routes("/hf"))
    async with resources(config.pool):
        yield config


# --- the inner app -------------------------------------------------------------------------------------


class Inner:
    """The app under the layer: records what reaches it and answers by path.

    ``/app/echo`` echoes the (whole) body as JSON; ``/app/stream`` sends one event, waits for
    :attr:`release`, sends another; ``/app/endless`` sends one event and then only ends when
    ``http.disconnect`` arrives through ``receive``; ``/app/raise-before`` and ``/app/raise-after``
    raise before and after the response start. Websockets: accept, echo one message, close (or, with
    ``refuse_websockets``, raise before accepting).
    """

    def __init__(self, *, refuse_websockets: bool = False) -> None:
        self.refuse_websockets = refuse_websockets
        self.lifespan: list[str] = []
        self.scopes: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []
        self.release = asyncio.Event()
        self.finished = False
        self.disconnected = asyncio.Event()

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send, self.lifespan)
            return
        self.scopes.append(scope)
        path = scope["path"]
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            if self.refuse_websockets:
                raise RuntimeError("websocket failed before accept")
            await send({"type": "websocket.accept"})
            message = await receive()
            await send({"type": "websocket.send", "text": "echo:" + message["text"]})
            await send({"type": "websocket.close", "code": 1000})
            return
        if path == "/app/stream":
            await self._start(send, b"text/event-stream")
            await send({"type": "http.response.body", "body": b"data: first\n\n", "more_body": True})
            await self.release.wait()
            await send({"type": "http.response.body", "body": b"data: second\n\n", "more_body": False})
            self.finished = True
            return
        if path == "/app/endless":
            await self._start(send, b"text/event-stream")
            await send({"type": "http.response.body", "body": b"data: more to come\n\n", "more_body": True})
            while (await receive())["type"] != "http.disconnect":
                pass
            self.disconnected.set()
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.bodies.append(body)
        if path == "/app/raise-before":
            raise RuntimeError("failed before start")
        payload = json.dumps({"path": path, "body": body.decode()}).encode()
        await self._start(send, b"application/json", len(payload))
        if path == "/app/raise-after":
            raise RuntimeError("failed after start")
        await send({"type": "http.response.body", "body": payload})

    @staticmethod
    async def _start(send: Send, content_type: bytes, length: int | None = None) -> None:
        headers = [(b"content-type", content_type)]
        if length is not None:
            headers.append((b"content-length", str(length).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})


# --- the subjects ----------------------------------------------------------------------------------------


class _Records:
    """A usage ledger that keeps records in a list."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def submit(self, record: Any) -> None:
        self.records.append(record)

    async def flush(self) -> bool:
        return True

    async def query(self, key_id: str | None, limit: int, offset: int) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Subject:
    name: str
    cls: type
    gateway_path: bool = False
    """Requests use a gateway route: the forwarder answers from the upstream instead of the inner app."""

    def layer(self, gateway: ForwarderConfig) -> Layer:
        if self.cls is HFForwarder:
            return Layer(HFForwarder, {"config": gateway}, (gateway.pool,))
        if self.cls is ApiKeyAuth:
            return Layer(
                ApiKeyAuth, {"config": AuthConfig(store=MemoryKeyStore.from_keys(["k"]), routes=gateway.routes)}
            )
        if self.cls is RequestValidator:
            checks = ValidatorConfig(
                routes=gateway.routes, route_schemas={"chat": {"type": "object"}}, task_schemas={}, binary_tasks={}
            )
            return Layer(RequestValidator, {"config": checks})
        if self.cls is RateLimiter:
            limits = RateLimiterConfig(rate_limit=Limit(1, 60), token_limit=Limit(10, 60), routes=gateway.routes)
            return Layer(RateLimiter, {"config": limits})
        if self.cls is ResponseReformatter:
            config = ReformatterConfig(catalog=gateway.catalog, routes=gateway.routes)
            return Layer(ResponseReformatter, {"config": config})
        if self.cls is Tracing:
            if self.name.endswith("sdk"):
                from opentelemetry.sdk.trace import TracerProvider

                return Layer(
                    Tracing, {"config": TracingConfig(tracer_provider=TracerProvider(), routes=gateway.routes)}
                )
            return Layer(Tracing, {"config": TracingConfig(routes=gateway.routes)})
        if self.cls is TasksAPI:
            return Layer(TasksAPI, {"config": TasksAPIConfig(catalog=gateway.catalog)})
        if self.cls is ResponseCache:
            return CacheConfig(store=MemoryCacheStore(), catalog=gateway.catalog, routes=gateway.routes).middleware
        if self.cls is UsageMeter:
            return Layer(UsageMeter, {"config": UsageMeterConfig(ledger=_Records(), routes=gateway.routes)})
        return Layer(self.cls)

    def with_envelope(self, gateway: ForwarderConfig) -> list[Layer]:
        """The layer and the envelope, in the canonical order (the envelope alone if it is the subject)."""
        own = self.layer(gateway)
        if self.cls is ErrorEnvelope:
            return [own]
        return sorted([own, Layer(ErrorEnvelope)], key=lambda layer: CANONICAL_ORDER.index(layer.name))


SUBJECTS = [
    Subject("Tracing", Tracing),
    Subject("Tracing-sdk", Tracing),
    Subject("RequestId", RequestId),
    Subject("ErrorEnvelope", ErrorEnvelope),
    Subject("ApiKeyAuth-passthrough", ApiKeyAuth),
    Subject("RateLimiter-passthrough", RateLimiter),
    Subject("UsageMeter-passthrough", UsageMeter),
    Subject("RequestValidator-passthrough", RequestValidator),
    Subject("ResponseCache-passthrough", ResponseCache),
    Subject("TasksAPI-passthrough", TasksAPI),
    Subject("ResponseReformatter-passthrough", ResponseReformatter),
    Subject("HFForwarder-passthrough", HFForwarder),
    Subject("HFForwarder-gateway", HFForwarder, gateway_path=True),
]
ALL = [pytest.param(s, id=s.name) for s in SUBJECTS]
PATH_INDEPENDENT = [pytest.param(s, id=s.name) for s in SUBJECTS if not s.gateway_path]


async def drive(
    app: Any, path: str, *, chunks: list[bytes] | None = None, scope_type: str = "http"
) -> tuple[list[Message], BaseException | None]:
    """One request by hand: every message the app sent, and what it raised (``None`` if nothing)."""
    incoming: list[Message]
    if scope_type == "websocket":
        incoming = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "ping"}]
    else:
        parts = chunks or [b""]
        incoming = [{"type": "http.request", "body": c, "more_body": i < len(parts) - 1} for i, c in enumerate(parts)]
    sent: list[Message] = []

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        return {"type": "websocket.disconnect" if scope_type == "websocket" else "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {"type": scope_type, "path": path, "raw_path": path.encode(), "headers": []}
    scope.update({"query_string": b"", "method": "POST"} if scope_type == "http" else {"subprotocols": []})
    try:
        await app(scope, receive, send)
    except Exception as exc:
        return sent, exc
    return sent, None


def starts(sent: list[Message]) -> list[Message]:
    return [m for m in sent if m["type"] == "http.response.start"]


# --- the contract ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("subject", PATH_INDEPENDENT)
async def test_lifespan_passes_through(subject: Subject, gateway: ForwarderConfig) -> None:
    inner = Inner()
    async with LifespanManager(stack(inner, subject.layer(gateway))):
        assert inner.lifespan == ["lifespan.startup"]
    assert inner.lifespan == ["lifespan.startup", "lifespan.shutdown"]


@pytest.mark.parametrize("subject", ALL)
async def test_a_websocket_passes_through_untouched(subject: Subject, gateway: ForwarderConfig) -> None:
    inner = Inner()
    path = CHAT_PATH if subject.gateway_path else "/app/ws"
    sent, error = await drive(stack(inner, subject.layer(gateway)), path, scope_type="websocket")
    assert error is None
    assert sent == [
        {"type": "websocket.accept"},
        {"type": "websocket.send", "text": "echo:ping"},
        {"type": "websocket.close", "code": 1000},
    ]
    assert inner.scopes[0]["path"] == path and inner.scopes[0]["type"] == "websocket"


@pytest.mark.parametrize("subject", ALL)
async def test_a_websocket_that_fails_before_accept_is_closed_never_answered_over_http(
    subject: Subject, gateway: ForwarderConfig
) -> None:
    path = CHAT_PATH if subject.gateway_path else "/app/ws"
    app = stack(Inner(refuse_websockets=True), *subject.with_envelope(gateway))
    sent, error = await drive(app, path, scope_type="websocket")
    assert error is None
    assert sent == [{"type": "websocket.close", "code": 4500, "reason": "Internal error"}]


@pytest.mark.parametrize("subject", ALL)
async def test_a_chunked_request_body_arrives_intact(subject: Subject, gateway: ForwarderConfig, fake: FakeHF) -> None:
    inner = Inner()
    app = stack(inner, subject.layer(gateway))
    if subject.gateway_path:
        whole = json.dumps(chat("a body sent in three chunks")).encode()
        chunks = [whole[:10], whole[10:25], whole[25:]]
        stream, body = await request(app, "POST", CHAT_PATH, body=chunks, headers={"content-type": "application/json"})
        assert fake.last("/v1/chat/completions").body == whole
        answer = json.loads(body)["choices"][0]["message"]["content"]
        assert answer == expected_chat(chat("a body sent in three chunks")["messages"], 2)
    else:
        chunks = [b"first part, ", b"", b"second part, ", b"last part"]
        stream, body = await request(app, "POST", "/app/echo", body=chunks)
        assert inner.bodies == [b"".join(chunks)]
        assert json.loads(body)["body"] == "first part, second part, last part"
    assert stream.status == 200
    assert stream.headers[b"content-length"] == str(len(body)).encode()


@pytest.mark.parametrize("subject", ALL)
async def test_the_first_stream_chunk_arrives_before_the_producer_ends(
    subject: Subject, gateway: ForwarderConfig, fake: FakeHF
) -> None:
    inner = Inner()
    app = stack(inner, subject.layer(gateway))
    if subject.gateway_path:
        key = "contract-first-chunk"
        headers = {"x-fake-scenario": "gate", "x-fake-key": key}
        async with open_stream(app, "POST", CHAT_PATH, json_body=chat("hi", stream=True), headers=headers) as s:
            first = await s.chunk()
            assert first.startswith(b"data: {")
            assert await fake.await_for(lambda: fake.gated(key))  # the producer is held after its first event
            assert not s.ended
            fake.release(key)
            assert (await s.rest()).endswith(b"data: [DONE]\n\n")
        assert fake.streams[key].finished
    else:
        async with open_stream(app, "POST", "/app/stream") as s:
            assert await s.chunk() == b"data: first\n\n"
            assert not inner.finished and not s.ended
            inner.release.set()
            assert await s.rest() == b"data: second\n\n"
        assert inner.finished


@pytest.mark.parametrize("subject", ALL)
async def test_http_disconnect_ends_an_endless_stream(subject: Subject, gateway: ForwarderConfig, fake: FakeHF) -> None:
    inner = Inner()
    app = stack(inner, subject.layer(gateway))
    if subject.gateway_path:
        key = "contract-endless"
        headers = {"x-fake-scenario": "gate", "x-fake-key": key}
        async with open_stream(app, "POST", CHAT_PATH, json_body=chat("hi", stream=True), headers=headers) as s:
            assert (await s.chunk()).startswith(b"data: {")
            assert await fake.await_for(lambda: fake.gated(key))
        # Leaving the block hung up; the driver has checked that the app returned.
        assert await fake.await_for(lambda: fake.streams[key].cancelled)
        assert not fake.streams[key].finished
    else:
        async with open_stream(app, "POST", "/app/endless") as s:
            assert await s.chunk() == b"data: more to come\n\n"
            assert not inner.disconnected.is_set()
        assert inner.disconnected.is_set()  # the inner app saw http.disconnect through the layer's receive


@pytest.mark.parametrize("subject", ALL)
async def test_an_error_before_the_start_becomes_the_envelope(
    subject: Subject, gateway: ForwarderConfig, fake: FakeHF
) -> None:
    app = stack(Inner(), *subject.with_envelope(gateway))
    if subject.gateway_path:
        headers = {"x-fake-scenario": "error:500", "content-type": "application/json"}
        stream, body = await request(app, "POST", CHAT_PATH, json_body=chat("hi"), headers=headers)
        assert stream.status == 500
        assert set(json.loads(body)) == {"error", "error_type"}
        assert stream.headers[b"content-length"] == str(len(body)).encode()
        return
    sent, error = await drive(app, "/app/raise-before")
    assert error is None
    assert len(starts(sent)) == 1 and sent[0]["status"] == 500
    assert json.loads(sent[1]["body"]) == {"error": "Internal error", "error_type": "internal"}
    headers = dict(sent[0]["headers"])
    assert headers[b"content-length"] == str(len(sent[1]["body"])).encode()
    assert (b"x-request-id" in headers) is (subject.cls is RequestId)


@pytest.mark.parametrize("subject", ALL)
async def test_an_error_after_the_start_is_reraised_after_a_single_start(
    subject: Subject, gateway: ForwarderConfig, fake: FakeHF
) -> None:
    app = stack(Inner(), *subject.with_envelope(gateway))
    if subject.gateway_path:  # the gateway's rule after the start: one in-stream error event, then the end
        headers = {"x-fake-scenario": "stream-drop"}
        async with open_stream(app, "POST", CHAT_PATH, json_body=chat("hi", stream=True), headers=headers) as s:
            body = await s.rest()
        events = [line[6:] for line in body.split(b"\n") if line.startswith(b"data: ")]
        assert s.status == 200 and len(events) == 3
        assert set(json.loads(events[-1])) >= {"error", "error_type"}
        return
    sent, error = await drive(app, "/app/raise-after")
    assert isinstance(error, RuntimeError) and str(error) == "failed after start"
    assert len(starts(sent)) == 1 and sent[0]["status"] == 200
    assert [m["type"] for m in sent] == ["http.response.start"]


@pytest.mark.parametrize("subject", ALL)
async def test_fifty_concurrent_requests_get_their_own_answers(
    subject: Subject, gateway: ForwarderConfig, fake: FakeHF
) -> None:
    app = stack(Inner(), subject.layer(gateway))
    ids = [f"req-{i:02d}" for i in range(50)]

    async def one(i: int) -> tuple[Any, bytes]:
        headers = {"x-request-id": ids[i]}
        if subject.gateway_path:
            return await request(app, "POST", CHAT_PATH, json_body=chat(f"prompt number {i}"), headers=headers)
        return await request(app, "POST", "/app/echo", body=f"body number {i}".encode(), headers=headers)

    results = await asyncio.gather(*(one(i) for i in range(50)))
    for i, (stream, body) in enumerate(results):
        assert stream.status == 200
        if subject.gateway_path:
            answer = json.loads(body)["choices"][0]["message"]["content"]
            assert answer == expected_chat(chat(f"prompt number {i}")["messages"], 2)
        else:
            assert json.loads(body)["body"] == f"body number {i}"
        if subject.cls is RequestId:
            assert stream.headers[b"x-request-id"] == ids[i].encode()


@pytest.mark.parametrize("subject", ALL)
async def test_the_layer_applied_twice_over_still_works(
    subject: Subject, gateway: ForwarderConfig, fake: FakeHF
) -> None:
    inner = Inner()
    app = stack(stack(inner, subject.layer(gateway)), subject.layer(gateway))
    if subject.gateway_path:
        stream, body = await request(app, "POST", CHAT_PATH, json_body=chat("twice"))
        assert json.loads(body)["choices"][0]["message"]["content"] == expected_chat(chat("twice")["messages"], 2)
        assert len(fake.requests) == 1
    else:
        stream, body = await request(app, "POST", "/app/echo", body=b"twice")
        assert json.loads(body) == {"path": "/app/echo", "body": "twice"}
        if subject.cls is RequestId:  # one id per request, whatever the nesting
            assert stream.headers[b"x-request-id"].decode() == get_context(inner.scopes[0]).request_id
    assert stream.status == 200


async def test_the_full_stack_applied_twice_over_still_works(gateway: ForwarderConfig, fake: FakeHF) -> None:
    inner = Inner()
    app = stack(stack(inner, *layers(gateway)), *layers(gateway))
    own, own_body = await request(app, "POST", "/app/echo", body=b"own route")
    assert json.loads(own_body)["body"] == "own route"
    assert own.headers[b"x-request-id"].decode() == get_context(inner.scopes[0]).request_id

    answered, body = await request(app, "POST", CHAT_PATH, json_body=chat("nested"))
    assert json.loads(body)["choices"][0]["message"]["content"] == expected_chat(chat("nested")["messages"], 2)
    assert fake.last("/v1/chat/completions").headers["x-request-id"] == answered.headers[b"x-request-id"].decode()

    key = "contract-twice-stream"
    headers = {"x-fake-scenario": "gate", "x-fake-key": key}
    async with open_stream(app, "POST", CHAT_PATH, json_body=chat("hi", stream=True), headers=headers) as s:
        assert (await s.chunk()).startswith(b"data: {")
        assert await fake.await_for(lambda: fake.gated(key))
        fake.release(key)
        assert (await s.rest()).endswith(b"data: [DONE]\n\n")

    sent, error = await drive(app, "/app/raise-before")
    assert error is None and len(starts(sent)) == 1 and sent[0]["status"] == 500
