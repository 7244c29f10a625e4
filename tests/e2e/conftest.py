"""End-to-end tier: real clients -> the reference app on a real socket -> the fake HF upstream on a real socket.

Fixtures:

* ``upstream`` and ``fake`` come from tests/upstream/fixtures.py (the fake HF server on a socket).
* ``gateway(kind="router", **settings)``: the URL of ``hfasgi.app.create_app(Settings(...))`` in front of
  the fake with that upstream kind, the server token :data:`SERVER_TOKEN` and any other settings. Gateways
  are cached for the session by their settings, so asking twice costs nothing.
* ``gateway_app(kind="router", **settings)``: the same app as an ASGI object, not served, for the
  in-process driver (``tests.asgi_driver``); its upstream pool is opened for the test and closed after.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import pytest
from asgi_lifespan import LifespanManager

from hfasgi.app import create_app
from hfasgi.settings import Settings
from tests.servers import serve
from tests.upstream.fixtures import Upstream

SERVER_TOKEN = "hf_gateway_server_secret_token"
"""The gateway's own upstream token (``HF_TOKEN``); it must never reach a client."""
CLIENT_KEY = "client-side-key-that-must-stay-here"
"""What clients send as their ``Authorization``; it must never reach the upstream."""


def _settings(upstream: Upstream, kind: str, options: dict[str, Any]) -> Settings:
    values: dict[str, Any] = {
        "upstream_url": upstream.url,
        "upstream_kind": kind,
        "hf_token": SERVER_TOKEN,
        "no_auth": True,  # the auth tests (tests/auth) turn it on
    }
    values.update(options)
    return Settings(**values)


class _Gateways:
    """Served gateways, by settings, for the session."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self.stack = stack
        self.urls: dict[tuple[Any, ...], str] = {}


@pytest.fixture(scope="session")
def _gateways() -> Iterator[_Gateways]:
    with contextlib.ExitStack() as stack:
        yield _Gateways(stack)


@pytest.fixture
def no_ambient_hf_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``huggingface_hub`` sends ``HF_TOKEN`` (or a stored token) when no ``api_key`` is given: none, for this test.

    For tests that say exactly which credential a client sends (``pytest.mark.usefixtures``).
    """
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-hf-token"))


@pytest.fixture
def gateway(upstream: Upstream, _gateways: _Gateways) -> Callable[..., str]:
    """``gateway(kind="router", **settings)`` → the base URL of a served reference app in front of the fake."""

    def make(kind: str = "router", **options: Any) -> str:
        key = (kind, *sorted(options.items()))
        url = _gateways.urls.get(key)
        if url is None:
            app = create_app(_settings(upstream, kind, options))
            url = _gateways.urls[key] = _gateways.stack.enter_context(serve(app))
        return url

    return make


@pytest.fixture
async def gateway_app(upstream: Upstream) -> AsyncIterator[Callable[..., Any]]:
    """``gateway_app(kind="router", **settings)`` → the reference app, lifespan started, for in-process driving."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(kind: str = "router", **options: Any) -> Any:
            manager = await stack.enter_async_context(LifespanManager(create_app(_settings(upstream, kind, options))))
            return manager.app

        yield make
