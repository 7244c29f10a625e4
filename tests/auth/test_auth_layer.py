"""ApiKeyAuth in process: who may call, what they may use, and what passes by untouched."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hfasgi.auth import ApiKeyAuth, AuthConfig, KeyRecord, MemoryKeyStore
from hfasgi.catalog import ModelCatalog, ModelEntry
from hfasgi.context import get_context
from hfasgi.forwarding.upstream import Upstream
from hfasgi.operations import Routes
from hfasgi.redis_client import STORE_ERRORS
from tests.asgi_driver import request

KEY = "hfasgi_test-key-of-alice"
SCOPED = "hfasgi_test-key-of-the-chat-bot"


class Echo:
    """Answers with the principal the auth layer put in the context and the body it saw."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})
            return
        self.calls += 1
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        principal = get_context(scope).principal
        payload = json.dumps({"principal": principal.id if principal else None, "body": body.decode()}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})


def _store() -> MemoryKeyStore:
    return MemoryKeyStore(
        [
            KeyRecord.for_key("alice", KEY),
            KeyRecord.for_key("chat-bot", SCOPED, models=("org/allowed-*", "solo"), tasks=("chat-completion",)),
            KeyRecord.for_key("gone", "hfasgi_revoked").revoke(),
        ]
    )


def _app(**options: Any) -> tuple[ApiKeyAuth, Echo]:
    inner = Echo()
    return ApiKeyAuth(inner, config=AuthConfig(store=_store(), **options)), inner


CHAT = {"model": "org/allowed-1", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": f"Bearer {KEY}"},
        {"authorization": f"bearer {KEY}"},
        {"authorization": f"Bearer: {KEY}"},  # the form some HF docs show (hf_api.md §1.1)
        {"x-api-key": KEY},
        {"x-api-key": KEY, "authorization": "Bearer hf_an_unrelated_hub_token"},
        {"x-api-key": " ", "authorization": f"Bearer {KEY}"},  # an empty x-api-key does not hide the bearer
    ],
)
async def test_a_valid_key_passes_and_names_the_principal(headers: dict[str, str]) -> None:
    app, inner = _app()
    stream, body = await request(app, "POST", "/v1/chat/completions", json_body=CHAT, headers=headers)
    assert stream.status == 200
    assert json.loads(body)["principal"] == "alice"
    assert json.loads(json.loads(body)["body"]) == CHAT  # the body still reaches the app whole


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "message", "challenge"),
    [
        ({}, "Missing API key", b'Bearer realm="hfasgi"'),
        ({"authorization": "Basic YWxhZGRpbjpvcGVu"}, "Missing API key", b'Bearer realm="hfasgi"'),
        ({"authorization": "Bearer "}, "Missing API key", b'Bearer realm="hfasgi"'),
        ({"authorization": "Bearer wrong"}, "Invalid API key", b'Bearer realm="hfasgi", error="invalid_token"'),
        ({"x-api-key": "hfasgi_revoked"}, "Invalid API key", b'Bearer realm="hfasgi", error="invalid_token"'),
        ({"x-api-key": "wrong", "authorization": f"Bearer {KEY}"}, "Invalid API key", b'error="invalid_token"'),
    ],
)
async def test_missing_wrong_and_revoked_keys_get_401(headers: dict[str, str], message: str, challenge: bytes) -> None:
    app, inner = _app()
    stream, body = await request(app, "POST", "/v1/chat/completions", json_body=CHAT, headers=headers)
    assert stream.status == 401
    error = json.loads(body)
    assert error["error_type"] == "authentication" and error["error"].startswith(message)
    assert challenge in stream.headers[b"www-authenticate"]
    assert inner.calls == 0
    for secret in ("wrong", "hfasgi_revoked", KEY, "YWxhZGRpbjpvcGVu"):
        assert secret not in body.decode()  # a credential is never echoed


@pytest.mark.anyio
async def test_options_health_and_the_apps_own_routes_stay_open() -> None:
    app, inner = _app()
    for method, path in (("OPTIONS", "/v1/chat/completions"), ("GET", "/health"), ("GET", "/my/own/route")):
        stream, _ = await request(app, method, path)
        assert stream.status == 200, path
    assert inner.calls == 3


@pytest.mark.anyio
async def test_protect_all_covers_every_route_but_the_open_paths() -> None:
    app, inner = _app(protect="all")
    stream, body = await request(app, "GET", "/my/own/route")
    assert stream.status == 401 and json.loads(body)["error_type"] == "authentication"
    stream, body = await request(app, "GET", "/my/own/route", headers={"x-api-key": KEY})
    assert stream.status == 200 and json.loads(body)["principal"] == "alice"
    stream, _ = await request(app, "GET", "/health")
    assert stream.status == 200


@pytest.mark.anyio
async def test_prefixed_routes_keep_health_open() -> None:
    app, _ = _app(routes=Routes("/hf"))
    assert (await request(app, "GET", "/hf/health"))[0].status == 200
    assert (await request(app, "POST", "/hf/v1/chat/completions", json_body=CHAT))[0].status == 401
    assert (await request(app, "POST", "/v1/chat/completions", json_body=CHAT))[0].status == 200  # not ours


async def _websocket(app: Any, headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "websocket", "path": "/ws", "headers": headers, "query_string": b""}, receive, send)
    return sent


