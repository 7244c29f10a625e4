"""Streaming end to end: SSE passes through chunk by chunk with the framing Hugging Face clients need.

Every key case runs twice (``via``): through the in-process raw driver (``tests.asgi_driver``, which sees
each body chunk as the app sends it) and through the reference app served on a real socket with an
``httpx`` client reading raw chunks. Never ``httpx.ASGITransport``: it buffers. Ordering comes from
the fake's ``gate`` (the upstream holds after its first event until ``fake.release(key)``), not timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import pytest

from tests.asgi_driver import open_stream, request
from tests.e2e.clients import objects, sse_payloads
from tests.upstream import FakeHF, count_tokens, token_texts
from tests.upstream.fake_hf import STREAM_ERROR
from tests.upstream.shapes import (
    DEFAULT_TOKENS,
    Reply,
    chat_chunks,
    completion_chunks,
    dumps,
    tgi_stream_events,
    usage,
)

from .test_resilience import Hit, Send, forwarding_app, key, reply, scripted

__all__ = ["key"]  # a fixture shared with test_resilience

pytestmark = pytest.mark.anyio

PROMPT = "Stream me a story"


# --- framing helpers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamRoute:
    """A client-facing streaming route and what the fake upstream streams on it."""

    path: str
    openai: bool

    def body(self, prompt: str = PROMPT, model: str = "fake/text-generation") -> dict[str, Any]:
        """A streaming request for ``prompt``."""
        if self.path == "/v1/chat/completions":
            return {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": True}
        if self.path == "/v1/completions":
            return {"model": model, "prompt": prompt, "stream": True}
        if self.path == "/":
            return {"inputs": prompt, "stream": True}
        return {"inputs": prompt}

    def expected(self, first: dict[str, Any], prompt: str = PROMPT, *, tf: bool = False) -> list[dict[str, Any]]:
        """The events of the whole stream (``first`` is the first event received: id and time)."""
        tokens = token_texts(prompt, DEFAULT_TOKENS)
        if not self.openai:
            return tgi_stream_events(prompt, DEFAULT_TOKENS, finish_reason="eos_token")
        used = usage(count_tokens(prompt), DEFAULT_TOKENS)
        answer = Reply(first["id"], first["created"], first["model"], "stop", used, tf)
        events = (
            chat_chunks(answer, tokens) if self.path == "/v1/chat/completions" else completion_chunks(answer, [tokens])
        )
        return [uniform(event) for event in events if event["choices"]]


def uniform(event: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chunk as the gateway passes it on whatever the upstream: a fingerprint, ``"usage": null``."""
    return {**event, "system_fingerprint": event.get("system_fingerprint") or "hfasgi", "usage": None}


GENERATE_STREAM = StreamRoute("/generate_stream", openai=False)
COMPAT = StreamRoute("/", openai=False)
CHAT = StreamRoute("/v1/chat/completions", openai=True)
COMPLETIONS = StreamRoute("/v1/completions", openai=True)
ROUTES = [GENERATE_STREAM, COMPAT, CHAT, COMPLETIONS]
OPENAI_ROUTES = [CHAT, COMPLETIONS]
TGI_ROUTES = [GENERATE_STREAM, COMPAT]


def scenario(value: str, key: str, **extra: str) -> dict[str, str]:
    """Headers selecting a fake scenario under ``key``."""
    return {"x-fake-scenario": value, "x-fake-key": key, **extra}


# --- one live response, in process or over a socket -------------------------------------------------


@dataclass
class Live:
    """A response in flight: status, headers (names lower-cased, duplicates kept) and chunks as they come."""

    status: int
    headers: list[tuple[str, str]]
    _next: Callable[[], Awaitable[bytes]]
    body: bytes = b""
    """The whole body, once :func:`collect` has read it."""

    def values(self, name: str) -> list[str]:
        """Every value of header ``name``."""
        return [v for k, v in self.headers if k == name]

    async def chunk(self) -> bytes:
        """The next non-empty chunk, ``b""`` at the end of the body."""
        return await self._next()

    async def event(self) -> bytes:
        """Chunks up to the end of the next complete event."""
        buf = b""
        while b"\n\n" not in buf:
            chunk = await self.chunk()
            assert chunk, f"the stream ended inside an event: {buf!r}"
            buf += chunk
        return buf

    async def rest(self) -> bytes:
        """Everything up to the end of the body."""
        parts = []
        while chunk := await self.chunk():
            parts.append(chunk)
        return b"".join(parts)


