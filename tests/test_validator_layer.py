"""RequestValidator in process, with small schemas of its own: statuses, messages, media, caps, pass-through."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from hfasgi.context import get_context
from hfasgi.principal import Principal
from hfasgi.validation import CompiledSchema, RequestValidator, ValidatorConfig, Violation
from hfasgi.validation.media import is_json_type, looks_like_json, media_kind, sniff
from tests.asgi_driver import request

CHAT: dict[str, Any] = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "object", "required": ["role"], "properties": {"role": {"enum": ["user", "system"]}}},
        },
        "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
        "max_tokens": {"type": "integer", "minimum": 1},
        "stop": {
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}],
            "x-error": "must be a string or a list of at most 4 strings",
        },
    },
}
GENERATE: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "inputs": {"type": "string", "minLength": 1},
        "parameters": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "top_p": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                "max_new_tokens": {"type": "integer"},
            },
        },
    },
}
CLASSIFY: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "inputs": {"type": "string"},
        "parameters": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"top_k": {"type": "integer", "minimum": 1}},
        },
    },
}
IMAGE: dict[str, Any] = {"type": "object", "required": ["inputs"], "properties": {"inputs": {"type": "string"}}}

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
WAV = b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + b"\x00" * 24
FLAC = b"fLaC" + b"\x00" * 30


class Inner:
    """Records the bodies that got through and answers 200."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        self.bodies.append(message.get("body", b""))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})


def _app(principal: Principal | None = None, **options: Any) -> tuple[Any, Inner]:
    inner = Inner()
    config = ValidatorConfig(
        route_schemas={
            "chat": CHAT,
            "generate": GENERATE,
            "completions": {"type": "object"},
            "embeddings": {"type": "object"},
        },
        task_schemas={
            "text-classification": CLASSIFY,
            "image-classification": IMAGE,
            "automatic-speech-recognition": IMAGE,
            "text-generation": GENERATE,
        },
        binary_tasks={"image-classification": "image", "automatic-speech-recognition": "audio"},
        **options,
    )
    validator = RequestValidator(inner, config=config)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if principal is not None:
            get_context(scope).principal = principal
        await validator(scope, receive, send)

    return app, inner


def _chat(**extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/chat/completions", {"messages": []}, "messages: must not be empty"),
        ("/v1/chat/completions", {"messages": [{"content": "x"}]}, "messages[0].role: is required"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "robot"}]},
            "messages[0].role: must be one of 'user', 'system'",
        ),
        ("/v1/chat/completions", _chat(temperature=-1), "temperature: must be >= 0"),
        ("/v1/chat/completions", _chat(temperature="hot"), "temperature: must be a number (or null)"),
        ("/v1/chat/completions", _chat(stop=["a"] * 5), "stop: must be a string or a list of at most 4 strings"),
        ("/v1/chat/completions", {}, "messages: is required"),
        ("/generate", {"inputs": ""}, "inputs: must not be empty"),
        ("/generate", {"inputs": "x", "parameters": {"top_p": 1}}, "parameters.top_p: must be < 1"),
        (
            "/generate",
            {"inputs": "x", "parameters": {"temprature": 1}},
            "parameters.temprature: is not a known parameter (check its spelling)",
        ),
        (
            "/",
            {"inputs": "x", "parameters": {"a": 1, "b": 2}},
            "parameters: unknown parameters 'a', 'b' (check their spelling)",
        ),
        (
            "/models/m/pipeline/text-classification",
            {"inputs": "x", "parameters": {"top_k": 0}},
            "parameters.top_k: must be >= 1",
        ),
        ("/models/unknown-task-model", {"parameters": {}}, "inputs: is required"),
    ],
)
async def test_schema_violations_are_422_naming_the_field(path: str, body: Any, message: str) -> None:
    app, inner = _app()
    stream, raw = await request(app, "POST", path, json_body=body)
    assert stream.status == 422
    assert json.loads(raw) == {"error": message, "error_type": "validation"}
    assert inner.bodies == []


