"""Headers, secrets and errors end to end: what crosses the gateway in each direction, and every error's shape.

Requests go through the reference app (in process with the raw driver, or served on a real socket) in
front of the fake HF upstream, which records the headers it receives; what the fake cannot do (echo the
token, gzip, hop-by-hop response headers) a scripted upstream does.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import re
import threading
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import httpx
import pytest

from hfasgi.errors import error_type_for_status
from hfasgi.forwarding.retry import RetryPolicy
from hfasgi.forwarding.upstream import Timeouts
from tests.asgi_driver import open_stream, request
from tests.e2e.clients import sse_payloads
from tests.servers import free_port
from tests.upstream import FakeHF, expected_text_classification
from tests.upstream.shapes import (
    ERROR_STYLES,
    TGI_ERROR_TYPES,
    dumps,
    error_message,
    tgi_generate_response,
    tgi_stream_events,
)

from .conftest import CLIENT_KEY, SERVER_TOKEN
from .conftest import Upstream as Served
from .test_resilience import (
    Handler,
    Hit,
    Send,
    envelope,
    forwarding_app,
    key,
    reply,
    reply_json,
    scenario,
    scripted,
    served_forwarding_app,
)

__all__ = ["key"]  # a fixture shared with test_resilience

pytestmark = pytest.mark.anyio

GENERATE = {"inputs": "Headers and errors"}
CHAT = {"model": "fake/text-generation", "messages": [{"role": "user", "content": "hi"}]}
HEX_ID = re.compile(r"[0-9a-f]{32}")


@dataclass
class Answer:
    """A whole response: status, headers (names lower-cased, duplicates kept) and body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def values(self, name: str) -> list[str]:
        """Every value of header ``name``."""
        return [v for k, v in self.headers if k == name]


async def drive(app: Any, method: str, path: str, **kwargs: Any) -> Answer:
    """One request through ``app`` with the raw driver."""
    stream, body = await request(app, method, path, **kwargs)
    raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in stream.start["headers"]]
    return Answer(stream.status, raw, body)


Caller = Callable[..., Any]


@pytest.fixture(params=["driver", "socket"])
def call(request: pytest.FixtureRequest, gateway: Callable[..., str], gateway_app: Any) -> Caller:
    """``await call(kind, method, path, json=..., headers=..., **settings)`` → :class:`Answer` from the
    reference app in front of the fake: in process (raw driver) or over a real socket (httpx)."""

    async def driver(
        kind: str, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None, **settings: Any
    ) -> Answer:
        app = await gateway_app(kind, **settings)
        return await drive(app, method, path, json_body=json, headers=headers or {})

    async def socket(
        kind: str, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None, **settings: Any
    ) -> Answer:
        raw = {k.encode(): v.encode("latin-1") for k, v in (headers or {}).items()}
        async with httpx.AsyncClient(base_url=gateway(kind, **settings), timeout=30) as client:
            response = await client.request(method, path, json=json, headers=raw)
        return Answer(response.status_code, response.headers.multi_items(), response.content)

    return driver if request.param == "driver" else socket


def no_secret(answer: Answer) -> None:
    """The server token appears nowhere in the response."""
    assert all(SERVER_TOKEN not in v for _, v in answer.headers), answer.headers
    assert SERVER_TOKEN.encode() not in answer.body


# --- credentials ----------------------------------------------------------------------------------

CLIENT_CREDENTIALS = {
    "Authorization": f"Bearer {CLIENT_KEY}",
    "X-Api-Key": CLIENT_KEY,
    "Proxy-Authorization": f"Basic {CLIENT_KEY}",
    "Cookie": f"session={CLIENT_KEY}",
}
CREDENTIAL_ROUTES = [
    ("tgi", "POST", "/generate", GENERATE),
    ("tgi", "POST", "/generate_stream", GENERATE),
    ("router", "POST", "/v1/chat/completions", CHAT),
    ("router", "POST", "/models/fake/text-classification", {"inputs": "I love it"}),
    ("router", "GET", "/v1/models", None),
]