class Opener(Protocol):
    def __call__(
        self, path: str, body: Any, headers: dict[str, str], **settings: Any
    ) -> contextlib.AbstractAsyncContextManager[Live]: ...


@pytest.fixture(params=["driver", "socket"])
def via(request: pytest.FixtureRequest, gateway: Callable[..., str], gateway_app: Any) -> Opener:
    """Open a streamed request to the reference app (TGI upstream kind): in process, or over a real socket.

    Leaving the block is the client hanging up.
    """

    apps: dict[tuple[Any, ...], Any] = {}
    creating = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def driver(path: str, body: Any, headers: dict[str, str], **settings: Any) -> AsyncIterator[Live]:
        async with creating:  # one app (and upstream pool) per settings, also for concurrent streams
            cache_key = tuple(sorted(settings.items()))
            app = apps.get(cache_key)
            if app is None:
                app = apps[cache_key] = await gateway_app("tgi", **settings)
        async with open_stream(app, "POST", path, json_body=body, headers=headers) as stream:

            async def next_chunk() -> bytes:
                while not stream.ended:
                    if chunk := await stream.chunk(timeout=10):
                        return chunk
                return b""

            raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in stream.start["headers"]]
            yield Live(stream.status, raw, next_chunk)

    @contextlib.asynccontextmanager
    async def socket(path: str, body: Any, headers: dict[str, str], **settings: Any) -> AsyncIterator[Live]:
        url = gateway("tgi", **settings)
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as client,
            client.stream("POST", path, json=body, headers=headers) as response,
        ):
            chunks = response.aiter_raw()

            async def next_chunk() -> bytes:
                async for chunk in chunks:
                    if chunk:
                        return chunk
                return b""

            yield Live(response.status_code, response.headers.multi_items(), next_chunk)

    opener: Opener = driver if request.param == "driver" else socket
    return opener


async def collect(via: Opener, path: str, body: Any, headers: dict[str, str], **settings: Any) -> Live:
    """A whole streamed response; its body is read into ``Live.body``."""
    async with via(path, body, headers, **settings) as live:
        live.body = await live.rest()
    return live


# --- chunk by chunk -----------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.path)
async def test_the_first_event_arrives_while_the_upstream_is_held(
    via: Opener, fake: FakeHF, key: str, route: StreamRoute
) -> None:
    """The first event reaches the client while the upstream waits at its gate: nothing is buffered."""
    async with via(route.path, route.body(), scenario("gate", key)) as live:
        assert live.status == 200
        first = await live.event()
        await fake.await_for(lambda: fake.gated(key))
        assert fake.streams[key].events_sent == 1 and not fake.streams[key].finished
        [payload] = sse_payloads(first)
        expected = route.expected(json.loads(payload))
        assert first == b"data: " + dumps(expected[0]) + b"\n\n"
        fake.release(key)
        rest = await live.rest()
    payloads = sse_payloads(first + rest)
    assert objects(payloads) == expected
    assert fake.streams[key].finished


async def test_sse_headers_are_set_exactly_once(via: Opener, fake: FakeHF) -> None:
    """``text/event-stream``, ``cache-control: no-cache`` and ``x-accel-buffering: no`` once each; no length."""
    live = await collect(via, GENERATE_STREAM.path, GENERATE_STREAM.body(), {})
    assert live.status == 200
    assert live.values("content-type") == ["text/event-stream"]
    assert live.values("cache-control") == ["no-cache"]
    assert live.values("x-accel-buffering") == ["no"]
    assert live.values("content-length") == []


async def _bare_sse(hit: Hit, send: Send) -> None:
    """A buffering SSE upstream: no SSE headers of its own, a content-length, and ``data:`` without a space."""
    events = tgi_stream_events(PROMPT, DEFAULT_TOKENS, finish_reason="eos_token")
    body = b"".join(b"data:" + dumps(e) + b"\n\n" for e in events)
    headers = [
        (b"content-type", b"text/event-stream"),
        (b"cache-control", b"max-age=3600"),
        (b"x-accel-buffering", b"yes"),
        (b"content-length", str(len(body)).encode()),
    ]
    await reply(send, 200, headers, body)


