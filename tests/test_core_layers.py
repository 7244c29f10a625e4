"""The small shared pieces: body reading, RequestId, ErrorEnvelope, stack() and the lifespan helpers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgi_lifespan import LifespanManager

from hfasgi.body import ClientDisconnected, read_body, replay_receive
from hfasgi.context import get_context
from hfasgi.envelope import ErrorEnvelope
from hfasgi.errors import GatewayError
from hfasgi.request_id import RequestId, RequestIdConfig
from hfasgi.stack import CANONICAL_ORDER, Layer, Lifespan, resources, stack
from tests.fakes import RecordingApp, call

pytestmark = pytest.mark.anyio


def receive_from(*messages: dict[str, Any]) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    return receive


async def test_read_body_joins_chunks_once_and_keeps_it_in_the_context() -> None:
    scope: dict[str, Any] = {"type": "http", "headers": []}
    receive = receive_from(
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": True},
        {"type": "http.request", "more_body": False},
    )
    assert await read_body(scope, receive) == b"abcd"
    assert get_context(scope).body == b"abcd"
    assert await read_body(scope, receive_from()) == b"abcd"  # never read twice


async def test_read_body_refuses_a_declared_length_over_the_limit_before_reading() -> None:
    scope: dict[str, Any] = {"type": "http", "headers": [(b"Content-Length", b"11")]}

    async def must_not_receive() -> dict[str, Any]:
        raise AssertionError("the body was read")

    with pytest.raises(GatewayError) as info:
        await read_body(scope, must_not_receive, limit=10)
    assert (info.value.status, info.value.error_type) == (413, "payload_too_large")


async def test_read_body_stops_a_chunked_body_as_soon_as_it_passes_the_limit() -> None:
    read: list[int] = []

    async def endless() -> dict[str, Any]:
        read.append(1)
        return {"type": "http.request", "body": b"x" * 4, "more_body": True}

    with pytest.raises(GatewayError) as info:
        await read_body({"type": "http", "headers": []}, endless, limit=10)
    assert info.value.status == 413
    assert len(read) == 3


async def test_read_body_reports_a_client_that_left() -> None:
    receive = receive_from({"type": "http.request", "body": b"a", "more_body": True}, {"type": "http.disconnect"})
    with pytest.raises(ClientDisconnected):
        await read_body({"type": "http", "headers": []}, receive)


async def test_replay_receive_gives_the_body_once_then_the_real_receive() -> None:
    scope: dict[str, Any] = {"type": "http", "headers": []}
    get_context(scope).body = b"payload"
    replay = replay_receive(scope, receive_from({"type": "http.disconnect"}))
    assert await replay() == {"type": "http.request", "body": b"payload", "more_body": False}
    assert await replay() == {"type": "http.disconnect"}


async def test_request_id_is_generated_and_replaces_any_inner_value() -> None:
    app = RecordingApp()
    sent = await call(RequestId(app))
    headers = dict(sent[0]["headers"])
    assert len(headers[b"x-request-id"]) == 32
    assert headers[b"x-request-id"] != b"app-set"
    assert get_context(app.scopes[0]).request_id == headers[b"x-request-id"].decode()


@pytest.mark.parametrize(
    ("incoming", "kept"), [(b"req-123", True), (b"bad id with spaces", False), (b"x" * 300, False)]
)
async def test_a_sane_client_request_id_is_kept(incoming: bytes, kept: bool) -> None:
    sent = await call(RequestId(RecordingApp()), headers=[(b"x-request-id", incoming)])
    echoed = dict(sent[0]["headers"])[b"x-request-id"]
    assert (echoed == incoming) is kept


async def test_request_id_header_name_is_configurable() -> None:
    sent = await call(RequestId(RecordingApp(), config=RequestIdConfig(header="X-Correlation-Id")))
    assert b"x-correlation-id" in dict(sent[0]["headers"])


async def test_error_envelope_turns_a_gateway_error_into_json() -> None:
    app = ErrorEnvelope(RecordingApp(raise_before=GatewayError(418, "teapot", "short and stout")))
    sent = await call(app)
    assert sent[0]["status"] == 418
    assert json.loads(sent[1]["body"]) == {"error": "short and stout", "error_type": "teapot"}
    assert dict(sent[0]["headers"])[b"content-length"] == str(len(sent[1]["body"])).encode()


async def test_error_envelope_hides_unexpected_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    sent = await call(ErrorEnvelope(RecordingApp(raise_before=RuntimeError("secret detail"))))
    assert sent[0]["status"] == 500
    assert json.loads(sent[1]["body"]) == {"error": "Internal error", "error_type": "internal"}
    assert b"secret detail" not in sent[1]["body"]
    assert "secret detail" in caplog.text


async def test_error_envelope_never_starts_a_second_response() -> None:
    app = ErrorEnvelope(RecordingApp(raise_after=RuntimeError("mid-body")))
    with pytest.raises(RuntimeError, match="mid-body"):
        await call(app)


def test_stack_reads_top_down_and_checks_the_canonical_order() -> None:
    inner = RecordingApp()
    app = stack(inner, Layer(RequestId), Layer(ErrorEnvelope))
    assert isinstance(app, RequestId)
    assert isinstance(app.app, ErrorEnvelope)
    assert app.app.app is inner
    with pytest.raises(ValueError, match="ErrorEnvelope must come after RequestId"):
        stack(inner, Layer(ErrorEnvelope), Layer(RequestId))
    assert CANONICAL_ORDER[-1] == "HFForwarder"


class Tracked:
    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name, self.log, self.fail = name, log, fail

    async def open(self) -> None:
        if self.fail:
            raise RuntimeError(f"{self.name} cannot open")
        self.log.append(f"open {self.name}")

    async def aclose(self) -> None:
        self.log.append(f"close {self.name}")


async def test_resources_open_in_order_and_close_in_reverse_even_on_failure() -> None:
    log: list[str] = []
    async with resources(Tracked("a", log), Tracked("b", log)):
        log.append("serve")
    assert log == ["open a", "open b", "serve", "close b", "close a"]
    log.clear()
    with pytest.raises(RuntimeError, match="c cannot open"):
        async with resources(Tracked("a", log), Tracked("c", log, fail=True)):
            pass
    assert log == ["open a", "close a"]


async def test_lifespan_wrapper_runs_the_apps_own_lifespan_inside_the_resources() -> None:
    log: list[str] = []
    app = RecordingApp()
    async with LifespanManager(Lifespan(app, resources=[Tracked("pool", log)])):
        assert log == ["open pool"]
        assert app.lifespan_events == ["lifespan.startup"]
    assert app.lifespan_events == ["lifespan.startup", "lifespan.shutdown"]
    assert log == ["open pool", "close pool"]


async def test_lifespan_wrapper_supports_apps_without_lifespan() -> None:
    async def no_lifespan(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http", "this app does not speak lifespan"

    log: list[str] = []
    async with LifespanManager(Lifespan(no_lifespan, resources=[Tracked("pool", log)])):
        assert log == ["open pool"]
    assert log == ["open pool", "close pool"]


async def test_lifespan_wrapper_reports_a_resource_that_cannot_open() -> None:
    with pytest.raises(RuntimeError, match="cannot open"):
        async with LifespanManager(Lifespan(RecordingApp(), resources=[Tracked("x", [], fail=True)])):
            pass