@pytest.mark.parametrize(("kind", "method", "path", "body"), CREDENTIAL_ROUTES, ids=lambda v: str(v))
async def test_the_client_credentials_stay_and_the_server_token_goes(
    call: Caller, fake: FakeHF, kind: str, method: str, path: str, body: Any
) -> None:
    """Upstream sees ``Bearer SERVER_TOKEN`` and none of the client's ``Authorization``/``x-api-key``/cookies."""
    answer = await call(kind, method, path, json=body, headers=CLIENT_CREDENTIALS)
    assert answer.status == 200
    seen = fake.last().headers
    assert seen["authorization"] == f"Bearer {SERVER_TOKEN}"
    assert not {"x-api-key", "proxy-authorization", "cookie"} & set(seen)
    assert all(CLIENT_KEY not in value for value in seen.values()), seen
    no_secret(answer)


async def test_without_a_server_token_no_authorization_goes_upstream(call: Caller, fake: FakeHF) -> None:
    """With no ``HF_TOKEN`` the client's ``Authorization`` is still not forwarded: the upstream gets none."""
    answer = await call("tgi", "POST", "/generate", json=GENERATE, headers=CLIENT_CREDENTIALS, hf_token=None)
    assert answer.status == 200
    assert "authorization" not in fake.last().headers
    assert all(CLIENT_KEY not in value for value in fake.last().headers.values())


async def _echo_token(hit: Hit, send: Send) -> None:
    """An upstream that echoes the ``Authorization`` it received, in the style the client asks for."""
    auth = hit.headers.get("authorization", "")
    style = hit.headers["x-echo-style"]
    if style == "envelope":
        await reply_json(send, 401, {"error": f"Invalid credentials in {auth}", "error_type": "authentication"})
    elif style == "nested":
        await reply_json(send, 401, {"error": "Unauthorized", "request": {"headers": {"authorization": auth}}})
    elif style == "openai":
        await reply_json(send, 401, {"error": {"message": f"Incorrect API key: {auth}", "type": "invalid_api_key"}})
    elif style == "detail":
        await reply_json(send, 403, {"detail": f"Token {auth} lacks the inference permission"})
    elif style == "list":
        await reply_json(send, 400, {"error": [f"received `{auth}` in `parameters`"]})
    elif style == "text":
        await reply(send, 500, [(b"content-type", b"text/plain")], f"crashed while handling {auth}".encode())
    elif style == "loading":
        await reply_json(send, 503, {"error": f"Model loading for {auth}", "estimated_time": 1.0})
    elif style == "header":
        echo = f'Bearer error="invalid_token", token="{auth}"'.encode()
        await reply_json(send, 401, {"error": "Unauthorized"}, [(b"www-authenticate", echo)])
    elif style == "success-header":
        await reply_json(send, 200, {"generated_text": "ok"}, [(b"x-echo-authorization", auth.encode())])
    else:  # "stream": an in-stream error carrying the token
        error = dumps({"error": f"token {auth} was revoked", "error_type": "validation"})
        token = dumps(tgi_stream_events("x", 1)[0])
        sse = [(b"content-type", b"text/event-stream")]
        await reply(send, 200, sse, b"data: " + token + b"\n\n", b"data: " + error + b"\n\n")


ECHO_STATUS = {
    "envelope": 401,
    "nested": 401,
    "openai": 401,
    "detail": 403,
    "list": 400,
    "text": 500,
    "loading": 503,
    "header": 401,
    "success-header": 200,
    "stream": 200,
}