async def test_sse_headers_are_added_when_the_upstream_omits_them() -> None:
    """The gateway sets the SSE headers itself and drops a length that the reframed body no longer has."""
    with scripted(_bare_sse) as (_, url):
        async with forwarding_app(url) as app:
            stream, body = await request(app, "POST", "/generate_stream", json_body={"inputs": PROMPT})
    headers = stream.start["headers"]
    assert [v for k, v in headers if k == b"cache-control"] == [b"no-cache"]
    assert [v for k, v in headers if k == b"x-accel-buffering"] == [b"no"]
    assert all(k != b"content-length" for k, _ in headers)
    assert objects(sse_payloads(body)) == tgi_stream_events(PROMPT, DEFAULT_TOKENS, finish_reason="eos_token")


# --- [DONE] and framing ---------------------------------------------------------------------------

VARIANTS = {
    "hf": {},
    "transformers-no-done": {"x-fake-quirks": "transformers"},
    "nospace": {"x-fake-scenario": "nospace"},
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("route", OPENAI_ROUTES, ids=lambda r: r.path)
async def test_openai_streams_end_with_exactly_one_done(
    via: Opener, fake: FakeHF, route: StreamRoute, variant: str
) -> None:
    """``data: [DONE]`` exactly once and last, whether the upstream sent it, omitted it or wrote ``data:[DONE]``."""
    live = await collect(via, route.path, route.body(), dict(VARIANTS[variant]))
    assert live.status == 200
    payloads = sse_payloads(live.body)
    assert payloads[-1] == "[DONE]" and payloads.count("[DONE]") == 1
    events = objects(payloads)
    assert events == route.expected(events[0], tf=variant.startswith("transformers"))


@pytest.mark.parametrize("variant", ["hf", "nospace"])
@pytest.mark.parametrize("route", TGI_ROUTES, ids=lambda r: r.path)
async def test_tgi_streams_never_get_done(via: Opener, fake: FakeHF, route: StreamRoute, variant: str) -> None:
    """No ``[DONE]`` on ``/generate_stream`` nor ``/`` with ``"stream": true``; one space after ``data:``."""
    live = await collect(via, route.path, route.body(), dict(VARIANTS[variant]))
    assert live.status == 200
    payloads = sse_payloads(live.body)
    assert "[DONE]" not in payloads
    assert objects(payloads) == route.expected({})


async def _tgi_stream_with_done(hit: Hit, send: Send) -> None:
    """A TGI stream followed by a ``data: [DONE]`` it should not have."""
    events = tgi_stream_events(PROMPT, DEFAULT_TOKENS, finish_reason="eos_token")
    chunks = [b"data: " + dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]
    await reply(send, 200, [(b"content-type", b"text/event-stream")], *chunks)


@pytest.mark.parametrize("route", TGI_ROUTES, ids=lambda r: r.path)
async def test_a_done_from_the_upstream_is_dropped_on_tgi_routes(route: StreamRoute) -> None:
    """An upstream's ``[DONE]`` on a TGI route is removed, with its blank line."""
    with scripted(_tgi_stream_with_done) as (_, url):
        async with forwarding_app(url) as app:
            _, body = await request(app, "POST", route.path, json_body=route.body())
    payloads = sse_payloads(body)
    assert "[DONE]" not in payloads
    assert objects(payloads) == route.expected({})


# --- errors inside a stream -----------------------------------------------------------------------

STREAM_ERRORS = {
    "stream-error": {"error": STREAM_ERROR, "error_type": "generation"},
    "stream-error-openai": {"error": STREAM_ERROR, "error_type": "validation"},  # http_status_code 422
}


@pytest.mark.parametrize("style", STREAM_ERRORS)
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.path)
async def test_an_in_stream_error_becomes_one_final_error_event(
    via: Opener, fake: FakeHF, route: StreamRoute, style: str
) -> None:
    """TGI ``{"error", "error_type"}`` and OpenAI ``{"error": {"message", "http_status_code"}}`` become one
    ``{"error": str, "error_type": str}`` event, the last one: no ``[DONE]`` after it."""
    live = await collect(via, route.path, route.body(), {"x-fake-scenario": style})
    assert live.status == 200
    payloads = sse_payloads(live.body)
    assert "[DONE]" not in payloads
    events = objects(payloads)
    assert events[:-1] == route.expected(events[0])[:2]
    assert events[-1] == STREAM_ERRORS[style]


async def _error_then(hit: Hit, send: Send) -> None:
    """One token event, an in-stream error, then (per path) more events and [DONE], or a dropped connection."""
    token = dumps(tgi_stream_events(PROMPT, 2)[0])
    error = b'{"error":"boom","error_type":"generation"}'
    chunks = [b"data: " + token + b"\n\n", b"data: " + error + b"\n\n"]
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for chunk in chunks:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    if hit.path == "/generate_stream":
        raise ConnectionAbortedError("scripted upstream drops after its error event")
    for chunk in (b"data: " + token + b"\n\n", b"data: [DONE]\n\n"):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


