"""The gateway stacks the cache tests drive: the reference layers with :class:`ResponseCache` in its place.

:func:`gateway_layers` is :func:`hfasgi.app.layers` plus the cache, inserted where the canonical order
puts it (after the validator, before the reformatter), so the tests exercise exactly the stack the
reference app will run once it is wired for the cache. :class:`FakeClock` is the injectable clock of
:class:`~hfasgi.cache.MemoryCacheStore`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hfasgi.app import layers
from hfasgi.auth import AuthConfig, MemoryKeyStore
from hfasgi.cache import CacheConfig, CacheStore, ResponseCache
from hfasgi.catalog import ModelCatalog, ModelEntry
from hfasgi.forwarding.forwarder import ForwarderConfig
from hfasgi.forwarding.upstream import Upstream, UpstreamKind
from hfasgi.observability import TracingConfig
from hfasgi.ratelimit import RateLimiterConfig
from hfasgi.stack import CANONICAL_ORDER, Layer
from hfasgi.types import Receive, Send
from hfasgi.validation import ValidatorConfig

__all__ = ["CHAT_MODEL", "FakeClock", "catalog_for", "chat", "gateway_layers", "not_found", "sse_events"]

CHAT_MODEL = "org/chat-model"
SERVER_TOKEN = "hf_cache_test_server_token"
TASK_MODELS = (
    ModelEntry(id="fake/text-classification", task="text-classification"),
    ModelEntry(id="fake/summarization", task="summarization"),
    ModelEntry(id="fake/text-generation", task="text-generation"),
    ModelEntry(id="fake/feature-extraction", task="feature-extraction"),
)


async def not_found(scope: Any, receive: Receive, send: Send) -> None:
    """The app under the layers: nothing of its own (404 for any http request; lifespan is the layers')."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"not found"})


class FakeClock:
    """A clock the test moves by hand (``clock.now += 301``)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def catalog_for(url: str, kind: str = "router", *, default_model: str | None = None) -> ModelCatalog:
    """One upstream (the fake) and the task models the tests use on ``/models/{id}``."""
    upstream = Upstream(kind=UpstreamKind(kind), url=url, token=SERVER_TOKEN)
    return ModelCatalog([upstream], TASK_MODELS, default_model=default_model)


def gateway_layers(
    forwarder: ForwarderConfig,
    store: CacheStore,
    *,
    keys: Sequence[str] | None = None,
    validate: bool = True,
    limiter: RateLimiterConfig | None = None,
    tracing: TracingConfig | None = None,
    **cache: Any,
) -> list[Layer]:
    """The reference layers around ``forwarder`` with the cache in its canonical place.

    ``keys`` turns authentication on (``name=key`` entries); ``limiter`` and ``tracing`` add those layers;
    ``cache`` are :class:`CacheConfig` fields.
    """
    auth = None
    if keys is not None:
        auth = AuthConfig(store=MemoryKeyStore.from_keys(keys), routes=forwarder.routes, catalog=forwarder.catalog)
    validator = ValidatorConfig(routes=forwarder.routes, catalog=forwarder.catalog) if validate else None
    found = layers(forwarder, auth=auth, validator=validator, limiter=limiter, tracing=tracing)
    config = CacheConfig(store=store, catalog=forwarder.catalog, routes=forwarder.routes, **cache)
    found.append(config.middleware)
    found.sort(key=lambda layer: CANONICAL_ORDER.index(layer.name))
    assert [layer.cls for layer in found].index(ResponseCache) == len(found) - 3  # before reformatter, forwarder
    return found


def chat(text: str = "Tell me about foxes", **extra: Any) -> dict[str, Any]:
    """A deterministic chat body (temperature 0)."""
    return {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 4,
        "temperature": 0,
        **extra,
    }


def sse_events(body: bytes) -> list[Any]:
    """The JSON events of an SSE body, after checking each is one ``data: `` line and a blank line."""
    text = body.decode()
    assert text.endswith("\n\n"), text[-80:]
    out: list[Any] = []
    for block in text[:-2].split("\n\n"):
        assert block.startswith("data: ") and "\n" not in block, block
        payload = block[len("data: ") :]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out