@pytest.mark.parametrize("style", ECHO_STATUS)
async def test_the_server_token_never_reaches_the_client_even_when_the_upstream_echoes_it(style: str) -> None:
    """An upstream that repeats the gateway's token (in an error body, a header or a stream error event):
    the client gets the same status and shape with the token redacted."""
    policy = RetryPolicy(attempts=1, loading_wait=0.0)
    with scripted(_echo_token) as (upstream, url):
        async with forwarding_app(url, retry=policy) as app:
            path = "/generate_stream" if style == "stream" else "/generate"
            answer = await drive(app, "POST", path, json_body=GENERATE, headers={"x-echo-style": style})
    assert upstream.hits[0].headers["authorization"] == f"Bearer {SERVER_TOKEN}"  # the echo did contain it
    assert answer.status == ECHO_STATUS[style]
    no_secret(answer)
    if style == "stream":
        assert json.loads(sse_payloads(answer.body)[-1]) == {
            "error": "token Bearer [redacted] was revoked",
            "error_type": "validation",
        }
    elif style == "loading":  # HF's loading shape is kept (hf_api.md §8.5)
        assert json.loads(answer.body) == {"error": "Model loading for Bearer [redacted]", "estimated_time": 1.0}
    elif style in ("nested", "header"):  # already HF-shaped (a string `error`): kept, minus the token
        assert json.loads(answer.body)["error"] == "Unauthorized"
        assert "Bearer [redacted]" in answer.body.decode() + "".join(answer.values("www-authenticate"))
    elif answer.status >= 400:
        assert "[redacted]" in envelope(answer.body)["error"]


# --- hop-by-hop headers ----------------------------------------------------------------------------

HOP_BY_HOP_REQUEST = {
    "connection": "keep-alive, x-hop-a",
    "keep-alive": "timeout=5",
    "te": "trailers",
    "trailer": "x-checksum",
    "upgrade": "h2c",
    "x-hop-a": "named in connection",
    "transfer-encoding": "chunked",
}


async def test_hop_by_hop_request_headers_are_not_forwarded(gateway_app: Any, upstream: Served, fake: FakeHF) -> None:
    """``Connection`` and the headers it names, ``Keep-Alive``, ``TE``, ``Trailer``, ``Upgrade``,
    ``Transfer-Encoding`` and the client's ``Host`` stay on the client's hop; other headers go on."""
    app = await gateway_app("tgi")
    headers = {**HOP_BY_HOP_REQUEST, "host": "gateway.example", "x-custom": "kept"}
    answer = await drive(app, "POST", "/generate", json_body=GENERATE, headers=headers)
    assert answer.status == 200
    seen = fake.last().headers
    assert not set(HOP_BY_HOP_REQUEST) & set(seen), seen
    assert seen["host"] == upstream.url.removeprefix("http://")
    assert seen["x-custom"] == "kept"
    assert fake.last().json == GENERATE


HOP_BY_HOP_RESPONSE = [
    (b"connection", b"x-hop-b"),
    (b"keep-alive", b"timeout=5, max=100"),
    (b"proxy-authenticate", b'Basic realm="upstream"'),
    (b"trailer", b"x-checksum"),
    (b"upgrade", b"h2c"),
    (b"x-hop-b", b"named in connection"),
]


async def _hop_by_hop_reply(hit: Hit, send: Send) -> None:
    status = int(hit.headers["x-status"])
    body = {"generated_text": "ok"} if status == 200 else {"error": "nope", "error_type": "generation"}
    await reply_json(send, status, body, [*HOP_BY_HOP_RESPONSE, (b"x-compute-type", b"cpu")])


@pytest.mark.parametrize("status", [200, 424])
async def test_hop_by_hop_response_headers_are_not_passed_back(status: int) -> None:
    """The upstream's hop-by-hop headers (and those its ``Connection`` names) never reach the client."""
    with scripted(_hop_by_hop_reply) as (_, url):
        async with forwarding_app(url) as app:
            answer = await drive(app, "POST", "/generate", json_body=GENERATE, headers={"x-status": str(status)})
    assert answer.status == status
    names = {name for name, _ in answer.headers}
    assert not {n.decode() for n, _ in HOP_BY_HOP_RESPONSE} & names, answer.headers
    assert answer.values("x-compute-type") == ["cpu"]


