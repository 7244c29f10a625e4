"""Resilience end to end: retries before the response starts, loading and rate-limit contracts, timeouts.

The gateway sits in front of the fake HF upstream (or a scripted one) on a real socket; most tests build
the stack themselves with a fast :class:`RetryPolicy` and short :class:`Timeouts` (``forwarding_app``),
and count upstream attempts with ``fake.attempts[key]``. No assertion depends on timing.

The helpers here (``forwarding_app``, ``served_forwarding_app``, ``scripted``, ``envelope``) are shared
with the other e2e transport tests.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from hfasgi.app import layers
from hfasgi.catalog import ModelCatalog
from hfasgi.errors import ErrorType, send_error
from hfasgi.forwarding.forwarder import ForwarderConfig
from hfasgi.forwarding.retry import RetryPolicy
from hfasgi.forwarding.upstream import Timeouts, Upstream, UpstreamKind
from hfasgi.stack import Lifespan, resources, stack
from tests.asgi_driver import request
from tests.servers import free_port, serve
from tests.upstream import FakeHF, dropping_server, expected_generation
from tests.upstream.shapes import DEFAULT_TOKENS, dumps, tgi_generate_response, token_texts

from .conftest import SERVER_TOKEN
from .conftest import Upstream as Served

pytestmark = pytest.mark.anyio

Message = dict[str, Any]
Send = Callable[[Message], Awaitable[None]]

FAST_RETRY = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02, loading_wait=5.0, max_retry_after=1.0)
"""Retries fast enough for tests: 10-20 ms backoffs, 5 s of loading wait, ``Retry-After`` up to 1 s retried."""
FAST_TIMEOUTS = Timeouts(connect=2.0, total=10.0, read=5.0)
GENERATE = {"inputs": "Tell me about resilience"}


# --- shared helpers -------------------------------------------------------------------------------


async def _not_found(scope: Any, receive: Any, send: Send) -> None:
    """The app behind the layers in a hand-built stack: an enveloped 404 for anything not forwarded."""
    if scope["type"] == "http":
        await send_error(scope, send, 404, ErrorType.NOT_FOUND, "not a gateway route")


def _build(
    url: str,
    *,
    kind: str,
    retry: RetryPolicy,
    timeouts: Timeouts,
    token: str | None,
    max_body_bytes: int,
) -> tuple[Any, ForwarderConfig]:
    upstream = Upstream(url=url, kind=UpstreamKind(kind), token=token, timeouts=timeouts)
    config = ForwarderConfig(catalog=ModelCatalog.single(upstream), retry=retry, max_body_bytes=max_body_bytes)
    return stack(_not_found, *layers(config)), config


@contextlib.asynccontextmanager
async def forwarding_app(
    url: str,
    *,
    kind: str = "tgi",
    retry: RetryPolicy = FAST_RETRY,
    timeouts: Timeouts = FAST_TIMEOUTS,
    token: str | None = SERVER_TOKEN,
    max_body_bytes: int = 1 << 20,
) -> AsyncIterator[Any]:
    """The reference layers (``hfasgi.app.layers``) in front of ``url``, pool open, for the in-process driver."""
    app, config = _build(url, kind=kind, retry=retry, timeouts=timeouts, token=token, max_body_bytes=max_body_bytes)
    async with resources(config.pool):
        yield app


@contextlib.contextmanager
def served_forwarding_app(
    url: str,
    *,
    kind: str = "tgi",
    retry: RetryPolicy = FAST_RETRY,
    timeouts: Timeouts = FAST_TIMEOUTS,
    token: str | None = SERVER_TOKEN,
) -> Iterator[str]:
    """The same stack served by uvicorn on a real socket (its lifespan opens the pool); yields its URL."""
    app, config = _build(url, kind=kind, retry=retry, timeouts=timeouts, token=token, max_body_bytes=1 << 20)
    with serve(Lifespan(app, resources=[config.pool])) as gateway_url:
        yield gateway_url


@dataclass(frozen=True)
class Hit:
    """One request as a scripted upstream received it."""

    number: int
    """1-based: how many requests the upstream had received, this one included."""
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Handler = Callable[[Hit, Send], Awaitable[None]]


class ScriptedUpstream:
    """A tiny upstream ASGI app for what the fake cannot do: ``handler`` answers each recorded request."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.hits: list[Hit] = []

    async def __call__(self, scope: Any, receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        hit = Hit(len(self.hits) + 1, scope["method"], scope["path"], headers, body)
        self.hits.append(hit)
        await self.handler(hit, send)


@contextlib.contextmanager
def scripted(handler: Handler) -> Iterator[tuple[ScriptedUpstream, str]]:
    """Serve a :class:`ScriptedUpstream` on a real socket; yields it and its URL."""
    upstream = ScriptedUpstream(handler)
    with serve(upstream, lifespan="off") as url:
        yield upstream, url


async def reply(send: Send, status: int, headers: list[tuple[bytes, bytes]], *chunks: bytes) -> None:
    """Send a complete response made of ``chunks``."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    for i, chunk in enumerate(chunks):
        await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})
    if not chunks:
        await send({"type": "http.response.body", "body": b""})


async def reply_json(send: Send, status: int, doc: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send ``doc`` as a JSON response with its length."""
    body = dumps(doc)
    base = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await reply(send, status, base + (headers or []), body)


def envelope(body: bytes) -> dict[str, Any]:
    """The error envelope in ``body``, checked: a JSON object with non-empty string ``error`` and ``error_type``."""
    doc = json.loads(body)
    assert isinstance(doc, dict), doc
    assert isinstance(doc.get("error"), str) and doc["error"], doc
    assert isinstance(doc.get("error_type"), str) and doc["error_type"], doc
    return doc


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    """A fake-upstream key unique to this test (attempt counting, stream bookkeeping, gates)."""
    return str(request.node.nodeid)


def scenario(value: str, key: str) -> dict[str, str]:
    """Headers selecting a fake scenario under ``key``."""
    return {"x-fake-scenario": value, "x-fake-key": key}


# --- connection errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("drops", [1, 2])
async def test_connection_drops_are_retried_until_the_upstream_answers(
    upstream: Served, fake: FakeHF, key: str, drops: int
) -> None:
    """An upstream that closes the connection ``drops`` times is retried; the client only sees the answer."""
    async with forwarding_app(upstream.url) as app:
        stream, body = await request(
            app, "POST", "/generate", json_body=GENERATE, headers=scenario(f"drop:{drops}", key)
        )
    assert stream.status == 200
    assert json.loads(body) == tgi_generate_response(GENERATE["inputs"], DEFAULT_TOKENS)
    assert fake.attempts[key] == drops + 1


@pytest.mark.parametrize("attempts", [1, 2, 4])
async def test_connection_drops_exhaust_the_policy_then_502(
    upstream: Served, fake: FakeHF, key: str, attempts: int
) -> None:
    """Exactly ``RetryPolicy.attempts`` upstream attempts, then ``502 upstream_unavailable`` in the envelope."""
    policy = RetryPolicy(attempts=attempts, backoff=0.01, max_backoff=0.02)
    async with forwarding_app(upstream.url, retry=policy) as app:
        stream, body = await request(app, "POST", "/generate", json_body=GENERATE, headers=scenario("drop:99", key))
    assert stream.status == 502
    doc = envelope(body)
    assert doc["error_type"] == "upstream_unavailable"
    assert f"after {attempts} attempt(s)" in doc["error"]
    assert fake.attempts[key] == attempts


@contextlib.contextmanager
def _dead_upstream(how: str) -> Iterator[str]:
    if how == "closed-port":
        yield f"http://127.0.0.1:{free_port()}"
    else:
        with dropping_server(reset=how == "reset") as url:
            yield url


@pytest.mark.parametrize("how", ["closed-port", "close", "reset"])
async def test_an_unreachable_upstream_gives_502_after_every_attempt(how: str) -> None:
    """A refused connection, or a server that closes (FIN or RST) without answering: retried, then 502."""
    with _dead_upstream(how) as url:
        async with forwarding_app(url) as app:
            stream, body = await request(app, "POST", "/generate", json_body=GENERATE)
    assert stream.status == 502
    doc = envelope(body)
    assert doc["error_type"] == "upstream_unavailable"
    assert f"after {FAST_RETRY.attempts} attempt(s)" in doc["error"]


async def test_the_reference_gateway_answers_502_for_a_closed_port(gateway: Callable[..., str]) -> None:
    """Over real sockets with the default policy: the client gets ``502 upstream_unavailable``, never a hang."""
    url = gateway("tgi", upstream_url=f"http://127.0.0.1:{free_port()}")
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post("/generate", json=GENERATE)
    assert response.status_code == 502
    assert envelope(response.content)["error_type"] == "upstream_unavailable"
    assert response.headers["content-type"] == "application/json"


# --- 503 "currently loading" ----------------------------------------------------------------------


@pytest.mark.parametrize("loading", [1, 3])
async def test_a_loading_model_is_waited_out(upstream: Served, fake: FakeHF, key: str, loading: int) -> None:
    """503 ``currently loading`` with ``estimated_time`` is slept on and retried; the client gets the answer."""
    async with forwarding_app(upstream.url) as app:
        headers = scenario(f"loading:{loading}:0.01", key)
        stream, body = await request(app, "POST", "/generate", json_body=GENERATE, headers=headers)
    assert stream.status == 200
    assert json.loads(body) == tgi_generate_response(GENERATE["inputs"], DEFAULT_TOKENS)
    assert fake.attempts[key] == loading + 1


@pytest.mark.parametrize("estimate", [0.4, 2.5])
async def test_loading_past_the_wait_budget_reaches_the_client_as_503(
    upstream: Served, fake: FakeHF, key: str, estimate: float
) -> None:
    """With no wait budget the upstream's 503 goes out at once: ``Retry-After`` and its ``estimated_time``."""
    policy = RetryPolicy(attempts=3, backoff=0.01, loading_wait=0.0)
    async with forwarding_app(upstream.url, retry=policy) as app:
        headers = scenario(f"loading:99:{estimate}", key)
        stream, body = await request(app, "POST", "/generate", json_body=GENERATE, headers=headers)
    assert stream.status == 503
    assert stream.headers[b"retry-after"] == str(math.ceil(estimate)).encode()
    assert json.loads(body) == {"error": f"Model {fake.model_id} is currently loading", "estimated_time": estimate}
    assert fake.attempts[key] == 1


async def test_loading_is_retried_within_the_budget_before_giving_up(upstream: Served, fake: FakeHF, key: str) -> None:
    """A model that stays loading is retried while the budget lasts, then the 503 reaches the client."""
    policy = RetryPolicy(attempts=1, loading_wait=0.2)
    async with forwarding_app(upstream.url, retry=policy) as app:
        headers = scenario("loading:999:0.05", key)
        stream, body = await request(app, "POST", "/generate", json_body=GENERATE, headers=headers)
    assert stream.status == 503
    assert stream.headers[b"retry-after"] == b"1"
    assert json.loads(body)["estimated_time"] == 0.05
    assert fake.attempts[key] > 1  # waited and retried although `attempts=1`: loading has its own budget


async def _loading_three_times(hit: Hit, send: Send) -> None:
    """An upstream that answers 503 loading to its first three requests whatever the client asked."""
    if hit.number <= 3:
        await reply_json(send, 503, {"error": "Model m is currently loading", "estimated_time": 0.01})
    else:
        await reply_json(send, 200, {"generated_text": "ready"})


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"x-wait-for-model": "true"}, GENERATE),
        ({"X-wait-for-model": "1"}, GENERATE),
        ({}, {**GENERATE, "options": {"wait_for_model": True}}),
    ],
    ids=["header", "legacy-header", "options"],
)
async def test_wait_for_model_makes_the_gateway_wait(headers: dict[str, str], body: dict[str, Any]) -> None:
    """Without a loading budget the first 503 goes out; asking to wait makes the gateway retry until ready."""
    policy = RetryPolicy(attempts=1, loading_wait=0.0)
    with scripted(_loading_three_times) as (impatient, url):
        async with forwarding_app(url, retry=policy) as app:
            stream, _ = await request(app, "POST", "/generate", json_body=GENERATE)
    assert stream.status == 503 and len(impatient.hits) == 1
    with scripted(_loading_three_times) as (patient, url):
        async with forwarding_app(url, retry=policy) as app:
            stream, answer = await request(app, "POST", "/generate", json_body=body, headers=headers)
    assert stream.status == 200
    assert json.loads(answer) == {"generated_text": "ready"}
    assert len(patient.hits) == 4


