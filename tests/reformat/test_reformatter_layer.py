"""ResponseReformatter as a layer: request hand-over to the forwarder, whole answers, streams, errors.

The translation itself is replaced by a small recording translator (``choose`` is patched), so these
tests pin the middleware's own work: framing, buffering, content-length, ``[DONE]``, error events.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from hfasgi.catalog import ModelCatalog
from hfasgi.context import get_context
from hfasgi.forwarding.upstream import Upstream, UpstreamKind
from hfasgi.operations import Operation, Route
from hfasgi.reformat import middleware
from hfasgi.reformat.base import Request, Translator, bad_upstream
from hfasgi.reformat.middleware import ReformatterConfig, ResponseReformatter
from tests.asgi_driver import open_stream, request

pytestmark = pytest.mark.anyio

UPSTREAM_OP = Operation(Route.COMPLETIONS, "text-generation", path_model="m")
Message = dict[str, Any]


class Upper(Translator):
    """Upper-cases ``text`` in answers and events; one extra event at the end."""

    __slots__ = ("seen",)

    def __init__(self, *, client_done: bool, body: Any) -> None:
        super().__init__(UPSTREAM_OP, body, client_done=client_done)
        self.seen: list[Any] = []

    def response(self, document: Any) -> Any:
        if "text" not in document:
            raise bad_upstream("no 'text'")
        return {"TEXT": document["text"].upper()}

    def event(self, document: Any) -> list[Any]:
        self.seen.append(document)
        return [{"t": document["text"].upper()}]

    def end(self) -> list[Any]:
        return [{"t": "END"}]


@pytest.fixture
def translator(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[Request]]:
    """Patch ``choose``: ``translator(client_done=..., body=...)`` → the list of requests it was asked about."""

    def install(*, client_done: bool = False, body: Any = None, none: bool = False) -> list[Request]:
        asked: list[Request] = []

        def choose(req: Request) -> Translator | None:
            asked.append(req)
            return None if none else Upper(client_done=client_done, body=body if body is not None else {"x": 1})

        monkeypatch.setattr(middleware, "choose", choose)
        return asked

    return install


def upstream_app(start: Message, *bodies: bytes, seen: list[Any] | None = None) -> Any:
    """An inner app standing in for the forwarder: records what it was handed, sends ``bodies``."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        ctx = get_context(scope)
        if seen is not None:
            seen.append((ctx.upstream_operation, message.get("body"), ctx.json() if ctx.body else None))
        await send(start)
        for i, chunk in enumerate(bodies):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(bodies) - 1})

    return app


def layer(app: Any, kind: UpstreamKind = UpstreamKind.OPENAI, default_model: str | None = "m") -> Any:
    catalog = ModelCatalog.single(Upstream(kind=kind, url="http://up"), default_model=default_model)
    return ResponseReformatter(app, config=ReformatterConfig(catalog=catalog))


JSON_START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"14"), (b"x-up", b"1")],
}
SSE_START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/event-stream")],
}


async def test_the_forwarder_gets_the_upstream_operation_and_body(translator: Callable[..., list[Request]]) -> None:
    asked = translator(body={"prompt": "hi"})
    seen: list[Any] = []
    app = layer(upstream_app(JSON_START, b'{"text":"abc"}', seen=seen))
    stream, body = await request(app, "POST", "/generate", json_body={"inputs": "hi"})
    assert seen == [(UPSTREAM_OP, b'{"prompt":"hi"}', {"prompt": "hi"})]
    assert asked[0].op.route is Route.GENERATE and asked[0].route.model == "m"
    assert asked[0].document == {"inputs": "hi"}
    assert json.loads(body) == {"TEXT": "ABC"}
    assert stream.headers[b"content-length"] == str(len(body)).encode()
    assert stream.headers[b"x-up"] == b"1"