@pytest.mark.parametrize(("kind", "path", "body"), [("router", "/v1/chat/completions", CHAT), ("tgi", "/", GENERATE)])
async def test_bill_to_is_forwarded(call: Caller, fake: FakeHF, kind: str, path: str, body: Any) -> None:
    """``X-HF-Bill-To`` reaches the upstream unchanged."""
    answer = await call(kind, "POST", path, json=body, headers={"X-HF-Bill-To": "my-org"})
    assert answer.status == 200
    assert fake.last().headers["x-hf-bill-to"] == "my-org"


# --- request ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize("request_id", ["req-123", "A.b:c_d-9", "x" * 128])
async def test_a_sane_request_id_is_kept_sent_upstream_and_echoed(call: Caller, fake: FakeHF, request_id: str) -> None:
    """The client's ``x-request-id`` is used as it is: upstream gets it, the response carries it once."""
    answer = await call("tgi", "POST", "/generate", json=GENERATE, headers={"x-request-id": request_id})
    assert answer.values("x-request-id") == [request_id]
    assert fake.last().headers["x-request-id"] == request_id


@pytest.mark.parametrize("request_id", ["has space", "x" * 129, "semi;colon", "<script>", "ünï", ""])
async def test_an_insane_request_id_is_replaced(call: Caller, fake: FakeHF, request_id: str) -> None:
    """A client id that is not a short token is replaced by a fresh one, upstream and downstream alike."""
    answer = await call("tgi", "POST", "/generate", json=GENERATE, headers={"x-request-id": request_id})
    [echoed] = answer.values("x-request-id")
    assert HEX_ID.fullmatch(echoed)
    assert fake.last().headers["x-request-id"] == echoed


async def test_a_request_id_is_generated_when_none_is_sent(call: Caller, fake: FakeHF) -> None:
    """Without an id the gateway makes one per request and uses it upstream and downstream."""
    ids = []
    for _ in range(2):
        answer = await call("tgi", "POST", "/generate", json=GENERATE)
        [echoed] = answer.values("x-request-id")
        assert HEX_ID.fullmatch(echoed)
        assert fake.last().headers["x-request-id"] == echoed
        ids.append(echoed)
    assert ids[0] != ids[1]


# --- every response: request id, true length, no secret -------------------------------------------


