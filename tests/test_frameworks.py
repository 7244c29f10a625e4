"""The layers alone and stacked, registered under plain ASGI, Starlette, FastAPI and Litestar.

Every registration form (a *variant*) builds the same small app: its own lifespan (logged), its own
routes ``GET /own/hello`` and ``GET /own/crash``, and the layers with the gateway under ``/hf``, in
front of the fake HF upstream on a real socket. The tests are parametrised over variants and layer
sets rather than copied. Streaming goes through the raw driver, never ``httpx.ASGITransport``.
"""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI, Request
from litestar import Litestar, get
from litestar.middleware import DefineMiddleware
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Route

from hfasgi.app import layers
from hfasgi.contrib import fastapi as contrib_fastapi
from hfasgi.contrib import starlette as contrib_starlette
from hfasgi.contrib.litestar import HFPlugin
from hfasgi.envelope import ErrorEnvelope
from hfasgi.errors import GatewayError
from hfasgi.forwarding.forwarder import ForwarderConfig, HFForwarder
from hfasgi.operations import Routes
from hfasgi.reformat import ResponseReformatter
from hfasgi.request_id import RequestId
from hfasgi.stack import Layer, Lifespan, layer_resources, resources, stack
from hfasgi.types import Receive, Send
from tests.asgi_driver import open_stream
from tests.upstream import FakeHF, expected_chat, expected_generation, expected_text_classification
from tests.upstream.fixtures import Upstream

pytestmark = pytest.mark.anyio

SERVER_TOKEN = "hf_frameworks_server_token"
MESSAGES = [{"role": "user", "content": "Tell me about composable middleware"}]
CHAT = {"model": "org/chat-model", "messages": MESSAGES, "max_tokens": 3}
HEX_ID = re.compile(r"[0-9a-f]{32}")


# --- the fake upstream -----------------------------------------------------------------------------


@pytest.fixture
def gateway(upstream: Upstream) -> ForwarderConfig:
    """A fresh forwarder config (and pool) for the test: the router dialect under ``/hf``."""
    return ForwarderConfig.to(upstream.url, kind="router", token=SERVER_TOKEN, routes=Routes("/hf"))


# --- layer sets ------------------------------------------------------------------------------------