@pytest.mark.parametrize(
    ("path", "body"),
    [("/generate_stream", {"inputs": PROMPT}), ("/v1/chat/completions", CHAT.body())],
    ids=["then-drop", "then-more-events"],
)
async def test_nothing_follows_an_error_event(path: str, body: dict[str, Any]) -> None:
    """After an in-stream error the stream ends: later events, ``[DONE]`` and a second error are not sent."""
    with scripted(_error_then) as (_, url):
        async with forwarding_app(url) as app:
            _, answer = await request(app, "POST", path, json_body=body)
    payloads = sse_payloads(answer)
    assert objects(payloads) == [tgi_stream_events(PROMPT, 2)[0], {"error": "boom", "error_type": "generation"}]
    assert "[DONE]" not in payloads


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.path)
async def test_an_upstream_that_drops_mid_stream_ends_with_an_error_event(
    via: Opener, fake: FakeHF, key: str, route: StreamRoute
) -> None:
    """Two events, then the upstream's connection breaks: one final ``upstream_unavailable`` error event."""
    live = await collect(via, route.path, route.body(), scenario("stream-drop", key))
    assert live.status == 200
    payloads = sse_payloads(live.body)
    assert "[DONE]" not in payloads
    events = objects(payloads)
    assert events[:-1] == route.expected(events[0])[:2]
    assert set(events[-1]) == {"error", "error_type"} and events[-1]["error_type"] == "upstream_unavailable"
    assert fake.streams[key].aborted


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.path)
async def test_a_stalled_stream_ends_with_a_timeout_event(
    via: Opener, fake: FakeHF, key: str, route: StreamRoute
) -> None:
    """An upstream silent for longer than the read timeout: one ``upstream_timeout`` event, and it is hung up on."""
    live = await collect(via, route.path, route.body(), scenario("stall:30", key), upstream_timeout=1.0)
    assert live.status == 200
    payloads = sse_payloads(live.body)
    assert "[DONE]" not in payloads
    events = objects(payloads)
    assert events[:-1] == route.expected(events[0])[:1]
    assert set(events[-1]) == {"error", "error_type"} and events[-1]["error_type"] == "upstream_timeout"
    await fake.await_for(lambda: fake.streams[key].cancelled, timeout=5)


# --- the client hangs up --------------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.path)
async def test_a_client_that_leaves_mid_stream_cancels_the_upstream(
    via: Opener, fake: FakeHF, key: str, route: StreamRoute
) -> None:
    """Leaving after the first event (driver: ``http.disconnect``; socket: the connection closes) hangs up
    on the upstream at once: the fake sees its stream cancelled, with nothing more sent."""
    async with via(route.path, route.body(), scenario("gate", key)) as live:
        await live.event()
        await fake.await_for(lambda: fake.gated(key))
    await fake.await_for(lambda: fake.streams[key].cancelled, timeout=5)
    assert fake.streams[key].events_sent == 1 and not fake.streams[key].finished


# --- many at once ---------------------------------------------------------------------------------


async def test_concurrent_streams_each_get_their_own_tokens(via: Opener, fake: FakeHF, key: str) -> None:
    """50 streams with distinct prompts, all held upstream at once, then released: each gets exactly its own."""
    count = 50
    keys = [f"{key}#{i}" for i in range(count)]
    prompts = [f"prompt number {i} " + "word " * (i % 7) for i in range(count)]
    routes = [GENERATE_STREAM if i % 2 else CHAT for i in range(count)]

    async def one(i: int) -> list[dict[str, Any]]:
        live = await collect(via, routes[i].path, routes[i].body(prompts[i]), scenario("gate", keys[i]))
        assert live.status == 200
        return objects(sse_payloads(live.body))

    async with asyncio.timeout(60):
        tasks = [asyncio.ensure_future(one(i)) for i in range(count)]
        try:
            await fake.await_for(lambda: all(fake.gated(k) for k in keys), timeout=30)
        finally:
            for k in keys:
                fake.release(k)
        results = await asyncio.gather(*tasks)
    for i, events in enumerate(results):
        assert events == routes[i].expected(events[0], prompts[i]), f"stream {i} got someone else's tokens"