@dataclass(frozen=True)
class Case:
    """One request and the status it must get."""

    method: str
    path: str
    status: int
    json: Any = None
    body: bytes | list[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    app: str = "reference"
    """``reference`` (the reference app), ``stack`` (a hand-built stack without a loading wait) or
    ``closed-port`` (the same stack in front of nothing)."""
    streamed: bool = False
    timeout: float = 10.0
    """The hand-built stack's ``Timeouts.total``."""


TOO_LARGE = b'{"inputs": "' + b"x" * 2000 + b'"}'
CASES = {
    "json": Case("POST", "/generate", 200, GENERATE),
    "task": Case("POST", "/models/fake/text-classification", 200, {"inputs": "I love it"}),
    "stream": Case("POST", "/generate_stream", 200, GENERATE, streamed=True),
    "upstream-models": Case("GET", "/v1/models", 200),
    "health": Case("GET", "/health", 200),
    "upstream-422": Case("POST", "/generate", 422, GENERATE, headers={"x-fake-scenario": "error:422:detail"}),
    "upstream-429": Case("POST", "/generate", 429, GENERATE, headers={"x-fake-scenario": "rate:1:30"}),
    "upstream-503": Case("POST", "/generate", 503, GENERATE, headers={"x-fake-scenario": "loading:1:60"}, app="stack"),
    "bad-json": Case("POST", "/v1/chat/completions", 400, body=b"{bad", headers={"content-type": "application/json"}),
    "bad-model-id": Case("POST", "/models/.hidden/model", 400, GENERATE),
    "bad-content-length": Case("POST", "/generate", 400, body=b"{}", headers={"content-length": "abc"}),
    "not-found": Case("POST", "/v2/generate", 404, GENERATE),
    "wrong-method": Case("GET", "/v1/chat/completions", 405),
    "too-large": Case("POST", "/generate", 413, body=TOO_LARGE, headers={"content-length": str(len(TOO_LARGE))}),
    "too-large-chunked": Case("POST", "/generate", 413, body=[TOO_LARGE[:1000], TOO_LARGE[1000:]]),
    "unreachable": Case("POST", "/generate", 502, GENERATE, app="closed-port"),
    "timeout": Case(
        "POST", "/generate", 504, GENERATE, headers={"x-fake-scenario": "slow:30"}, app="stack", timeout=0.3
    ),
}


@contextlib.asynccontextmanager
async def app_for(case: Case, gateway_app: Any, upstream: Served) -> AsyncIterator[Any]:
    """The app a case runs against: the reference app (max body 1 KiB), or a hand-built stack."""
    if case.app == "reference":
        yield await gateway_app("tgi", max_body_bytes=1024, upstream_timeout=10.0)
        return
    url = f"http://127.0.0.1:{free_port()}" if case.app == "closed-port" else upstream.url
    policy = RetryPolicy(attempts=2, backoff=0.01, loading_wait=0.0)
    timeouts = Timeouts(connect=2.0, total=case.timeout, read=5.0)
    async with forwarding_app(url, retry=policy, timeouts=timeouts) as app:
        yield app


@pytest.mark.parametrize("name", CASES)
async def test_every_response_carries_the_request_id_and_a_true_length(
    gateway_app: Any, upstream: Served, fake: FakeHF, name: str
) -> None:
    """Success, stream, upstream errors, gateway 4xx, 502 and 504: each response echoes ``x-request-id`` once,
    has exactly one ``content-length`` equal to its body's length (none when streamed), and no secret."""
    case = CASES[name]
    async with app_for(case, gateway_app, upstream) as app:
        headers = {**case.headers, "x-request-id": f"req-{name}"}
        answer = await drive(app, case.method, case.path, json_body=case.json, body=case.body, headers=headers)
    assert answer.status == case.status
    assert answer.values("x-request-id") == [f"req-{name}"]
    if case.streamed:
        assert answer.values("content-length") == []
        sse_payloads(answer.body)
    else:
        assert answer.values("content-length") == [str(len(answer.body))]
    if case.status == 503:  # the upstream's loading answer, in HF's own shape (hf_api.md §8.5)
        assert set(json.loads(answer.body)) == {"error", "estimated_time"}
    elif case.status >= 400:
        envelope(answer.body)
    no_secret(answer)


# --- bodies: encodings and size -------------------------------------------------------------------

DOCUMENT = {"generated_text": "squeezed " * 40}
LARGE_DOCUMENT = {"generated_text": "squeezed " * 60_000}  # > 256 KiB once decoded
ENCODERS: dict[str, Callable[[bytes], bytes]] = {"gzip": gzip.compress, "deflate": zlib.compress}


async def _encoded(hit: Hit, send: Send) -> None:
    encoding = hit.headers["x-encoding"]
    doc = LARGE_DOCUMENT if "x-large" in hit.headers else DOCUMENT
    body = ENCODERS[encoding](dumps(doc))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-encoding", encoding.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await reply(send, 200, headers, body)


@pytest.mark.parametrize("large", [False, True], ids=["small", "large"])
@pytest.mark.parametrize("encoding", ENCODERS)
async def test_an_encoded_upstream_body_arrives_decoded(encoding: str, large: bool) -> None:
    """A gzip/deflate upstream answer reaches the client decoded, without ``content-encoding`` (and, when it
    fits the gateway's buffer, with its decoded length)."""
    expected = dumps(LARGE_DOCUMENT if large else DOCUMENT)
    headers = {"x-encoding": encoding, **({"x-large": "1"} if large else {})}
    with scripted(_encoded) as (_, url):
        async with forwarding_app(url) as app:
            answer = await drive(app, "POST", "/generate", json_body=GENERATE, headers=headers)
        with served_forwarding_app(url) as gateway_url:
            async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
                response = await client.post("/generate", json=GENERATE, headers=headers)
    assert answer.status == 200 and answer.body == expected
    assert answer.values("content-encoding") == []
    # A length when the whole body was in hand before the start (always for a small one), else none.
    assert answer.values("content-length") in ([[], [str(len(expected))]] if large else [[str(len(expected))]])
    assert response.status_code == 200 and response.content == expected  # httpx would fail to decode it twice
    assert "content-encoding" not in response.headers


def _gzip_in_two_parts(gate: threading.Event) -> Handler:
    """A gzip body without a length whose second part waits for ``gate``; the first decodes past 256 KiB."""

    async def handler(hit: Hit, send: Send) -> None:
        raw = dumps(LARGE_DOCUMENT)
        cut = len(raw) * 3 // 4
        z = zlib.compressobj(wbits=31)  # the gzip container
        first = z.compress(raw[:cut]) + z.flush(zlib.Z_SYNC_FLUSH)
        rest = z.compress(raw[cut:]) + z.flush()
        headers = [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": first, "more_body": True})
        await asyncio.get_running_loop().run_in_executor(None, gate.wait, 10)
        await send({"type": "http.response.body", "body": rest})

    return handler


async def test_a_large_encoded_body_is_relayed_as_it_decodes() -> None:
    """An encoded body too large to buffer starts going out (decoded, without a length) before the
    upstream has sent all of it, and arrives intact."""
    gate = threading.Event()
    with scripted(_gzip_in_two_parts(gate)) as (_, url):
        async with forwarding_app(url) as app:
            try:
                async with open_stream(app, "POST", "/generate", json_body=GENERATE) as stream:
                    assert stream.status == 200
                    assert b"content-length" not in stream.headers and b"content-encoding" not in stream.headers
                    first = await stream.chunk()  # while the upstream holds back the rest
                    assert len(first) > 256 * 1024
                    gate.set()
                    body = first + await stream.rest()
            finally:
                gate.set()
    assert body == dumps(LARGE_DOCUMENT)


async def test_a_large_upstream_body_arrives_intact(call: Caller, fake: FakeHF, key: str) -> None:
    """A non-streamed answer over 256 KiB (relayed in chunks) arrives byte for byte with its length."""
    tokens = 60_000
    answer = await call("tgi", "POST", "/generate", json=GENERATE, headers=scenario(f"chunks:{tokens}", key))
    expected = dumps(tgi_generate_response(GENERATE["inputs"], tokens))
    assert len(expected) > 256 * 1024
    assert answer.status == 200
    assert answer.body == expected
    assert answer.values("content-length") == [str(len(expected))]


# --- upstream errors ------------------------------------------------------------------------------


def _expected_error_type(style: str, status: int) -> str:
    if style == "tgi":
        return TGI_ERROR_TYPES.get(status, "generation")
    if style == "openai":
        return "invalid_request_error" if status < 500 else "server_error"
    return error_type_for_status(status)


@pytest.mark.parametrize("status", [400, 404, 422, 424, 500, 503])
@pytest.mark.parametrize("style", ERROR_STYLES)
async def test_every_upstream_error_style_becomes_the_envelope(
    gateway_app: Any, fake: FakeHF, style: str, status: int
) -> None:
    """TGI, FastAPI ``detail`` (str and list), OpenAI, pydantic lists, bare arrays, text, HTML and empty
    bodies all reach the client as ``{"error": str, "error_type": str}`` with the upstream's status."""
    app = await gateway_app("tgi")
    headers = {"x-fake-scenario": f"error:{status}:{style}"}
    answer = await drive(app, "POST", "/generate", json_body=GENERATE, headers=headers)
    assert answer.status == status
    assert answer.values("content-type") == ["application/json"]
    assert answer.values("content-length") == [str(len(answer.body))]
    doc = envelope(answer.body)
    if style in ("html", "empty"):
        assert doc["error"] == HTTPStatus(status).phrase
    else:
        assert error_message(status) in doc["error"]
    assert doc["error_type"] == _expected_error_type(style, status)


@pytest.mark.parametrize("style", ERROR_STYLES)
@pytest.mark.parametrize(
    ("path", "body"),
    [("/generate_stream", GENERATE), ("/v1/chat/completions", {**CHAT, "stream": True})],
    ids=["tgi", "chat"],
)
async def test_an_error_before_a_stream_starts_is_an_http_error(
    call: Caller, fake: FakeHF, style: str, path: str, body: Any
) -> None:
    """A streamed request the upstream refuses gets the HTTP status and the envelope, not an event stream."""
    answer = await call("tgi", "POST", path, json=body, headers={"x-fake-scenario": f"error:422:{style}"})
    assert answer.status == 422
    assert answer.values("content-type") == ["application/json"]
    assert envelope(answer.body)["error_type"] == _expected_error_type(style, 422)


# --- bad input never gives a 5xx ------------------------------------------------------------------

JSON_ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
MALFORMED = {
    "syntax": b'{"model": "m", "messages": [',
    "not-utf8": b"\xff\xfe{}",
    "garbage": b"hello",
    "too-deep": b"[" * 100_000,
}
NOT_AN_OBJECT = {
    "array": b"[1, 2]",
    "string": b'"hello"',
    "number": b"42",
    "null": b"null",
    "empty": b"",
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED)
@pytest.mark.parametrize("path", JSON_ROUTES)
async def test_malformed_json_is_a_400(gateway_app: Any, fake: FakeHF, path: str, body: bytes) -> None:
    """A body that is not JSON, however broken (even nested too deeply to parse), is ``400 invalid_json``."""
    app = await gateway_app("router")
    answer = await drive(app, "POST", path, body=body, headers={"content-type": "application/json"})
    assert answer.status == 400
    assert envelope(answer.body)["error_type"] == "invalid_json"
    assert fake.requests == []


@pytest.mark.parametrize("body", NOT_AN_OBJECT.values(), ids=NOT_AN_OBJECT)
@pytest.mark.parametrize("path", JSON_ROUTES)
async def test_a_json_body_that_is_not_a_request_object_is_a_400(
    gateway_app: Any, fake: FakeHF, path: str, body: bytes
) -> None:
    """Valid JSON that is not an object on a JSON route is a 400."""
    app = await gateway_app("router")
    answer = await drive(app, "POST", path, body=body, headers={"content-type": "application/json"})
    assert answer.status == 400
    assert envelope(answer.body)["error_type"] == "invalid_request"
    assert fake.requests == []


@pytest.mark.parametrize("path", JSON_ROUTES)
async def test_a_model_that_is_not_a_string_is_a_422_naming_it(gateway_app: Any, fake: FakeHF, path: str) -> None:
    """The validator names the field; with validation off, the forwarder still refuses it (400)."""
    body = b'{"model": 5, "messages": [], "prompt": "x", "input": "x"}'
    answer = await drive(
        await gateway_app("router"), "POST", path, body=body, headers={"content-type": "application/json"}
    )
    assert answer.status == 422 and envelope(answer.body) == {
        "error": "model: must be a string",
        "error_type": "validation",
    }
    unchecked = await drive(
        await gateway_app("router", validate=False),
        "POST",
        path,
        body=body,
        headers={"content-type": "application/json"},
    )
    assert unchecked.status == 400 and envelope(unchecked.body)["error"] == "'model' must be a string"
    assert fake.requests == []


async def _run_counting(app: Any, headers: list[tuple[bytes, bytes]], chunk: bytes) -> tuple[list[Any], int]:
    """Send ``chunk`` forever (``more_body``) until the app answers; the messages sent and receive() calls."""
    sent: list[Any] = []
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "path": "/generate",
        "raw_path": b"/generate",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *headers],
    }
    await app(scope, receive, send)
    return sent, reads


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_body_over_the_limit_is_a_413_and_the_rest_is_not_read(
    gateway_app: Any, fake: FakeHF, declared: bool
) -> None:
    """A declared length over ``max_body_bytes`` is refused before reading; an endless chunked body is
    refused at the first chunk past the limit."""
    limit, chunk = 4096, b"x" * 1024
    app = await gateway_app("tgi", max_body_bytes=limit)
    headers = [(b"content-length", str(10 * limit).encode())] if declared else []
    sent, reads = await _run_counting(app, headers, chunk)
    assert sent[0]["status"] == 413
    assert envelope(sent[1]["body"])["error_type"] == "payload_too_large"
    assert reads == (0 if declared else limit // len(chunk) + 1)
    assert fake.requests == []


async def test_a_body_over_the_limit_is_a_413_over_a_socket(gateway: Callable[..., str], fake: FakeHF) -> None:
    """Over a real socket too: 413 in the envelope, and the upstream never hears of it."""
    url = gateway("tgi", max_body_bytes=1024)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post("/generate", content=TOO_LARGE, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert envelope(response.content)["error_type"] == "payload_too_large"
    assert fake.requests == []


@pytest.mark.parametrize(
    "path",
    [
        "/models/.hidden",
        "/models/org//name",
        "/models/org/name with space",
        "/models/org/%2e%2e/%2e%2e/etc/passwd",  # the socket client sends it encoded; the server decodes it
        "/models/" + "a" * 300,
        "/pipeline/Not_A_Task/org/name",
        "/models/org/name/pipeline/",
    ],
)
async def test_a_malformed_model_id_in_the_path_is_a_400(call: Caller, fake: FakeHF, path: str) -> None:
    """Model ids go into upstream URLs: anything but ``name`` or ``org/name`` (and a sane task) is a 400."""
    answer = await call("serverless", "POST", path, json={"inputs": "x"})
    assert answer.status == 400
    assert envelope(answer.body)["error_type"] == "invalid_request"
    assert fake.requests == []


@pytest.mark.parametrize(("method", "path"), [("POST", "/v2/chat/completions"), ("GET", "/nope"), ("POST", "/v1/chat")])
async def test_an_unknown_path_is_a_404_envelope(call: Caller, fake: FakeHF, method: str, path: str) -> None:
    """A path that is no gateway route is ``404 not_found`` in the envelope."""
    answer = await call("tgi", method, path)
    assert answer.status == 404
    assert envelope(answer.body)["error_type"] == "not_found"
    assert fake.requests == []


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/chat/completions", "POST"),
        ("PUT", "/generate", "POST"),
        ("POST", "/v1/models", "GET"),
        ("DELETE", "/models/org/name", "POST"),
        ("POST", "/info", "GET"),
        ("POST", "/v1/models/org/name", "GET"),
    ],
)
async def test_a_wrong_method_is_a_405_with_allow(
    call: Caller, fake: FakeHF, method: str, path: str, allow: str
) -> None:
    """A known path with the wrong method is ``405 method_not_allowed`` with an ``Allow`` header."""
    answer = await call("tgi", method, path)
    assert answer.status == 405
    assert answer.values("allow") == [allow]
    assert envelope(answer.body)["error_type"] == "method_not_allowed"
    assert fake.requests == []


async def test_the_text_classification_answer_is_passed_through(call: Caller, fake: FakeHF) -> None:
    """A control for the header tests: a task answer comes back exactly as the upstream computed it."""
    answer = await call("router", "POST", "/models/fake/text-classification", json={"inputs": "I love it"})
    assert answer.status == 200
    assert json.loads(answer.body) == [expected_text_classification("I love it")]
    assert fake.last().path == "/hf-inference/models/fake/text-classification"