async def test_wait_for_model_reaches_the_upstream(gateway_app: Any, fake: FakeHF, key: str) -> None:
    """``x-wait-for-model`` is forwarded, so an HF upstream blocks instead of answering 503."""
    app = await gateway_app("tgi")
    headers = {**scenario("loading:1:0.05", key), "x-wait-for-model": "true"}
    stream, body = await request(app, "POST", "/generate", json_body=GENERATE, headers=headers)
    assert stream.status == 200
    assert json.loads(body)["generated_text"] == expected_generation(GENERATE["inputs"])
    assert fake.attempts[key] == 1
    assert fake.last().headers["x-wait-for-model"] == "true"


# --- 429 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("directive", "status", "attempts", "retry_after"),
    [
        ("rate:2:0.01", 200, 3, None),  # short Retry-After: retried until it passes
        ("rate:99:0.01", 429, 3, "0.01"),  # short but persistent: retried up to the policy, then passed on
        ("rate:1:30", 429, 1, "30"),  # long Retry-After: straight to the client
        ("error:429", 429, 1, None),  # no Retry-After: not retried
    ],
)
async def test_rate_limits(
    upstream: Served,
    fake: FakeHF,
    key: str,
    directive: str,
    status: int,
    attempts: int,
    retry_after: str | None,
) -> None:
    """429 with a short ``Retry-After`` is retried; otherwise status, envelope and ``Retry-After`` pass through."""
    async with forwarding_app(upstream.url) as app:
        stream, body = await request(app, "POST", "/generate", json_body=GENERATE, headers=scenario(directive, key))
    assert stream.status == status
    assert fake.attempts[key] == attempts
    if status == 200:
        assert json.loads(body) == tgi_generate_response(GENERATE["inputs"], DEFAULT_TOKENS)
        return
    doc = envelope(body)
    assert doc["error_type"] == "overloaded"
    assert stream.headers.get(b"retry-after") == (retry_after.encode() if retry_after else None)
    if retry_after:
        assert doc == {"error": "Rate limit reached", "error_type": "overloaded"}