async def test_no_translator_passes_request_and_answer_untouched(translator: Callable[..., list[Request]]) -> None:
    translator(none=True)
    seen: list[Any] = []
    app = layer(upstream_app(JSON_START, b'{"text":"abc"}', seen=seen))
    _, body = await request(app, "POST", "/v1/chat/completions", json_body={"model": "m", "messages": []})
    assert body == b'{"text":"abc"}'
    assert seen[0][0] is None  # the forwarder runs the client's own operation
    assert json.loads(seen[0][1]) == {"model": "m", "messages": []}


async def test_a_whole_answer_split_in_chunks_is_joined_before_translation(
    translator: Callable[..., list[Request]],
) -> None:
    translator()
    app = layer(upstream_app(JSON_START, b'{"te', b'xt":', b'"abc"}'))
    _, body = await request(app, "POST", "/generate", json_body={"inputs": "hi"})
    assert json.loads(body) == {"TEXT": "ABC"}


@pytest.mark.parametrize(
    ("payload", "needle"),
    [(b"not json", "not valid JSON"), (b'{"other":1}', "could not be translated: no 'text'")],
)
async def test_an_unreadable_upstream_answer_is_a_502_envelope(
    translator: Callable[..., list[Request]], payload: bytes, needle: str
) -> None:
    translator()
    app = layer(upstream_app(JSON_START, payload))
    stream, body = await request(app, "POST", "/generate", json_body={"inputs": "hi"})
    assert stream.status == 502
    error = json.loads(body)
    assert error["error_type"] == "upstream_error" and needle in error["error"]


async def test_upstream_errors_pass_through_untouched(translator: Callable[..., list[Request]]) -> None:
    translator()
    start = {**JSON_START, "status": 422}
    envelope = b'{"error":"bad","error_type":"validation"}'
    stream, body = await request(layer(upstream_app(start, envelope)), "POST", "/generate", json_body={"inputs": "x"})
    assert (stream.status, body) == (422, envelope)


async def test_a_stream_is_translated_event_by_event_and_ends_as_the_client_expects(
    translator: Callable[..., list[Request]],
) -> None:
    translator(client_done=False)
    chunks = [b'data: {"text":"a"}\n\ndata: {"te', b'xt":"b"}\n\n: keep-alive\n\n', b"data: [DONE]\n\n"]
    app = layer(upstream_app(SSE_START, *chunks))
    async with open_stream(app, "POST", "/generate_stream", json_body={"inputs": "hi"}) as stream:
        first = await stream.chunk()
        assert first == b'data: {"t":"A"}\n\n'  # the half event waits for its other half
        second = await stream.chunk()
        assert second == b'data: {"t":"B"}\n\n: keep-alive\n\n'
        rest = await stream.rest()
    assert rest == b'data: {"t":"END"}\n\n'  # a TGI client gets no [DONE]


async def test_an_openai_client_stream_ends_with_done(translator: Callable[..., list[Request]]) -> None:
    translator(client_done=True)
    app = layer(upstream_app(SSE_START, b'data: {"text":"a"}\n\n', b""))
    _, body = await request(app, "POST", "/v1/completions", json_body={"prompt": "hi", "model": "m"})
    assert body == b'data: {"t":"A"}\n\ndata: {"t":"END"}\n\ndata: [DONE]\n\n'


async def test_an_error_event_ends_the_translated_stream(translator: Callable[..., list[Request]]) -> None:
    translator(client_done=True)
    error = b'data: {"error":"boom","error_type":"generation"}\n\n'
    app = layer(upstream_app(SSE_START, b'data: {"text":"a"}\n\n' + error, b'data: {"text":"late"}\n\n'))
    _, body = await request(app, "POST", "/v1/completions", json_body={"prompt": "hi", "model": "m"})
    assert body == b'data: {"t":"A"}\n\n' + error  # no END, no [DONE], nothing after the error


