"""ResponseCache in the reference stack, in front of the fake HF upstream (on a socket), driven in process.

The fake answers every request with a fresh ``id`` (``chatcmpl-<n>``) and the current ``created``, so an
answer that comes back byte for byte identical came from the cache; ``fake.requests`` shows what reached
the upstream. Streams are observed with the raw driver (``tests.asgi_driver``), chunk by chunk.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hfasgi.cache import CacheConfig, MemoryCacheStore, RedisCacheStore, ResponseCache
from hfasgi.catalog import ModelCatalog
from hfasgi.context import get_context
from hfasgi.forwarding.upstream import Upstream
from hfasgi.limits import Limit
from hfasgi.observability import TracingConfig
from hfasgi.ratelimit import MemoryLimiterStore, RateLimiterConfig
from hfasgi.redis_client import RedisConnection
from tests.asgi_driver import Stream, open_stream, request
from tests.cache.conftest import MakeGateway
from tests.cache.support import CHAT_MODEL, FakeClock, chat, sse_events
from tests.redis_support import delete_prefixed
from tests.upstream import FakeHF, expected_chat, expected_text_classification

pytestmark = pytest.mark.anyio

CHAT = "/v1/chat/completions"
WITH_USAGE = {"stream_options": {"include_usage": True}}


def upstream_calls(fake: FakeHF, path: str = CHAT) -> int:
    return sum(1 for r in fake.requests if r.path.endswith(path))  # the router puts /hf-inference in front


async def post(app: Any, path: str, body: Any, **headers: str) -> tuple[Stream, bytes]:
    return await request(app, "POST", path, json_body=body, headers=headers)


def cache_header(stream: Stream) -> bytes | None:
    return stream.headers.get(b"x-cache")


# --- hits and misses ---------------------------------------------------------------------------------


async def test_json_from_json_a_hit_is_the_first_answer_and_never_reaches_the_upstream(
    make_gateway: MakeGateway, fake: FakeHF
) -> None:
    app = await make_gateway()
    first, first_body = await post(app, CHAT, chat())
    second, second_body = await post(app, CHAT, chat())
    assert (first.status, cache_header(first)) == (200, b"miss")
    assert (second.status, cache_header(second)) == (200, b"hit")
    assert second_body == first_body  # same id, same created: the cached bytes
    assert json.loads(second_body)["choices"][0]["message"]["content"] == expected_chat(chat()["messages"], 4)
    assert second.headers[b"content-length"] == str(len(second_body)).encode()
    assert second.headers[b"content-type"] == b"application/json"
    assert b"x-request-id" in second.headers and second.headers[b"x-request-id"] != first.headers[b"x-request-id"]
    assert upstream_calls(fake) == 1


async def test_what_is_not_deterministic_passes_untouched(make_gateway: MakeGateway, fake: FakeHF) -> None:
    app = await make_gateway()
    for body in (chat(temperature=0.7), chat(temperature=0.7), {**chat(), "temperature": None}, chat(n=2)):
        stream, _ = await post(app, CHAT, body)
        assert stream.status == 200
        assert cache_header(stream) is None  # no X-Cache: the cache did not take part
    assert upstream_calls(fake) == 4


async def test_the_key_ignores_stream_user_and_the_order_of_fields(make_gateway: MakeGateway, fake: FakeHF) -> None:
    app = await make_gateway()
    await post(app, CHAT, chat(user="alice"))
    reordered = dict(reversed(list(chat(user="bob").items())))
    hit, _ = await post(app, CHAT, reordered)
    assert cache_header(hit) == b"hit"
    changed, _ = await post(app, CHAT, chat(max_tokens=3))
    assert cache_header(changed) == b"miss"
    assert upstream_calls(fake) == 2


async def test_placeholder_models_share_the_default_models_entry(make_gateway: MakeGateway, fake: FakeHF) -> None:
    app = await make_gateway(default_model=CHAT_MODEL)
    await post(app, CHAT, chat(model="dummy"))
    hit, _ = await post(app, CHAT, chat(model=CHAT_MODEL))
    assert cache_header(hit) == b"hit"
    assert upstream_calls(fake) == 1


@pytest.mark.parametrize(
    ("headers", "extra"),
    [({"x-use-cache": "false"}, {}), ({}, {"options": {"use_cache": False}})],
    ids=["x-use-cache-header", "options.use_cache"],
)
async def test_a_client_that_refuses_the_cache_neither_reads_nor_writes_it(
    make_gateway: MakeGateway, fake: FakeHF, headers: dict[str, str], extra: dict[str, Any]
) -> None:
    app = await make_gateway()
    path = "/models/fake/text-classification"
    body = {"inputs": "Alice met Bob", **extra}
    await post(app, path, {"inputs": "Alice met Bob"})  # cached
    refused, refused_body = await post(app, path, body, **headers)
    assert refused.status == 200 and cache_header(refused) is None
    assert json.loads(refused_body) == [expected_text_classification("Alice met Bob")]
    assert upstream_calls(fake, path) == 2  # it was not answered from the cache
    fresh_body = {"inputs": "Bob met Alice", **extra}
    await post(app, path, fresh_body, **headers)
    after, _ = await post(app, path, {"inputs": "Bob met Alice"})
    assert cache_header(after) == b"miss"  # and what it got was not stored
    assert upstream_calls(fake, path) == 4


# --- what is never stored ------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["error:500", "error:422", "error:503:tgi", "rate:5:0"])
async def test_errors_are_not_stored(make_gateway: MakeGateway, fake: FakeHF, scenario: str) -> None:
    app = await make_gateway()
    failed, _ = await post(app, CHAT, chat("an error"), **{"x-fake-scenario": scenario})
    assert failed.status >= 400
    assert cache_header(failed) == b"miss"
    retried, _ = await post(app, CHAT, chat("an error"))
    assert (retried.status, cache_header(retried)) == (200, b"miss")
    again, _ = await post(app, CHAT, chat("an error"))
    assert cache_header(again) == b"hit"


@pytest.mark.parametrize("scenario", ["stream-error", "stream-error-openai", "stream-drop"])
async def test_streams_with_an_error_event_or_cut_short_are_not_stored(
    make_gateway: MakeGateway, fake: FakeHF, scenario: str
) -> None:
    app = await make_gateway()
    body = chat("a failing stream", stream=True)
    failed, events = await post(app, CHAT, body, **{"x-fake-scenario": scenario})
    assert failed.status == 200 and cache_header(failed) == b"miss"
    assert "error" in sse_events(events)[-1]
    for expected in (b"miss", b"hit"):
        stream, _ = await post(app, CHAT, body)
        assert cache_header(stream) == expected


async def test_a_stream_the_client_left_is_not_stored(make_gateway: MakeGateway, fake: FakeHF) -> None:
    app = await make_gateway()
    body = chat("the client leaves", stream=True)
    headers = {"x-fake-scenario": "gate", "x-fake-key": "cache-left"}
    async with open_stream(app, "POST", CHAT, json_body=body, headers=headers) as s:
        assert (await s.chunk()).startswith(b"data: {")
        assert await fake.await_for(lambda: fake.gated("cache-left"))
    assert await fake.await_for(lambda: fake.streams["cache-left"].cancelled)
    stream, _ = await post(app, CHAT, body)
    assert cache_header(stream) == b"miss"


async def test_a_miss_streams_chunk_by_chunk(make_gateway: MakeGateway, fake: FakeHF) -> None:
    app = await make_gateway()
    headers = {"x-fake-scenario": "gate", "x-fake-key": "cache-gate"}
    async with open_stream(app, "POST", CHAT, json_body=chat("gated", stream=True), headers=headers) as s:
        assert cache_header(s) == b"miss"
        assert (await s.chunk()).startswith(b"data: {")  # before the producer is released
        assert await fake.await_for(lambda: fake.gated("cache-gate"))
        assert not s.ended
        fake.release("cache-gate")
        assert (await s.rest()).endswith(b"data: [DONE]\n\n")
    hit, _ = await post(app, CHAT, chat("gated", stream=True))
    assert cache_header(hit) == b"hit"


async def test_answers_over_the_size_bound_pass_but_are_not_stored(make_gateway: MakeGateway, fake: FakeHF) -> None:
    app = await make_gateway(max_entry_bytes=200)
    for body in (chat("too large"), chat("too large", stream=True)):
        for _ in range(2):
            stream, answer = await post(app, CHAT, body)
            assert stream.status == 200 and len(answer) > 200
            assert cache_header(stream) == b"miss"
    assert upstream_calls(fake) == 4


async def test_an_entry_expires_after_the_ttl(make_gateway: MakeGateway, fake: FakeHF, clock: FakeClock) -> None:
    app = await make_gateway(ttl=30.0)
    await post(app, CHAT, chat("expiring"))
    clock.now += 29.9
    assert cache_header((await post(app, CHAT, chat("expiring")))[0]) == b"hit"
    clock.now += 0.1
    assert cache_header((await post(app, CHAT, chat("expiring")))[0]) == b"miss"
    assert upstream_calls(fake) == 2


async def test_concurrent_requests_get_their_own_answers_missed_and_hit(
    make_gateway: MakeGateway, fake: FakeHF
) -> None:
    app = await make_gateway()
    bodies = [chat(f"prompt number {i}", stream=i % 2 == 0, **WITH_USAGE) for i in range(30)]

    async def one(body: dict[str, Any]) -> tuple[bytes | None, str]:
        stream, answer = await post(app, CHAT, body)
        if body.get("stream"):
            text = "".join(
                e["choices"][0]["delta"].get("content") or "" for e in sse_events(answer)[:-1] if e["choices"]
            )
        else:
            text = json.loads(answer)["choices"][0]["message"]["content"]
        return cache_header(stream), text

    for expected in (b"miss", b"hit"):
        results = await asyncio.gather(*(one(body) for body in bodies))
        for body, (header, text) in zip(bodies, results, strict=True):
            assert header == expected
            assert text == expected_chat(body["messages"], 4)
    assert upstream_calls(fake) == 30


# --- principals ----------------------------------------------------------------------------------------


async def test_no_answer_crosses_principals(make_gateway: MakeGateway, fake: FakeHF) -> None:
    app = await make_gateway(keys=["alice=key-alice", "bob=key-bob"])
    alice = {"authorization": "Bearer key-alice"}
    bob = {"authorization": "Bearer key-bob"}
    first, first_body = await post(app, CHAT, chat("private"), **alice)
    other, other_body = await post(app, CHAT, chat("private"), **bob)
    assert cache_header(first) == cache_header(other) == b"miss"
    assert other_body != first_body
    assert upstream_calls(fake) == 2  # two keys, the same body: the upstream was asked twice
    again, again_body = await post(app, CHAT, chat("private"), **alice)
    assert cache_header(again) == b"hit" and again_body == first_body
    assert upstream_calls(fake) == 2
    refused, _ = await post(app, CHAT, chat("private"))  # no key: refused before the cache
    assert refused.status == 401 and cache_header(refused) is None


async def test_a_shared_cache_serves_every_principal(make_gateway: MakeGateway, fake: FakeHF) -> None:
    app = await make_gateway(keys=["alice=key-alice", "bob=key-bob"], shared=True)
    _, first = await post(app, CHAT, chat("org-wide"), authorization="Bearer key-alice")
    hit, second = await post(app, CHAT, chat("org-wide"), authorization="Bearer key-bob")
    assert cache_header(hit) == b"hit" and second == first
    assert upstream_calls(fake) == 1


# --- both forms --------------------------------------------------------------------------------------------


async def test_stream_from_stream(make_gateway: MakeGateway, fake: FakeHF) -> None:
    app = await make_gateway()
    body = chat("streamed twice", stream=True, **WITH_USAGE)
    first, first_events = await post(app, CHAT, body)
    second, second_events = await post(app, CHAT, body)
    assert cache_header(first) == b"miss" and cache_header(second) == b"hit"
    assert second_events == first_events
    assert second.headers[b"content-type"] == b"text/event-stream"
    assert second.headers[b"cache-control"] == b"no-cache" and second.headers[b"x-accel-buffering"] == b"no"
    assert b"content-length" not in second.headers
    events = sse_events(second_events)
    assert events[-1] == "[DONE]" and events[-2]["choices"] == [] and events[-2]["usage"]
    # the same stream without the usage chunk, for a client that did not ask for it
    plain, plain_events = await post(app, CHAT, chat("streamed twice", stream=True))
    assert cache_header(plain) == b"hit"
    assert sse_events(plain_events) == [*events[:-2], "[DONE]"]
    assert upstream_calls(fake) == 1


async def test_stream_from_json(make_gateway: MakeGateway, fake: FakeHF) -> None:
    app = await make_gateway()
    _, whole = await post(app, CHAT, chat("first whole"))
    answer = json.loads(whole)
    stream, events = await post(app, CHAT, chat("first whole", stream=True, **WITH_USAGE))
    assert cache_header(stream) == b"hit"
    assert stream.headers[b"content-type"] == b"text/event-stream" and b"content-length" not in stream.headers
    parsed = sse_events(events)
    assert parsed[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in parsed[:-1] if e["choices"])
    assert text == answer["choices"][0]["message"]["content"]
    assert parsed[-2]["usage"] == answer["usage"]
    assert {e["id"] for e in parsed[:-1]} == {answer["id"]}
    assert upstream_calls(fake) == 1


async def test_json_from_stream(make_gateway: MakeGateway, fake: FakeHF) -> None:
    app = await make_gateway()
    _, events = await post(app, CHAT, chat("first streamed", stream=True, **WITH_USAGE))
    whole, body = await post(app, CHAT, chat("first streamed"))
    assert cache_header(whole) == b"hit"
    answer = json.loads(body)
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == expected_chat(chat("first streamed")["messages"], 4)
    assert answer["usage"] == sse_events(events)[-2]["usage"]
    assert whole.headers[b"content-length"] == str(len(body)).encode()
    assert upstream_calls(fake) == 1


async def test_a_stream_without_usage_cannot_answer_a_client_that_needs_it(
    make_gateway: MakeGateway, fake: FakeHF
) -> None:
    app = await make_gateway()
    await post(app, CHAT, chat("no usage", stream=True))
    for_usage, _ = await post(app, CHAT, chat("no usage", stream=True, **WITH_USAGE))
    assert cache_header(for_usage) == b"miss"  # the stored stream has no usage chunk to give
    whole, _ = await post(app, CHAT, chat("no usage"))
    assert cache_header(whole) == b"hit"  # but the stream it fetched had one: it replaced the entry
    assert upstream_calls(fake) == 2
    await post(app, CHAT, chat("no usage either", stream=True))
    whole, body = await post(app, CHAT, chat("no usage either"))
    assert cache_header(whole) == b"miss"  # a chat completion is not made without its usage
    assert json.loads(body)["usage"]
    streamed, _ = await post(app, CHAT, chat("no usage either", stream=True, **WITH_USAGE))
    assert cache_header(streamed) == b"hit"  # the fresh whole answer replaced the entry, and streams too
    assert upstream_calls(fake) == 4


async def test_tgi_generate_and_generate_stream_share_one_entry(make_gateway: MakeGateway, fake: FakeHF) -> None:
    app = await make_gateway("tgi")
    body = {"inputs": "The quick brown fox", "parameters": {"max_new_tokens": 3}}
    _, whole = await post(app, "/generate", body)
    stream, events = await post(app, "/generate_stream", body)
    assert cache_header(stream) == b"hit"
    (only,) = sse_events(events)  # no [DONE] on TGI streams
    assert only["generated_text"] == only["token"]["text"] == json.loads(whole)["generated_text"]
    assert upstream_calls(fake, "/generate") == 1 and upstream_calls(fake, "/generate_stream") == 0
    # and the other way round
    other = {"inputs": "The lazy dog", "parameters": {"max_new_tokens": 3}}
    _, streamed = await post(app, "/generate_stream", other)
    hit, again = await post(app, "/generate", other)
    assert cache_header(hit) == b"hit"
    assert json.loads(again) == {"generated_text": sse_events(streamed)[-1]["generated_text"]}
    assert upstream_calls(fake, "/generate_stream") == 1


async def test_a_hit_restores_the_upstream_usage_a_translation_noted(make_gateway: MakeGateway, fake: FakeHF) -> None:
    app = await make_gateway("openai", default_model="fake/text-generation")  # TGI over /v1/completions
    seen: list[tuple[Any, Any]] = []

    async def probe(scope: Any, receive: Any, send: Any) -> None:
        await app(scope, receive, send)
        ctx = get_context(scope)
        seen.append((ctx.cache_hit, getattr(ctx, "upstream_usage", "no such slot")))

    body = {"inputs": "The quick brown fox", "parameters": {"max_new_tokens": 3}}
    first, whole = await post(probe, "/generate", body)
    second, again = await post(probe, "/generate", body)
    assert first.status == 200
    assert (cache_header(first), cache_header(second)) == (b"miss", b"hit") and again == whole
    assert "usage" not in json.loads(whole)  # the TGI answer cannot carry the prompt's token count
    (missed, missed_usage), (hit, hit_usage) = seen
    assert (missed, hit) == (False, True)
    assert hit_usage == missed_usage
    if missed_usage != "no such slot":  # the context slot the reformatter fills (hfasgi.context)
        assert missed_usage is not None and missed_usage[1] == 3


async def test_tgi_sampling_is_never_cached(make_gateway: MakeGateway, fake: FakeHF) -> None:
    app = await make_gateway("tgi")
    for body in ({"inputs": "x"}, {"inputs": "x", "parameters": {"do_sample": True}}):
        for _ in range(2):
            stream, _ = await post(app, "/generate", body)
            assert cache_header(stream) is None
    assert upstream_calls(fake, "/generate") == 4


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/models/fake/text-classification", {"inputs": "Alice met Bob", "parameters": {}}),
        ("/models/fake/feature-extraction/pipeline/feature-extraction", {"inputs": ["a", "b"]}),
        ("/models/fake/fill-mask/pipeline/fill-mask", {"inputs": "Paris is the [MASK] of France"}),
        (
            "/models/fake/summarization",
            {"inputs": "A long text", "parameters": {"generate_parameters": {"do_sample": False}}},
        ),  # fmt: skip
    ],
)
async def test_deterministic_tasks_are_cached(make_gateway: MakeGateway, fake: FakeHF, path: str, body: Any) -> None:
    app = await make_gateway()
    first, first_body = await post(app, path, body)
    second, second_body = await post(app, path, body)
    assert first.status == 200
    assert (cache_header(first), cache_header(second)) == (b"miss", b"hit")
    assert second_body == first_body
    assert second.headers.get(b"x-compute-type") == b"cpu"  # the upstream's headers are replayed
    assert len(fake.requests) == 1


async def test_summarization_that_may_sample_is_not_cached(make_gateway: MakeGateway, fake: FakeHF) -> None:
    app = await make_gateway()
    stream, _ = await post(app, "/models/fake/summarization", {"inputs": "A long text"})
    assert stream.status == 200 and cache_header(stream) is None


# --- with the other layers -------------------------------------------------------------------------------


async def test_a_hit_still_carries_the_outer_layers_headers(make_gateway: MakeGateway, fake: FakeHF) -> None:
    limiter = RateLimiterConfig(store=MemoryLimiterStore(), rate_limit=Limit(100, 60))
    app = await make_gateway(limiter=limiter)
    await post(app, CHAT, chat("limited"))
    hit, _ = await post(app, CHAT, chat("limited"))
    assert cache_header(hit) == b"hit"
    assert hit.headers[b"x-ratelimit-remaining"] == b"98"  # a hit is still a request the limiter counts
    assert b"x-request-id" in hit.headers


async def test_tracing_records_whether_the_cache_answered(make_gateway: MakeGateway, fake: FakeHF) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = await make_gateway(tracing=TracingConfig(tracer_provider=provider))
    await post(app, CHAT, chat("traced"))
    await post(app, CHAT, chat("traced"))
    await post(app, CHAT, chat("traced", temperature=1))
    servers = [s for s in exporter.get_finished_spans() if s.kind.name == "SERVER"]
    assert [(s.attributes or {}).get("hfasgi.cache_hit") for s in servers] == [False, True, None]
    clients = [s for s in exporter.get_finished_spans() if s.kind.name == "CLIENT"]
    assert len(clients) == 2  # no upstream span for the hit


async def test_through_the_redis_store(
    make_gateway: MakeGateway, fake: FakeHF, shared_redis_url: str, key_prefix: str
) -> None:
    store = RedisCacheStore(RedisConnection(shared_redis_url), prefix=key_prefix)
    app = await make_gateway(cache_store=store)
    try:
        _, first = await post(app, CHAT, chat("in redis"))
        hit, second = await post(app, CHAT, chat("in redis"))
        assert cache_header(hit) == b"hit" and second == first
        keys = [k async for k in store.redis.client.scan_iter(match=key_prefix + "*")]
        assert len(keys) == 1 and b"in redis" not in keys[0]  # the key is a digest: no prompt, no principal
    finally:
        await delete_prefixed(store.redis.client, key_prefix)


class BrokenStore(MemoryCacheStore):
    async def get(self, key: str) -> bytes | None:
        raise RuntimeError("the store is broken")

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        raise RuntimeError("the store is broken")


async def test_a_broken_store_never_fails_a_request(
    make_gateway: MakeGateway, fake: FakeHF, caplog: pytest.LogCaptureFixture
) -> None:
    app = await make_gateway(cache_store=BrokenStore())
    with caplog.at_level(logging.WARNING, logger="hfasgi.cache"):
        for _ in range(3):
            stream, body = await post(app, CHAT, chat("broken"))
            assert stream.status == 200 and cache_header(stream) == b"miss"
            assert json.loads(body)["choices"]
    assert len([r for r in caplog.records if r.name == "hfasgi.cache"]) == 1  # rate-limited, not per request


# --- alone, around a small app -----------------------------------------------------------------------------


def alone(app: Any, store: MemoryCacheStore, **config: Any) -> ResponseCache:
    catalog = ModelCatalog.single(Upstream(url="http://upstream.test"))
    return ResponseCache(app, config=CacheConfig(store=store, catalog=catalog, **config))


class Answering:
    """An app answering chat requests with a counter in the body and the given extra headers."""

    def __init__(self, *headers: tuple[bytes, bytes], status: int = 200, content_type: bytes = b"application/json"):
        self.headers = list(headers)
        self.status = status
        self.content_type = content_type
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.bodies.append(body)
        assert get_context(scope).body in (None, body)  # None: the cache passed the request through unread
        payload = json.dumps({"n": len(self.bodies), "usage": None}).encode()
        headers = [(b"content-type", self.content_type), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": self.status, "headers": [*headers, *self.headers]})
        await send({"type": "http.response.body", "body": payload})


@pytest.mark.parametrize(
    "answer",
    [
        Answering((b"cache-control", b"no-store")),
        Answering((b"cache-control", b"private, max-age=0")),
        Answering((b"set-cookie", b"session=1")),
        Answering(content_type=b"image/png"),
        Answering(status=201),
    ],
    ids=["no-store", "private", "set-cookie", "not-json", "status-201"],
)
async def test_answers_marked_not_cacheable_are_not_stored(answer: Answering, store: MemoryCacheStore) -> None:
    app = alone(answer, store)
    for _ in range(2):
        stream, _ = await request(app, "POST", CHAT, json_body=chat())
        assert cache_header(stream) == b"miss"
    assert len(answer.bodies) == 2 and len(store) == 0


async def test_alone_it_reads_the_body_and_the_app_still_gets_it_whole(store: MemoryCacheStore) -> None:
    answer = Answering((b"x-cache", b"upstream-says-so"))
    app = alone(answer, store)
    whole = json.dumps(chat("chunked")).encode()
    chunks = [whole[:7], whole[7:30], whole[30:]]
    first, _ = await request(app, "POST", CHAT, body=chunks, headers={"content-type": "application/json"})
    second, body = await request(app, "POST", CHAT, body=chunks, headers={"content-type": "application/json"})
    assert answer.bodies == [whole]
    assert [v for k, v in first.start["headers"] if k == b"x-cache"] == [b"miss"]  # the upstream's is replaced
    assert [v for k, v in second.start["headers"] if k == b"x-cache"] == [b"hit"]
    assert json.loads(body)["n"] == 1


async def test_other_routes_and_methods_pass_through(store: MemoryCacheStore) -> None:
    answer = Answering()
    app = alone(answer, store)
    for method, path in (("POST", "/app/own"), ("GET", "/v1/models"), ("POST", "/models/bad id!")):
        stream, _ = await request(app, method, path, json_body={"temperature": 0})
        assert cache_header(stream) is None
    assert len(answer.bodies) == 3


@pytest.mark.parametrize(
    ("field", "value"),
    [("ttl", 0), ("ttl", -1), ("ttl", float("nan")), ("ttl", float("inf")), ("max_entry_bytes", 0),
     ("max_body_bytes", 0), ("store", object())],
)  # fmt: skip
def test_a_bad_config_fails_when_it_is_built(field: str, value: Any) -> None:
    options: dict[str, Any] = {"store": MemoryCacheStore(), "catalog": ModelCatalog.single(Upstream()), field: value}
    with pytest.raises(ValueError, match=field):
        CacheConfig(**options)


def test_the_config_makes_its_layer_with_the_store_as_its_resource() -> None:
    store = MemoryCacheStore()
    config = CacheConfig(store=store, catalog=ModelCatalog.single(Upstream()))
    layer = config.middleware
    assert layer.cls is ResponseCache and layer.kwargs == {"config": config} and layer.resources == (store,)