# --- nothing is retried once the response has started --------------------------------------------


@pytest.mark.parametrize(
    ("directive", "error_type"), [("stream-drop", "upstream_unavailable"), ("stall:30", "upstream_timeout")]
)
async def test_a_stream_that_fails_after_the_start_is_not_retried(
    upstream: Served, fake: FakeHF, key: str, directive: str, error_type: str
) -> None:
    """Once events went out, a failure ends the stream with one error event and the upstream is called once."""
    timeouts = Timeouts(connect=2.0, total=10.0, read=1.0)
    async with forwarding_app(upstream.url, timeouts=timeouts) as app:
        stream, body = await request(
            app, "POST", "/generate_stream", json_body=GENERATE, headers=scenario(directive, key)
        )
    assert stream.status == 200
    events = [json.loads(line[6:]) for line in body.decode().split("\n\n") if line]
    assert [e["token"]["text"] for e in events[:-1]] == token_texts(GENERATE["inputs"], DEFAULT_TOKENS)[
        : len(events) - 1
    ]
    assert events[-1]["error_type"] == error_type and isinstance(events[-1]["error"], str)
    assert fake.attempts[key] == 1


async def _truncated_large_body(hit: Hit, send: Send) -> None:
    """A 300 KiB piece of a declared 400 KiB body, then the connection goes."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(400 * 1024).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"x" * (300 * 1024), "more_body": True})
    raise ConnectionAbortedError("scripted upstream drops mid-body")


async def test_a_body_that_breaks_after_the_start_is_not_retried_nor_completed() -> None:
    """A large body cut mid-way reaches the client as a broken response (never a short "complete" one), once."""
    with scripted(_truncated_large_body) as (upstream, url), served_forwarding_app(url) as gateway_url:
        async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post("/generate", json=GENERATE)
    assert len(upstream.hits) == 1


# --- timeouts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "directive"),
    [("/generate", "slow:30"), ("/generate", "stall:30"), ("/generate_stream", "slow:30")],
    ids=["slow-json", "stalled-json-body", "slow-stream"],
)
async def test_an_upstream_slower_than_the_timeout_gives_504(
    upstream: Served, fake: FakeHF, key: str, path: str, directive: str
) -> None:
    """No complete answer (or no first byte of a stream) within ``Timeouts.total``: ``504 upstream_timeout``."""
    timeouts = Timeouts(connect=2.0, total=0.3, read=5.0)
    async with forwarding_app(upstream.url, timeouts=timeouts) as app:
        stream, body = await request(app, "POST", path, json_body=GENERATE, headers=scenario(directive, key))
    assert stream.status == 504
    assert envelope(body)["error_type"] == "upstream_timeout"
    assert fake.attempts[key] == 1


async def test_the_reference_gateway_times_out_with_504(gateway: Callable[..., str], fake: FakeHF, key: str) -> None:
    """``Settings(upstream_timeout=...)`` bounds a slow upstream over real sockets: 504 in the envelope."""
    url = gateway("tgi", upstream_timeout=0.5)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post("/generate", json=GENERATE, headers=scenario("slow:30", key))
    assert response.status_code == 504
    assert envelope(response.content)["error_type"] == "upstream_timeout"
    assert fake.attempts[key] == 1