@pytest.mark.anyio
async def test_websockets_are_refused_before_accept_without_a_key() -> None:
    app, _ = _app(protect="all")
    refused = (await _websocket(app, []))[0]
    assert (refused["type"], refused["code"]) == ("websocket.close", 4401)
    assert "Missing API key" in refused["reason"]
    assert (await _websocket(app, [(b"x-api-key", KEY.encode())]))[0] == {"type": "websocket.accept"}
    gateway_only, _ = _app()
    assert (await _websocket(gateway_only, []))[0] == {"type": "websocket.accept"}  # not a gateway route


@pytest.mark.anyio
async def test_lifespan_passes_through_untouched() -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    await ApiKeyAuth(inner, config=AuthConfig(store=_store()))({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/chat/completions", {"model": "org/allowed-7", "messages": []}, 200, ""),
        ("/v1/chat/completions", {"model": "org/allowed-7:groq", "messages": []}, 200, ""),
        ("/models/solo/v1/chat/completions", {"messages": []}, 200, ""),
        ("/v1/chat/completions", {"model": "org/other", "messages": []}, 403, "model 'org/other'"),
        ("/v1/chat/completions", {"messages": []}, 403, "the default model"),
        ("/v1/embeddings", {"model": "org/allowed-7", "input": "x"}, 403, "task 'feature-extraction'"),
        ("/models/org/allowed-7/pipeline/text-classification", {"inputs": "x"}, 403, "task 'text-classification'"),
        ("/models/org/allowed-7", {"inputs": "x"}, 403, "its task is unknown"),
    ],
)
async def test_scoped_keys_get_403_outside_their_models_and_tasks(
    path: str, body: dict[str, Any], status: int, message: str
) -> None:
    app, _ = _app()
    stream, raw = await request(app, "POST", path, json_body=body, headers={"x-api-key": SCOPED})
    assert stream.status == status, raw
    if status == 403:
        error = json.loads(raw)
        assert error["error_type"] == "permission"
        assert error["error"].startswith("This key may not use ") and message in error["error"]
        assert stream.headers[b"x-error-message"] == error["error"].encode()  # what huggingface_hub shows
    else:
        assert json.loads(raw)["principal"] == "chat-bot"


@pytest.mark.anyio
async def test_scope_checks_use_the_catalog_for_defaults_aliases_and_tasks() -> None:
    catalog = ModelCatalog(
        [Upstream(url="http://127.0.0.1:1")],
        [ModelEntry(id="solo", task="chat-completion"), ModelEntry(id="org/allowed-emb", task="feature-extraction")],
        default_model="solo",
    )
    app, _ = _app(catalog=catalog)
    ok = await request(app, "POST", "/v1/chat/completions", json_body={"model": "dummy"}, headers={"x-api-key": SCOPED})
    assert ok[0].status == 200  # the placeholder is the default model, which the key may use
    task = await request(app, "POST", "/models/solo", json_body={"inputs": "x"}, headers={"x-api-key": SCOPED})
    assert task[0].status == 200  # the catalog says solo is a chat model
    other = await request(
        app, "POST", "/models/org/allowed-emb", json_body={"inputs": "x"}, headers={"x-api-key": SCOPED}
    )
    assert other[0].status == 403 and "feature-extraction" in json.loads(other[1])["error"]


@pytest.mark.anyio
async def test_models_listing_needs_a_key_but_no_scope() -> None:
    app, _ = _app()
    assert (await request(app, "GET", "/v1/models"))[0].status == 401
    assert (await request(app, "GET", "/v1/models", headers={"x-api-key": SCOPED}))[0].status == 200


@pytest.mark.anyio
async def test_a_broken_key_store_gets_503_with_retry_after_never_401() -> None:
    class Broken:
        async def find(self, key_hash: str) -> KeyRecord | None:
            raise STORE_ERRORS[0]("down")

        async def open(self) -> None: ...

        async def aclose(self) -> None: ...

    app = ApiKeyAuth(Echo(), config=AuthConfig(store=Broken()))
    stream, body = await request(app, "POST", "/v1/chat/completions", json_body=CHAT, headers={"x-api-key": KEY})
    assert stream.status == 503 and stream.headers[b"retry-after"] == b"1"
    assert json.loads(body)["error_type"] == "authentication_unavailable"


@pytest.mark.anyio
async def test_malformed_bodies_of_scoped_keys_are_400_not_500() -> None:
    app, _ = _app()
    stream, body = await request(app, "POST", "/v1/chat/completions", body=b"{nope", headers={"x-api-key": SCOPED})
    assert stream.status == 400 and json.loads(body)["error_type"] == "invalid_json"


def test_config_needs_a_way_to_authenticate() -> None:
    with pytest.raises(ValueError, match="key store"):
        AuthConfig()
    with pytest.raises(ValueError, match="protect"):
        AuthConfig(store=_store(), protect="some")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_hub_token_sent_by_mistake_gets_a_hint_not_an_echo() -> None:
    app, _ = _app()
    token = "hf_abcdefghijklmnopqrstuvwxyz012345"
    stream, body = await request(
        app, "POST", "/v1/chat/completions", json_body=CHAT, headers={"authorization": f"Bearer {token}"}
    )
    error = json.loads(body)
    assert stream.status == 401 and error["error"].startswith("Invalid API key (this looks like a Hugging Face token")
    assert token not in body.decode()