@pytest.mark.anyio
async def test_valid_bodies_reach_the_app_whole() -> None:
    app, inner = _app()
    for path, body in (("/v1/chat/completions", _chat(stop="x", temperature=None)), ("/generate", {"inputs": "hi"})):
        stream, _ = await request(app, "POST", path, json_body=body)
        assert stream.status == 200
    assert [json.loads(b) for b in inner.bodies] == [_chat(stop="x", temperature=None), {"inputs": "hi"}]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("body", "error_type", "message"),
    [
        (b"{oops", "invalid_json", "The request body is not valid JSON"),
        (b"[1, 2]", "invalid_request", "The request body must be a JSON object"),
        (b'"text"', "invalid_request", "The request body must be a JSON object"),
        (b"", "invalid_request", "The request body is empty"),
        (b"[" * 100_000, "invalid_json", "nested too deeply"),
    ],
)
async def test_malformed_bodies_are_400(body: bytes, error_type: str, message: str) -> None:
    app, inner = _app()
    stream, raw = await request(
        app, "POST", "/v1/chat/completions", body=body, headers={"content-type": "application/json"}
    )
    error = json.loads(raw)
    assert stream.status == 400 and error["error_type"] == error_type and message in error["error"]
    assert inner.bodies == []


@pytest.mark.anyio
async def test_a_body_over_the_limit_is_413_without_reading_the_rest() -> None:
    app, inner = _app(max_body_bytes=100)
    chunks = [b'{"messages": [' + b" " * 90, b" " * 50, b"never read"]
    stream, raw = await request(app, "POST", "/v1/chat/completions", body=chunks)
    assert stream.status == 413 and json.loads(raw)["error_type"] == "payload_too_large"
    assert inner.bodies == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
async def test_json_routes_refuse_other_content_types_with_415(content_type: str) -> None:
    app, _ = _app()
    stream, raw = await request(
        app, "POST", "/v1/chat/completions", body=json.dumps(_chat()).encode(), headers={"content-type": content_type}
    )
    assert stream.status == 415 and "application/json" in json.loads(raw)["error"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "application/vnd.api+json", ""]
)
async def test_json_routes_accept_json_types_and_no_type(content_type: str) -> None:
    app, _ = _app()
    headers = {"content-type": content_type} if content_type else {}
    stream, _ = await request(app, "POST", "/v1/chat/completions", body=json.dumps(_chat()).encode(), headers=headers)
    assert stream.status == 200


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [
        ("/models/m/pipeline/image-classification", PNG, {}, 200),  # raw bytes, no content type: sniffed
        ("/models/m/pipeline/image-classification", PNG, {"content-type": "image/png"}, 200),
        ("/models/m/pipeline/image-classification", b"\x00\x01rawish", {"content-type": "image/x-exotic"}, 200),
        ("/models/m/pipeline/automatic-speech-recognition", WAV, {}, 200),
        ("/models/m/pipeline/automatic-speech-recognition", FLAC, {"content-type": "audio/flac"}, 200),
        ("/models/m/pipeline/automatic-speech-recognition", PNG, {}, 415),  # an image to an audio task
        ("/models/m/pipeline/image-classification", b"hello world", {}, 415),  # no known format, no type
        ("/models/m/pipeline/image-classification", b"", {}, 400),
        ("/models/m/pipeline/text-classification", b"hello world", {"content-type": "text/plain"}, 415),
        ("/models/unknown/model", b"\x00\x01", {}, 200),  # a task we cannot name: its upstream decides
    ],
)
async def test_raw_media_bodies_are_sniffed(path: str, body: bytes, headers: dict[str, str], status: int) -> None:
    app, inner = _app()
    stream, raw = await request(app, "POST", path, body=body, headers=headers)
    assert stream.status == status, raw
    assert (inner.bodies == [body]) == (status == 200)


@pytest.mark.anyio
async def test_media_tasks_also_take_json_with_base64_inputs() -> None:
    app, _ = _app()
    ok, _ = await request(app, "POST", "/models/m/pipeline/image-classification", json_body={"inputs": "iVBORw0KGgo="})
    bad, raw = await request(app, "POST", "/models/m/pipeline/image-classification", json_body={"inputs": 3})
    assert ok.status == 200 and bad.status == 422 and json.loads(raw)["error"] == "inputs: must be a string"


