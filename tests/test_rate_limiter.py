"""RateLimiter in process: headers, refusals, reservations and their settlement however a request ends."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from hfasgi.context import get_context
from hfasgi.limits import Limit
from hfasgi.principal import Principal
from hfasgi.ratelimit import Charge, Decision, MemoryLimiterStore, RateLimiter, RateLimiterConfig
from hfasgi.redis_client import STORE_ERRORS
from tests.asgi_driver import open_stream, request

CHAT = "/v1/chat/completions"


def _body(max_tokens: int | None = 10, content: str = "hi") -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": content}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


class Upstreamish:
    """Reads the body, then answers JSON with a usage, an SSE stream, an error or an exception."""

    def __init__(self, mode: str = "json", total: int = 7) -> None:
        self.mode = mode
        self.total = total
        self.bodies: list[Any] = []
        self.release = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        self.bodies.append(json.loads(message.get("body") or b"null"))
        if self.mode == "raise":
            raise RuntimeError("boom")
        if self.mode == "error":
            body = b'{"error":"bad","error_type":"validation"}'
            await send(
                {"type": "http.response.start", "status": 422, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        if self.mode == "stream":
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
            )
            for _ in range(3):
                await send(
                    {"type": "http.response.body", "body": b'data: {"choices":[{"delta":{}}]}\n\n', "more_body": True}
                )
            released = asyncio.ensure_future(self.release.wait())
            left = asyncio.ensure_future(receive())  # http.disconnect when the client hangs up
            done, pending = await asyncio.wait({released, left}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            if released in done:
                await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
            return
        usage = {"prompt_tokens": 2, "completion_tokens": self.total - 2, "total_tokens": self.total}
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps({"choices": [], "usage": usage}).encode()})


def _limited(inner: Any, principal: Principal | None = None, **options: Any) -> Any:
    limiter = RateLimiter(inner, config=RateLimiterConfig(**options))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if principal is not None:
            get_context(scope).principal = principal
        await limiter(scope, receive, send)

    return app


ALICE = Principal(id="alice")


@pytest.mark.anyio
async def test_every_limited_response_carries_the_counters_and_the_429_the_ietf_headers() -> None:
    app = _limited(Upstreamish(), ALICE, rate_limit=Limit(2, 60))
    remaining = []
    for _ in range(2):
        stream, _ = await request(app, "POST", CHAT, json_body=_body())
        assert stream.status == 200
        assert stream.headers[b"x-ratelimit-limit"] == b"2"
        assert 0 < int(stream.headers[b"x-ratelimit-reset"]) <= 60
        remaining.append(stream.headers[b"x-ratelimit-remaining"])
    assert remaining == [b"1", b"0"]
    stream, body = await request(app, "POST", CHAT, json_body=_body())
    assert stream.status == 429
    error = json.loads(body)
    assert error["error_type"] == "rate_limit"
    assert "2 requests per 60 s for 'alice'" in error["error"] and "retry in" in error["error"]
    retry = int(stream.headers[b"retry-after"])
    assert 0 < retry <= 60
    assert stream.headers[b"ratelimit"] == f'"api";r=0;t={retry}'.encode()
    assert stream.headers[b"ratelimit-policy"] == b'"fixed window";"api";q=2;w=60'


@pytest.mark.anyio
async def test_inner_errors_carry_the_counters_too() -> None:
    stream, _ = await request(
        _limited(Upstreamish("error"), ALICE, rate_limit=Limit(5, 60)), "POST", CHAT, json_body={}
    )
    assert stream.status == 422 and stream.headers[b"x-ratelimit-remaining"] == b"4"


@pytest.mark.anyio
async def test_a_principals_own_limit_wins_and_principals_are_counted_apart() -> None:
    inner = Upstreamish()
    strict = _limited(inner, Principal(id="strict", rate_limit=Limit(1, 60)), rate_limit=Limit(100, 60))
    assert (await request(strict, "POST", CHAT, json_body=_body()))[0].status == 200
    assert (await request(strict, "POST", CHAT, json_body=_body()))[0].status == 429


@pytest.mark.anyio
async def test_without_auth_limits_count_per_client_address() -> None:
    app = _limited(Upstreamish(), None, rate_limit=Limit(1, 60))
    assert (await request(app, "POST", CHAT, json_body=_body()))[0].status == 200
    stream, body = await request(app, "POST", CHAT, json_body=_body())
    assert stream.status == 429 and "anonymous:127.0.0.1" in json.loads(body)["error"]


@pytest.mark.anyio
async def test_listings_and_foreign_routes_are_not_limited() -> None:
    seen = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = _limited(inner, ALICE, rate_limit=Limit(1, 60))
    for path in ("/v1/models", "/v1/models", "/info", "/mine", "/mine"):
        stream, _ = await request(app, "GET", path)
        assert stream.status == 200 and b"x-ratelimit-limit" not in stream.headers
    assert len(seen) == 5


@pytest.mark.anyio
async def test_no_limits_means_no_headers_and_an_untouched_body() -> None:
    inner = Upstreamish()
    stream, _ = await request(_limited(inner, ALICE), "POST", CHAT, json_body=_body(None))
    assert stream.status == 200 and b"x-ratelimit-limit" not in stream.headers
    assert "max_tokens" not in inner.bodies[0]


@pytest.mark.anyio
async def test_tokens_are_settled_on_the_reported_usage() -> None:
    app = _limited(Upstreamish(total=7), ALICE, token_limit=Limit(1000, 60))
    first, _ = await request(app, "POST", CHAT, json_body=_body(100))
    reserved = 1000 - int(first.headers[b"x-ratelimit-remaining"])
    assert reserved >= 100  # the whole worst case was reserved while it ran
    second, _ = await request(app, "POST", CHAT, json_body=_body(100))
    assert 1000 - int(second.headers[b"x-ratelimit-remaining"]) == 7 + reserved  # only 7 were kept of the first


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["error", "raise"])
async def test_failed_requests_release_their_reservation(mode: str) -> None:
    store = MemoryLimiterStore()
    config = {"store": store, "token_limit": Limit(500, 60)}
    app = _limited(Upstreamish(mode), ALICE, **config)
    if mode == "raise":
        with pytest.raises(RuntimeError):
            await request(app, "POST", CHAT, json_body=_body(400))
    else:
        assert (await request(app, "POST", CHAT, json_body=_body(400)))[0].status == 422
    follow, _ = await request(_limited(Upstreamish(total=1), ALICE, **config), "POST", CHAT, json_body=_body(400))
    assert follow.status == 200  # the 400 reserved by the failed request came back


@pytest.mark.anyio
async def test_concurrent_streams_never_exceed_the_budget_and_release_on_disconnect() -> None:
    inner = Upstreamish("stream")
    store = MemoryLimiterStore()
    app = _limited(inner, ALICE, store=store, token_limit=Limit(1000, 60))
    async with (
        open_stream(app, "POST", CHAT, json_body=_body(300)) as one,
        open_stream(app, "POST", CHAT, json_body=_body(300)) as two,
    ):
        assert (one.status, two.status) == (200, 200)
        third, body = await request(app, "POST", CHAT, json_body=_body(450))
        assert third.status == 429 and json.loads(body)["error_type"] == "rate_limit"
        assert b'"tokens";r=0' in third.headers[b"ratelimit"]
        await two.chunk()
    # both clients hung up: only what they streamed (3 events + the prompt each) stays charged
    inner.release.set()
    after, _ = await request(app, "POST", CHAT, json_body=_body(900))
    assert after.status == 200, "both streams' reservations were settled"


@pytest.mark.anyio
async def test_a_cancelled_request_still_settles() -> None:
    inner = Upstreamish("stream")
    store = MemoryLimiterStore()
    app = _limited(inner, ALICE, store=store, token_limit=Limit(1000, 60))
    sent: list[dict[str, Any]] = []
    started = asyncio.Event()

    bodies = [json.dumps(_body(800)).encode()]

    async def receive() -> dict[str, Any]:
        if bodies:
            return {"type": "http.request", "body": bodies.pop()}
        await asyncio.Event().wait()  # the client never leaves: only a cancellation ends the request
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        started.set()

    scope = {"type": "http", "method": "POST", "path": CHAT, "headers": [], "client": ("1.2.3.4", 1)}
    task = asyncio.ensure_future(app(scope, receive, send))
    await started.wait()
    await asyncio.sleep(0.01)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(10):
        await asyncio.sleep(0)
    inner.mode = "json"
    assert (await request(app, "POST", CHAT, json_body=_body(800)))[0].status == 200


@pytest.mark.anyio
async def test_an_unbounded_chat_is_given_a_maximum_that_fits_the_budget() -> None:
    inner = Upstreamish()
    app = _limited(inner, ALICE, token_limit=Limit(300, 60), default_max_tokens=4096)
    assert (await request(app, "POST", CHAT, json_body=_body(None)))[0].status == 200
    injected = inner.bodies[0]["max_tokens"]
    assert 0 < injected <= 300 - 4  # the default shrank to what the budget holds after the prompt
    small = _limited(inner, ALICE, token_limit=Limit(10_000, 60), default_max_tokens=64)
    await request(small, "POST", CHAT, json_body=_body(None))
    assert inner.bodies[1]["max_tokens"] == 64


@pytest.mark.anyio
async def test_a_request_that_can_never_fit_is_a_400_not_a_429() -> None:
    stream, body = await request(
        _limited(Upstreamish(), ALICE, token_limit=Limit(100, 60)), "POST", CHAT, json_body=_body(500)
    )
    assert stream.status == 400
    error = json.loads(body)
    assert error["error_type"] == "token_limit" and "token limit of 100 per 60 s" in error["error"]


@pytest.mark.anyio
async def test_malformed_json_is_left_for_the_next_layer_to_refuse() -> None:
    seen: list[bytes] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    stream, _ = await request(_limited(inner, ALICE, token_limit=Limit(100, 60)), "POST", CHAT, body=b"{oops")
    assert stream.status == 400 and seen == [b"{oops"]


class _Broken:
    async def acquire(self, identity: str, charges: Sequence[Charge]) -> Decision:
        raise STORE_ERRORS[0]("redis went away")

    async def settle(self, identity: str, charge: Charge, window_id: int, delta: int) -> None:
        raise STORE_ERRORS[0]("redis went away")

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...


@pytest.mark.anyio
async def test_a_failing_store_fails_open_by_default_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "hfasgi.ratelimit")
    app = _limited(Upstreamish(), ALICE, store=_Broken(), rate_limit=Limit(1, 60))
    for _ in range(3):
        stream, _ = await request(app, "POST", CHAT, json_body=_body())
        assert stream.status == 200 and b"x-ratelimit-limit" not in stream.headers
    assert caplog.text.count("uncounted") == 1  # one warning per 10 s, not one per request


@pytest.mark.anyio
async def test_a_failing_store_can_fail_closed() -> None:
    app = _limited(Upstreamish(), ALICE, store=_Broken(), rate_limit=Limit(1, 60), on_store_error="closed")
    stream, body = await request(app, "POST", CHAT, json_body=_body())
    assert stream.status == 503 and stream.headers[b"retry-after"] == b"1"
    assert json.loads(body)["error_type"] == "rate_limit_unavailable"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"default_max_tokens": 0}, "default_max_tokens"),
        ({"on_store_error": "maybe"}, "on_store_error"),
        ({"policy": "two words"}, "policy"),
    ],
)
def test_bad_configuration_names_the_field(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateLimiterConfig(**options)


@pytest.mark.anyio
async def test_unbounded_text_generation_is_given_max_new_tokens() -> None:
    inner = Upstreamish()
    app = _limited(inner, ALICE, token_limit=Limit(10_000, 60), default_max_tokens=50)
    await request(app, "POST", "/generate", json_body={"inputs": "hi", "parameters": {"temperature": 0.5}})
    await request(app, "POST", "/models/m/pipeline/text-generation", json_body={"inputs": "hi"})
    await request(app, "POST", "/generate", json_body={"inputs": "hi", "parameters": {"max_new_tokens": 7}})
    assert inner.bodies == [
        {"inputs": "hi", "parameters": {"temperature": 0.5, "max_new_tokens": 50}},
        {"inputs": "hi", "parameters": {"max_new_tokens": 50}},
        {"inputs": "hi", "parameters": {"max_new_tokens": 7}},
    ]


@pytest.mark.anyio
async def test_the_catalog_tells_the_task_of_a_models_route() -> None:
    from hfasgi.catalog import ModelCatalog, ModelEntry
    from hfasgi.forwarding.upstream import Upstream

    catalog = ModelCatalog(
        [Upstream(url="http://127.0.0.1:1")],
        [ModelEntry(id="org/gen", task="text-generation"), ModelEntry(id="org/cls", task="text-classification")],
    )
    inner = Upstreamish(total=0)
    app = _limited(inner, ALICE, token_limit=Limit(10_000, 60), default_max_tokens=50, catalog=catalog)
    generate, _ = await request(app, "POST", "/models/org/gen", json_body={"inputs": "hi"})
    classify, _ = await request(app, "POST", "/models/org/cls", json_body={"inputs": "hi"})
    assert inner.bodies == [{"inputs": "hi", "parameters": {"max_new_tokens": 50}}, {"inputs": "hi"}]
    assert 10_000 - int(generate.headers[b"x-ratelimit-remaining"]) == 51  # the prompt and the output budget
    assert 10_000 - int(classify.headers[b"x-ratelimit-remaining"]) == 1  # only the prompt (the first was 0)