async def test_an_untranslatable_event_becomes_one_error_event(translator: Callable[..., list[Request]]) -> None:
    translator()
    app = layer(upstream_app(SSE_START, b"data: {oops\n\n", b'data: {"text":"b"}\n\n'))
    _, body = await request(app, "POST", "/generate_stream", json_body={"inputs": "hi"})
    events = [json.loads(line[6:]) for line in body.split(b"\n") if line.startswith(b"data: ")]
    assert len(events) == 1 and events[0]["error_type"] == "upstream_error"


class WithIgnored(Upper):
    __slots__ = ("ignored",)


async def test_ignored_parameters_are_named_in_a_header(monkeypatch: pytest.MonkeyPatch) -> None:
    def choose(req: Request) -> Translator:
        translator = WithIgnored(client_done=False, body={"x": 1})
        translator.ignored = ("top_k", "watermark")
        return translator

    monkeypatch.setattr(middleware, "choose", choose)
    app = layer(upstream_app(JSON_START, b'{"text":"a"}'))
    stream, _ = await request(app, "POST", "/generate", json_body={"inputs": "x"})
    assert stream.headers[b"x-hfasgi-ignored-parameters"] == b"top_k, watermark"


async def test_a_model_the_catalog_cannot_resolve_is_the_catalogs_4xx(translator: Callable[..., list[Request]]) -> None:
    translator()
    app = layer(upstream_app(JSON_START, b"{}"), default_model=None)
    stream, body = await request(app, "POST", "/generate", json_body={"inputs": "hi"})
    assert stream.status == 400 and json.loads(body)["error_type"] == "model_required"


async def test_invalid_json_is_a_400(translator: Callable[..., list[Request]]) -> None:
    translator()
    stream, body = await request(layer(upstream_app(JSON_START, b"{}")), "POST", "/generate", body=b"{nope")
    assert stream.status == 400 and json.loads(body)["error_type"] == "invalid_json"


async def test_non_inference_routes_and_lifespan_pass_through(translator: Callable[..., list[Request]]) -> None:
    asked = translator()
    app = layer(upstream_app(JSON_START, b'{"text":"abc"}'))
    _, body = await request(app, "GET", "/v1/models")
    _, other = await request(app, "GET", "/somewhere/else")
    assert body == other == b'{"text":"abc"}' and asked == []


class TgiClient(Upper):
    __slots__ = ()
    tgi_errors = True


@pytest.mark.parametrize(
    ("status", "error_type", "expected"),
    [
        (422, "invalid_request_error", "validation"),
        (400, None, "validation"),
        (424, "server_error", "generation"),
        (429, "rate_limit_exceeded", "overloaded"),
        (500, "server_error", "generation"),
        (422, "template_error", "template_error"),  # already TGI's
        (404, "not_found", "not_found"),  # nothing TGI would say instead
    ],
)
async def test_a_tgi_client_gets_tgi_error_types(
    monkeypatch: pytest.MonkeyPatch, status: int, error_type: str | None, expected: str
) -> None:
    monkeypatch.setattr(middleware, "choose", lambda req: TgiClient(client_done=False, body={"x": 1}))
    envelope: dict[str, Any] = {"error": "bad"}
    if error_type:
        envelope["error_type"] = error_type
    payload = json.dumps(envelope).encode()
    start = {**JSON_START, "status": status, "headers": [(b"content-type", b"application/json")]}
    stream, body = await request(layer(upstream_app(start, payload)), "POST", "/generate", json_body={"inputs": "x"})
    assert stream.status == status
    assert json.loads(body) == {"error": "bad", "error_type": expected}
    assert stream.headers[b"content-length"] == str(len(body)).encode()


async def test_a_tgi_client_gets_a_tgi_error_type_inside_a_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(middleware, "choose", lambda req: TgiClient(client_done=False, body={"x": 1}))
    error = b'data: {"error":"boom","error_type":"server_error"}\n\n'
    app = layer(upstream_app(SSE_START, b'data: {"text":"a"}\n\n' + error))
    _, body = await request(app, "POST", "/generate_stream", json_body={"inputs": "hi"})
    assert body == b'data: {"t":"A"}\n\ndata: {"error":"boom","error_type":"generation"}\n\n'