class Refuse:
    """A test layer that raises a :class:`GatewayError` on ``/hf/refuse`` (for the envelope to catch)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/hf/refuse":
            raise GatewayError(418, "refused", "the refuse layer said no")
        await self.app(scope, receive, send)


LAYER_SETS: dict[str, Callable[[ForwarderConfig], list[Layer]]] = {
    "request_id": lambda gw: [Layer(RequestId)],
    "envelope": lambda gw: [Layer(ErrorEnvelope), Layer(Refuse)],
    "forwarder": lambda gw: [Layer(HFForwarder, {"config": gw}, (gw.pool,))],
    "full": layers,
}


def has(layer_list: list[Layer], cls: type) -> bool:
    return any(layer.cls is cls for layer in layer_list)


# --- the same app under every registration form ----------------------------------------------------


def _plain(log: list[str]) -> Any:
    """A plain ASGI app with a lifespan and the two own routes."""

    async def app(scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                event = message["type"].rsplit(".", 1)[1]
                log.append(event)
                await send({"type": message["type"] + ".complete"})
                if event == "shutdown":
                    return
        if scope["type"] != "http":
            return
        if scope["path"] == "/own/crash":
            raise RuntimeError("own route crashed")
        status, body = (200, b'{"hello":"asgi"}') if scope["path"] == "/own/hello" else (404, b'{"own":"404"}')
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def _starlette_routes(name: str) -> list[Route]:
    async def hello(request: StarletteRequest) -> JSONResponse:
        return JSONResponse({"hello": name})

    async def crash(request: StarletteRequest) -> JSONResponse:
        raise RuntimeError("own route crashed")

    return [Route("/own/hello", hello), Route("/own/crash", crash)]


def _logged(log: list[str], items: list[Any] | None = None) -> Any:
    """A Starlette/FastAPI lifespan that logs; with ``items`` it also opens them (the user's own job)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with resources(*(items or [])):
            log.append("startup")
            yield
            log.append("shutdown")

    return lifespan


def _fastapi(log: list[str], items: list[Any] | None = None) -> FastAPI:
    app = FastAPI(lifespan=_logged(log, items))

    @app.get("/own/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "fastapi"}

    @app.get("/own/crash")
    async def crash() -> dict[str, str]:
        raise RuntimeError("own route crashed")

    return app


def _litestar(log: list[str], **options: Any) -> Litestar:
    @get("/own/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "litestar"}

    @get("/own/crash")
    async def crash() -> dict[str, str]:
        raise RuntimeError("own route crashed")

    async def startup() -> None:
        log.append("startup")

    async def shutdown() -> None:
        log.append("shutdown")

    return Litestar(route_handlers=[hello, crash], on_startup=[startup], on_shutdown=[shutdown], **options)


def build_asgi(ls: list[Layer], log: list[str]) -> Any:
    return Lifespan(stack(_plain(log), *ls), resources=layer_resources(ls))


def build_starlette_middleware(ls: list[Layer], log: list[str]) -> Any:
    lifespan = _logged(log, layer_resources(ls))
    return Starlette(
        routes=_starlette_routes("starlette"), middleware=contrib_starlette.middleware(ls), lifespan=lifespan
    )


def build_starlette_install(ls: list[Layer], log: list[str]) -> Any:
    app = Starlette(routes=_starlette_routes("starlette"), lifespan=_logged(log))
    contrib_starlette.install(app, ls)
    return app


def build_fastapi_add_middleware(ls: list[Layer], log: list[str]) -> Any:
    app = _fastapi(log, layer_resources(ls))
    for layer in reversed(ls):  # the last added is the outermost
        app.add_middleware(layer.cls, **layer.kwargs)
    return app


def build_fastapi_install(ls: list[Layer], log: list[str]) -> Any:
    app = _fastapi(log)
    contrib_fastapi.install(app, ls)
    return app


def build_litestar_wrapped(ls: list[Layer], log: list[str]) -> Any:
    return Lifespan(stack(_litestar(log), *ls), resources=layer_resources(ls))


def build_litestar_plugin(ls: list[Layer], log: list[str]) -> Any:
    return _litestar(log, plugins=[HFPlugin(ls, path="/hf")])


def build_litestar_define(ls: list[Layer], log: list[str]) -> Any:
    items = layer_resources(ls)
    middleware = [DefineMiddleware(layer.cls, **layer.kwargs) for layer in ls]
    return _litestar(log, middleware=middleware, lifespan=[lambda app: resources(*items)])


@dataclass(frozen=True)
class Variant:
    name: str
    build: Callable[[list[Layer], list[str]], Any]
    own_routes_seen: bool = True
    """The layers see the framework's own routes."""
    gateway_seen: bool = True
    """Requests under ``/hf`` reach the layers (Litestar route middleware never sees unrouted paths)."""
    own_errors_enveloped: bool = True
    """An exception in an own route reaches the envelope (Litestar answers its routes' errors itself)."""


VARIANTS = [
    Variant("asgi", build_asgi),
    Variant("starlette-middleware", build_starlette_middleware),
    Variant("starlette-install", build_starlette_install),
    Variant("fastapi-add_middleware", build_fastapi_add_middleware),
    Variant("fastapi-install", build_fastapi_install),
    Variant("litestar-wrapped", build_litestar_wrapped, own_errors_enveloped=False),
    Variant("litestar-plugin", build_litestar_plugin, own_routes_seen=False, own_errors_enveloped=False),
    Variant("litestar-define", build_litestar_define, gateway_seen=False, own_errors_enveloped=False),
]


def cases(*sets: str, where: Callable[[Variant], bool] = lambda v: True) -> list[Any]:
    return [pytest.param(v, s, id=f"{v.name}-{s}") for v in VARIANTS if where(v) for s in sets]


def state_per_request(app: Any) -> Any:
    """Give each request a shallow copy of the lifespan state, as servers do (asgi-lifespan shares one dict,
    and Litestar keeps per-connection flags there, such as "the response has started")."""

    async def copying(scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan" and "state" in scope:
            scope["state"] = dict(scope["state"])
        await app(scope, receive, send)

    return copying


@contextlib.asynccontextmanager
async def running(app: Any) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The app with its lifespan started (``manager.app``) and an in-process client (not for streaming)."""
    async with (
        LifespanManager(state_per_request(app)) as manager,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://testserver") as client,
    ):
        yield manager.app, client


def own_name(variant: Variant) -> str:
    return variant.name.split("-")[0]


# --- the tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("variant", "layer_set"), cases(*LAYER_SETS))
async def test_lifespan_passes_through_and_own_routes_answer(
    variant: Variant, layer_set: str, gateway: ForwarderConfig
) -> None:
    log: list[str] = []
    ls = LAYER_SETS[layer_set](gateway)
    async with running(variant.build(ls, log)) as (_, client):
        assert log == ["startup"]
        assert gateway.pool.is_open is has(ls, HFForwarder)  # opened by the lifespan iff a layer needs it
        response = await client.get("/own/hello")
        assert response.status_code == 200
        assert response.json() == {"hello": own_name(variant)}
    assert log == ["startup", "shutdown"]
    assert not gateway.pool.is_open


@pytest.mark.parametrize(("variant", "layer_set"), cases("forwarder", "full", where=lambda v: v.gateway_seen))
async def test_a_gateway_route_reaches_the_upstream_and_back(
    variant: Variant, layer_set: str, gateway: ForwarderConfig, fake: FakeHF
) -> None:
    async with running(variant.build(LAYER_SETS[layer_set](gateway), [])) as (_, client):
        chat = await client.post("/hf/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer client"})
        task = await client.post("/hf/models/fake/text-classification", json={"inputs": "I love this"})
    assert chat.status_code == 200
    assert chat.json()["choices"][0]["message"]["content"] == expected_chat(MESSAGES, 3)
    sent = fake.last("/v1/chat/completions")
    assert sent.json == CHAT
    assert sent.headers["authorization"] == f"Bearer {SERVER_TOKEN}"
    assert task.status_code == 200
    assert task.json() == [expected_text_classification("I love this")]
    assert fake.last().path == "/hf-inference/models/fake/text-classification"


@pytest.mark.parametrize(("variant", "layer_set"), cases("forwarder", "full", where=lambda v: v.gateway_seen))
async def test_a_streamed_response_passes_chunk_by_chunk(
    variant: Variant, layer_set: str, gateway: ForwarderConfig, fake: FakeHF
) -> None:
    key = f"stream-{variant.name}-{layer_set}"
    headers = {"x-fake-scenario": "gate", "x-fake-key": key}
    async with (
        running(variant.build(LAYER_SETS[layer_set](gateway), [])) as (app, _),
        open_stream(app, "POST", "/hf/v1/chat/completions", json_body={**CHAT, "stream": True}, headers=headers) as s,
    ):
        assert s.status == 200
        assert s.headers[b"content-type"].startswith(b"text/event-stream")
        assert b"content-length" not in s.headers
        first = await s.chunk()
        assert first.startswith(b"data: {") and b'"role":"assistant"' in first
        assert await fake.await_for(lambda: fake.gated(key))  # the upstream is still holding the rest
        assert not s.ended
        fake.release(key)
        rest = await s.rest()
    assert rest.endswith(b"data: [DONE]\n\n")
    assert fake.streams[key].finished


@pytest.mark.parametrize(("variant", "layer_set"), cases("request_id", "full"))
async def test_the_request_id_is_echoed(
    variant: Variant, layer_set: str, gateway: ForwarderConfig, fake: FakeHF
) -> None:
    async with running(variant.build(LAYER_SETS[layer_set](gateway), [])) as (_, client):
        given = await client.get("/own/hello", headers={"x-request-id": "client-id-1"})
        made = await client.get("/own/hello")
        gateway_path = (
            await client.post("/hf/v1/chat/completions", json=CHAT, headers={"x-request-id": "client-id-2"})
            if layer_set == "full" and variant.gateway_seen
            else None
        )
    assert given.status_code == made.status_code == 200
    if variant.own_routes_seen:
        assert given.headers["x-request-id"] == "client-id-1"
        assert HEX_ID.fullmatch(made.headers["x-request-id"])
    else:  # the plugin leaves the app's own routes untouched
        assert "x-request-id" not in given.headers and "x-request-id" not in made.headers
    if gateway_path is not None:
        assert gateway_path.status_code == 200
        assert gateway_path.headers["x-request-id"] == "client-id-2"
        assert fake.last("/v1/chat/completions").headers["x-request-id"] == "client-id-2"


@pytest.mark.parametrize(("variant", "layer_set"), cases("envelope"))
async def test_the_envelope_answers_what_the_layers_raise(
    variant: Variant, layer_set: str, gateway: ForwarderConfig
) -> None:
    async with running(variant.build(LAYER_SETS[layer_set](gateway), [])) as (_, client):
        refused = await client.post("/hf/refuse", json={})
        crashed = await client.get("/own/crash")
    if variant.gateway_seen:
        assert refused.status_code == 418
        assert refused.json() == {"error": "the refuse layer said no", "error_type": "refused"}
        assert refused.headers["content-length"] == str(len(refused.content))
    else:  # Litestar route middleware: an unrouted path is the framework's 404, no layer ran
        assert refused.status_code == 404 and "error_type" not in refused.json()
    assert crashed.status_code == 500
    if variant.own_errors_enveloped:
        assert crashed.json() == {"error": "Internal error", "error_type": "internal"}
    else:  # Litestar turns its routes' exceptions into its own 500 before any layer sees them
        assert "error_type" not in crashed.json()


async def test_litestar_route_middleware_never_sees_a_gateway_path(gateway: ForwarderConfig, fake: FakeHF) -> None:
    """Why the plugin mounts: as ``DefineMiddleware`` the forwarder is never reached for ``/hf/...``."""
    app = build_litestar_define(LAYER_SETS["forwarder"](gateway), [])
    async with running(app) as (_, client):
        response = await client.post("/hf/v1/chat/completions", json=CHAT)
    assert response.status_code == 404
    assert not fake.requests


class Tracked:
    """A resource that logs when it is opened and closed."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def open(self) -> None:
        self.log.append("open")

    async def aclose(self) -> None:
        self.log.append("close")


async def test_fastapi_install_keeps_a_stateful_lifespan_and_included_router_lifespans() -> None:
    log: list[str] = []

    @contextlib.asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        log.append("app startup")
        yield {"greeting": "hello from the lifespan"}
        log.append("app shutdown")

    @contextlib.asynccontextmanager
    async def router_lifespan(app: Any) -> AsyncIterator[None]:
        log.append("router startup")
        yield
        log.append("router shutdown")

    app = FastAPI(lifespan=app_lifespan)
    contrib_fastapi.install(app, [Layer(RequestId)], resources=[Tracked(log)])
    router = APIRouter(lifespan=router_lifespan)

    @router.get("/own/greeting")
    async def greeting(request: Request) -> dict[str, str]:
        return {"greeting": request.state.greeting}

    app.include_router(router)  # after install: FastAPI nests the router's lifespan inside ours
    async with running(app) as (_, client):
        assert log == ["open", "app startup", "router startup"]
        response = await client.get("/own/greeting")
    assert response.json() == {"greeting": "hello from the lifespan"}
    assert "x-request-id" in response.headers
    assert log == ["open", "app startup", "router startup", "router shutdown", "app shutdown", "close"]


async def test_the_litestar_plugin_opens_resources_before_the_apps_startup_and_closes_them_after() -> None:
    log: list[str] = []
    app = _litestar(log, plugins=[HFPlugin([Layer(RequestId)], path="/hf", resources=[Tracked(log)])])
    async with running(app):
        assert log == ["open", "startup"]
    assert log == ["open", "startup", "shutdown", "close"]


async def test_the_litestar_plugin_serves_the_whole_prefix(upstream: Upstream, fake: FakeHF) -> None:
    gateway = ForwarderConfig.to(
        upstream.url, kind="router", default_model="fake/text-generation", routes=Routes("/hf")
    )
    async with running(_litestar([], plugins=[HFPlugin(layers(gateway))])) as (app, client):
        missing = await client.post("/hf/nothing/here", json={})
        wrong_method = await client.get("/hf/v1/chat/completions")
        root = await client.post("/hf", json={"inputs": "Hello", "parameters": {"max_new_tokens": 2}})
        closed: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "websocket.connect"}

        async def send(message: dict[str, Any]) -> None:
            closed.append(message)

        scope = {"type": "websocket", "path": "/hf/v1/chat/completions", "headers": [], "query_string": b""}
        await app({**scope, "raw_path": scope["path"].encode(), "scheme": "ws", "subprotocols": []}, receive, send)
    assert missing.status_code == 404 and missing.json()["error_type"] == "not_found"
    assert "x-request-id" in missing.headers  # the layers answered, not Litestar
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert root.json() == [{"generated_text": expected_generation("Hello", 2)}]  # POST /hf: the TGI root route
    assert fake.last().path == "/hf-inference/models/fake/text-generation"
    assert closed == [{"type": "websocket.close", "code": 4404}]


def test_the_litestar_plugin_needs_a_prefix_matching_the_forwarders(gateway: ForwarderConfig) -> None:
    with pytest.raises(ValueError, match="needs a path prefix"):
        HFPlugin(layers(ForwarderConfig.to("http://127.0.0.1:9", kind="tgi")))
    with pytest.raises(ValueError, match="must equal the forwarder's Routes prefix '/hf'"):
        HFPlugin(layers(gateway), path="/other")
    assert HFPlugin(layers(gateway), path="/hf/").path == "/hf"


def test_the_adapters_refuse_layers_out_of_the_canonical_order(gateway: ForwarderConfig) -> None:
    wrong = list(reversed(layers(gateway)))
    with pytest.raises(ValueError, match="must come after"):
        contrib_starlette.middleware(wrong)
    with pytest.raises(ValueError, match="must come after"):
        contrib_fastapi.install(FastAPI(), wrong)
    with pytest.raises(ValueError, match="must come after"):
        HFPlugin(wrong)


@pytest.mark.parametrize(
    ("module", "framework", "message"),
    [
        ("hfasgi.contrib.starlette", "starlette", "needs Starlette: pip install starlette"),
        ("hfasgi.contrib.fastapi", "fastapi", "needs FastAPI: pip install fastapi"),
        ("hfasgi.contrib.litestar", "litestar", "needs Litestar: pip install litestar"),
    ],
)
def test_an_adapter_says_clearly_when_its_framework_is_missing(
    monkeypatch: pytest.MonkeyPatch, module: str, framework: str, message: str
) -> None:
    for name in list(sys.modules):
        if name == framework or name.startswith(framework + "."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, module)
    with pytest.raises(ImportError, match=re.escape(message)):
        importlib.import_module(module)


def readme_snippets() -> list[str]:
    """The Python blocks of the README's "Using the layers in your own app" section."""
    text = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = text.split("### Using the layers in your own app", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


async def test_the_readme_snippets_are_what_works() -> None:
    fastapi_block, litestar_block, asgi_block = readme_snippets()
    namespace: dict[str, Any] = {}
    exec(fastapi_block, namespace)
    app, gateway = namespace["app"], namespace["gateway"]
    assert [m.cls for m in app.user_middleware] == [RequestId, ErrorEnvelope, ResponseReformatter, HFForwarder]
    async with LifespanManager(app):
        assert gateway.pool.is_open
    assert not gateway.pool.is_open

    exec(litestar_block, namespace)
    async with running(namespace["app"]) as (_, client):
        assert gateway.pool.is_open
        response = await client.post("/hf/no/such/route")
    assert response.status_code == 404 and response.json()["error_type"] == "not_found"

    exec(asgi_block, namespace)
    (pool,) = layer_resources(namespace["gateway_layers"])
    async with running(namespace["app"]) as (_, client):
        assert pool.is_open
        response = await client.get("/no/such/route")
    assert response.status_code == 404 and "x-request-id" in response.headers


def test_every_registration_form_of_the_typing_check_also_builds() -> None:
    from tests import typing_check

    apps = typing_check.registration_forms()
    assert len(apps) >= 8 and all(callable(app) for app in apps)
