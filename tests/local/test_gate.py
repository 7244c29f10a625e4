"""LocalModelGate alone: a 503 with Retry-After for the managed upstream while it is down, untouched otherwise."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from hfasgi.catalog import ModelCatalog, ModelEntry
from hfasgi.context import get_context
from hfasgi.errors import send_error
from hfasgi.forwarding.upstream import Upstream, UpstreamKind
from hfasgi.local.gate import LocalGateConfig, LocalModelGate
from tests.asgi_driver import request

pytestmark = pytest.mark.anyio

LOCAL = Upstream(name="default", kind=UpstreamKind.OPENAI, url="http://127.0.0.1:9")
CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


class FakeChild:
    """A managed upstream whose availability the test sets."""

    def __init__(self, available: bool = True, retry_after: int = 7) -> None:
        self.available = available
        self.retry_after = retry_after
        self.ready = asyncio.Event()

    async def wait_available(self, limit: float) -> bool:
        try:
            await asyncio.wait_for(self.ready.wait(), limit)
        except TimeoutError:
            return False
        self.available = True
        return True


class Forwarder:
    """Stands in for HFForwarder: names the upstream in the context, then answers 200, or 502 when ``down``."""

    def __init__(self, catalog: ModelCatalog) -> None:
        self.catalog = catalog
        self.down = False
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        document = json.loads(body) if body else {}
        get_context(scope).upstream_name = self.catalog.resolve(document.get("model")).upstream.name
        if self.down:
            await send_error(scope, send, 502, "upstream_unavailable", "Upstream 'default' is unreachable")
            return
        payload = b'{"ok":true}'
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _gate(catalog: ModelCatalog, child: FakeChild, upstream: str = "default") -> tuple[LocalModelGate, Forwarder]:
    inner = Forwarder(catalog)
    return LocalModelGate(
        inner, config=LocalGateConfig(process=child, upstream=upstream, catalog=catalog, model="tiny")
    ), inner


def _local_only() -> ModelCatalog:
    entry = ModelEntry(id="tiny", upstream="default", upstream_model="/models/tiny")
    return ModelCatalog([LOCAL], [entry], default_model="tiny", allow_unlisted=False)


def _mixed() -> ModelCatalog:
    router = Upstream(name="default", kind=UpstreamKind.ROUTER, url="https://router.example")
    local = Upstream(name="local", kind=UpstreamKind.OPENAI, url="http://127.0.0.1:9")
    entry = ModelEntry(id="tiny", upstream="local", upstream_model="/models/tiny")
    return ModelCatalog([router, local], [entry], default_model="tiny")


def _assert_unavailable(stream: Any, body: bytes, retry_after: int = 7) -> None:
    assert stream.status == 503
    assert stream.headers[b"retry-after"] == str(retry_after).encode()
    assert stream.headers[b"content-length"] == str(len(body)).encode()
    doc = json.loads(body)
    assert doc["error_type"] == "upstream_unavailable"
    assert doc["error"].startswith("Model 'tiny' is currently loading")
    assert doc["estimated_time"] == float(retry_after)


async def test_requests_pass_while_the_child_is_up() -> None:
    gate, inner = _gate(_local_only(), FakeChild(available=True))
    stream, body = await request(gate, "POST", "/v1/chat/completions", json_body={**CHAT, "model": "tiny"})
    assert (stream.status, body, inner.calls) == (200, b'{"ok":true}', 1)


@pytest.mark.parametrize(
    ("method", "path", "document"),
    [
        ("POST", "/v1/chat/completions", {**CHAT, "model": "tiny"}),
        ("POST", "/v1/chat/completions", {**CHAT, "model": "dummy"}),
        ("POST", "/generate", {"inputs": "hi", "parameters": {"max_new_tokens": 4}}),
        ("POST", "/models/tiny", {"inputs": "hi"}),
    ],
)
async def test_requests_for_the_child_get_503_with_retry_after_while_it_is_down(
    method: str, path: str, document: Any
) -> None:
    gate, inner = _gate(_local_only(), FakeChild(available=False))
    stream, body = await request(gate, method, path, json_body=document)
    _assert_unavailable(stream, body)
    assert inner.calls == 0


async def test_catalog_routes_and_other_paths_pass_while_the_child_is_down() -> None:
    gate, inner = _gate(_local_only(), FakeChild(available=False))
    for path in ("/v1/models", "/info", "/health"):
        stream, _ = await request(gate, "GET", path)
        assert stream.status == 200, path
    assert inner.calls == 3


async def test_with_other_upstreams_only_the_childs_models_get_503() -> None:
    gate, inner = _gate(_mixed(), FakeChild(available=False), upstream="local")
    stream, body = await request(gate, "POST", "/v1/chat/completions", json_body={**CHAT, "model": "tiny"})
    _assert_unavailable(stream, body)
    stream, body = await request(gate, "POST", "/v1/chat/completions", json_body={**CHAT, "model": "org/other"})
    assert (stream.status, inner.calls) == (200, 1)
    assert json.loads(body) == {"ok": True}  # the body read by the gate reached the forwarder intact


async def test_a_502_for_the_child_becomes_the_503_once_it_is_known_down() -> None:
    child = FakeChild(available=True)
    gate, inner = _gate(_local_only(), child)
    inner.down = True
    stream, _ = await request(gate, "POST", "/v1/chat/completions", json_body={**CHAT, "model": "tiny"})
    assert stream.status == 502  # the child is not known to be down: the forwarder's own answer stands

    async def dies_under_the_request(scope: Any, receive: Any, send: Any) -> None:
        child.available = False  # noticed while the forwarder was trying
        await inner(scope, receive, send)

    gate.app = dies_under_the_request
    stream, body = await request(gate, "POST", "/v1/chat/completions", json_body={**CHAT, "model": "tiny"})
    _assert_unavailable(stream, body)


async def test_a_client_that_asks_to_wait_waits_for_the_restart() -> None:
    child = FakeChild(available=False)
    gate, inner = _gate(_local_only(), child)
    request_task = asyncio.ensure_future(
        request(
            gate,
            "POST",
            "/v1/chat/completions",
            json_body={**CHAT, "model": "tiny"},
            headers={"x-wait-for-model": "true"},
        )
    )
    for _ in range(20):
        await asyncio.sleep(0)
    assert not request_task.done() and inner.calls == 0
    child.ready.set()
    stream, _ = await request_task
    assert (stream.status, inner.calls) == (200, 1)


async def test_non_http_scopes_pass() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    gate = LocalModelGate(
        app, config=LocalGateConfig(process=FakeChild(False), upstream="default", catalog=_local_only(), model="t")
    )
    await gate({"type": "lifespan"}, None, None)
    await gate({"type": "websocket", "path": "/", "headers": []}, None, None)
    assert seen == ["lifespan", "websocket"]


def test_config_names_a_known_upstream() -> None:
    with pytest.raises(ValueError, match="'local' is not in the catalog"):
        LocalGateConfig(process=FakeChild(), upstream="local", catalog=_local_only(), model="tiny")