@pytest.mark.anyio
async def test_caps_of_the_principal() -> None:
    capped = Principal(id="small", max_tokens=16, max_prompt_length=10)
    app, inner = _app(capped)
    over, raw = await request(app, "POST", "/v1/chat/completions", json_body=_chat(max_tokens=100))
    assert over.status == 422 and json.loads(raw)["error"] == "max_tokens: must be <= 16 for this key"
    tgi, raw = await request(app, "POST", "/generate", json_body={"inputs": "x", "parameters": {"max_new_tokens": 17}})
    assert tgi.status == 422 and json.loads(raw)["error"] == "parameters.max_new_tokens: must be <= 16 for this key"
    long, raw = await request(
        app, "POST", "/v1/chat/completions", json_body={"messages": [{"role": "user", "content": "x" * 11}]}
    )
    assert long.status == 422
    assert json.loads(raw)["error"] == "messages: the prompt is 11 characters, more than the 10 this key allows"
    fine, _ = await request(app, "POST", "/v1/chat/completions", json_body=_chat())
    generate, _ = await request(app, "POST", "/generate", json_body={"inputs": "hi"})
    assert fine.status == generate.status == 200
    assert json.loads(inner.bodies[0])["max_tokens"] == 16  # an unbounded request is given the cap
    assert json.loads(inner.bodies[1])["parameters"] == {"max_new_tokens": 16}


@pytest.mark.anyio
async def test_get_routes_and_foreign_paths_pass_through() -> None:
    app, inner = _app()
    for method, path in (("GET", "/v1/models"), ("GET", "/info"), ("POST", "/my/own/route"), ("GET", "/health")):
        stream, _ = await request(app, method, path, body=b"not json at all")
        assert stream.status == 200, path
    assert len(inner.bodies) == 4


def test_an_invalid_schema_fails_when_the_config_is_built() -> None:
    with pytest.raises(ValueError, match="invalid schema"):
        ValidatorConfig(route_schemas={"chat": {"type": "no-such-type"}}, task_schemas={}, binary_tasks={})


def test_the_engine_picks_the_deepest_error() -> None:
    schema = CompiledSchema(
        {
            "type": "object",
            "properties": {"a": {"type": "object", "properties": {"b": {"type": "integer"}}}},
            "required": ["z"],
        }
    )
    with pytest.raises(Violation) as info:
        schema.check({"a": {"b": "x"}})
    assert (info.value.path, info.value.message) == ("a.b", "must be an integer")


@pytest.mark.parametrize(
    ("head", "media"),
    [
        (PNG, "image/png"),
        (b"\xff\xd8\xff\xe0", "image/jpeg"),
        (b"GIF89a", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (WAV, "audio/wav"),
        (FLAC, "audio/flac"),
        (b"OggS\x00", "audio/ogg"),
        (b"ID3\x04", "audio/mpeg"),
        (b"\xff\xfb\x90\x00", "audio/mpeg"),
        (b"\x00\x00\x00\x20ftypM4A ", "audio/mp4"),
        (b"\x00\x00\x00\x20ftypisom", "video/mp4"),
        (b"\x1aE\xdf\xa3", "video/webm"),
        (b"hello", None),
        (b"", None),
    ],
)
def test_sniffing(head: bytes, media: str | None) -> None:
    assert sniff(head) == media


def test_media_helpers() -> None:
    assert media_kind("image/png") == "image" and media_kind("audio/x-wav; rate=16000") == "audio"
    assert media_kind("application/json") is None and media_kind(None) is None
    assert is_json_type("application/json; charset=utf-8") and is_json_type("application/problem+json")
    assert not is_json_type("text/json-ish") and not is_json_type("text/plain")
    assert looks_like_json(b'  {"a": 1}') and looks_like_json(b"[1]") and not looks_like_json(b"\x89PNG")


@pytest.mark.anyio
async def test_the_default_schemas_bound_the_number_of_choices() -> None:
    """``n`` (and ``best_of``) are bounded as OpenAI bounds them: a huge ``n`` would make the upstream work for ever."""
    inner = Inner()
    app = RequestValidator(inner, config=ValidatorConfig())
    stream, raw = await request(app, "POST", "/v1/chat/completions", json_body={**_chat(), "n": 250_000_000})
    assert stream.status == 422 and json.loads(raw)["error"] == "n: must be <= 128"
    stream, raw = await request(app, "POST", "/v1/completions", json_body={"prompt": "x", "best_of": 21})
    assert stream.status == 422 and json.loads(raw)["error"] == "best_of: must be <= 20"
    assert inner.bodies == []
