"""CPU per request of the response cache, in process, through the full reference layer stack.

    .venv/bin/python bench/cache.py [--requests 5000] [--repeats 7] [--no-upstream]

The stack is the reference app's (``hfasgi.app.layers_from_settings``: Tracing with the default
telemetry (Prometheus metrics, no-op tracer), RequestId, ErrorEnvelope, TasksAPI, ApiKeyAuth with a
key, RateLimiter with request and token limits, RequestValidator, ResponseReformatter) with
:class:`~hfasgi.cache.ResponseCache` in its place, a memory store, one chat body (64 output tokens).

Two upstreams stand behind it:

* a stand-in for the forwarder, in process (it reads and parses the body and resolves the model as
  the forwarder does, then answers a fixed chat completion or a 64-chunk stream), which isolates the
  layers' own cost: the stack without the cache is the baseline, then the same stack with the cache
  for a request it does not cache (temperature 1), a miss (a store that keeps nothing: the key, the
  lookup and the recording of the answer), and hits (JSON from JSON, a stream from a stored stream,
  a stream made from a stored JSON answer);
* the real ``HFForwarder`` to the fake HF upstream running in a child process (uvicorn; its CPU is
  not counted): a miss that really goes upstream through aiohttp, against a hit of the same request.
  ``--no-upstream`` skips this part.

CPU time of this process (``time.process_time``), medians of interleaved repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inprocess import cpu_per_request

from hfasgi.app import build_catalog, layers_from_settings
from hfasgi.body import read_body
from hfasgi.cache import CacheConfig, MemoryCacheStore
from hfasgi.context import get_context
from hfasgi.forwarding.forwarder import ForwarderConfig, HFForwarder
from hfasgi.settings import Settings
from hfasgi.stack import CANONICAL_ORDER, Layer, layer_resources, resources, stack

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench-0123456789abcdef"
MODEL = "org/chat-model"
HEADERS = [(b"content-type", b"application/json"), (b"authorization", f"Bearer {KEY}".encode())]
MESSAGES = [{"role": "user", "content": "Tell me a story about a brave fox"}]
CHAT = {"model": MODEL, "messages": MESSAGES, "max_tokens": 64, "temperature": 0}
STREAM = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
SAMPLED = {**CHAT, "temperature": 1}
USAGE = {"prompt_tokens": 8, "completion_tokens": 64, "total_tokens": 72}
HEAD = {"id": "chatcmpl-1", "created": 1, "model": MODEL, "system_fingerprint": "3.3.6-native"}
WORDS = [f"word{i} " for i in range(64)]


def _dump(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


ANSWER = _dump(
    {
        **HEAD,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(WORDS)}, "logprobs": None,
                     "finish_reason": "length"}],
        "usage": USAGE,
    }
)  # fmt: skip
EVENTS = [
    b"data: "
    + _dump({**HEAD, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": word},
             "logprobs": None, "finish_reason": "length" if i == 63 else None}], "usage": None})
    + b"\n\n"
    for i, word in enumerate(WORDS)
] + [b"data: " + _dump({**HEAD, "object": "chat.completion.chunk", "choices": [], "usage": USAGE}) + b"\n\n",
     b"data: [DONE]\n\n"]  # fmt: skip
JSON_START = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]
SSE_START = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


class NothingKept(MemoryCacheStore):
    """A store that keeps nothing: every cacheable request is a miss (the key, a lookup, the recording)."""

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        return None


def forwarder_standin(catalog: Any) -> Any:
    """What the forwarder does with a chat body anyway (read, parse, resolve), then a fixed upstream answer."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        ctx = get_context(scope)
        await read_body(scope, receive)
        document = ctx.json()
        route = catalog.resolve(document.get("model"))
        ctx.model, ctx.upstream_model, ctx.upstream_name = route.model, route.upstream_model, route.upstream.name
        ctx.upstream_status, ctx.upstream_attempts = 200, 1
        if document.get("stream"):
            await send({"type": "http.response.start", "status": 200, "headers": list(SSE_START)})
            for event in EVENTS:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send({"type": "http.response.start", "status": 200, "headers": list(JSON_START)})
        await send({"type": "http.response.body", "body": ANSWER, "more_body": False})

    return app


def reference_layers(upstream_url: str, store: MemoryCacheStore | None) -> tuple[list[Layer], ForwarderConfig]:
    """The reference app's layers (with the cache on ``store``, unless ``None``) and their forwarder config."""
    settings = Settings(
        upstream_url=upstream_url,
        hf_token="hf_bench",
        api_keys=f"bench={KEY}",
        rate_limit="1000000000/minute",
        token_limit="1000000000000/minute",
        default_model=MODEL,
        usage_db=None,
    )
    forwarder = ForwarderConfig(catalog=build_catalog(settings))
    found = layers_from_settings(settings, forwarder)
    if store is not None:
        found.append(CacheConfig(store=store, catalog=forwarder.catalog, routes=forwarder.routes).middleware)
        found.sort(key=lambda layer: CANONICAL_ORDER.index(layer.name) if layer.name in CANONICAL_ORDER else 99)
    return found, forwarder


def standin_stack(store: MemoryCacheStore | None) -> tuple[Any, list[Layer]]:
    found, forwarder = reference_layers("http://127.0.0.1:9", store)
    without_forwarder = [layer for layer in found if layer.cls is not HFForwarder]
    return stack(forwarder_standin(forwarder.catalog), *without_forwarder), without_forwarder


async def check(app: Any, body: dict[str, Any], expect: str | None) -> None:
    """One request, asserting the cache's verdict (``X-Cache``) before measuring."""
    seen: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": _dump(body), "more_body": False}

    async def send(message: Any) -> None:
        seen.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": HEADERS, "scheme": "http",
             "client": ("127.0.0.1", 5000), "query_string": b""}  # fmt: skip
    await app(scope, receive, send)
    start = seen[0]
    assert start["status"] == 200, seen
    header = dict(start["headers"]).get(b"x-cache")
    assert header == (expect.encode() if expect else None), (header, expect)


async def in_process(n: int, repeats: int) -> list[tuple[str, float]]:
    baseline, base_layers = standin_stack(None)
    uncached, cache_layers = standin_stack(MemoryCacheStore())
    missing, miss_layers = standin_stack(NothingKept())
    json_hits, json_layers = standin_stack(MemoryCacheStore())
    stream_hits, stream_layers = standin_stack(MemoryCacheStore())
    made_streams, made_layers = standin_stack(MemoryCacheStore())
    cases: list[tuple[str, Any, dict[str, Any], str | None]] = [
        ("stack without the cache (baseline), JSON", baseline, CHAT, None),
        ("+ cache, request not cacheable (temperature 1)", uncached, SAMPLED, None),
        ("+ cache, miss (key, lookup, recording), JSON", missing, CHAT, "miss"),
        ("+ cache, hit: JSON from JSON", json_hits, CHAT, "hit"),
        ("stack without the cache (baseline), 64-chunk stream", baseline, STREAM, None),
        ("+ cache, miss, 64-chunk stream", missing, STREAM, "miss"),
        ("+ cache, hit: stream from a stored stream", stream_hits, STREAM, "hit"),
        ("+ cache, hit: stream made from a stored JSON answer", made_streams, STREAM, "hit"),
    ]
    shared = {id(r): r for ls in (base_layers, cache_layers, miss_layers, json_layers, stream_layers, made_layers)
              for r in layer_resources(ls)}  # fmt: skip
    async with resources(*shared.values()):
        await check(json_hits, CHAT, "miss")
        await check(stream_hits, STREAM, "miss")
        await check(made_streams, CHAT, "miss")  # the entry is a JSON answer; streams are made from it
        for _, app, body, expect in cases:
            await check(app, body, expect)
        samples: dict[str, list[float]] = {name: [] for name, *_ in cases}
        for _ in range(repeats):  # interleaved, so drifting machine load hits every variant alike
            for name, app, body, _ in cases:
                samples[name].append(await cpu_per_request(app, "/v1/chat/completions", _dump(body), n, HEADERS))
    return [(name, statistics.median(values)) for name, values in samples.items()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def fake_upstream() -> Iterator[str]:
    """The fake HF upstream (tests/upstream) in a child uvicorn process: its CPU is not this process's."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "tests.upstream.fake_hf:FakeHF", "--factory", "--port", str(port),
               "--log-level", "warning", "--no-access-log"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise RuntimeError("the fake upstream did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        child.terminate()
        child.wait(10)


async def through_the_forwarder(url: str, n: int, repeats: int) -> list[tuple[str, float]]:
    """The real forwarder to the fake upstream at ``url``: a real miss against a hit."""
    missing_layers, _ = reference_layers(url, NothingKept())
    hit_layers, _ = reference_layers(url, MemoryCacheStore())
    inner = forwarder_standin(None)  # never reached: the forwarder answers every chat request
    misses, hits = stack(inner, *missing_layers), stack(inner, *hit_layers)
    shared = {id(r): r for ls in (missing_layers, hit_layers) for r in layer_resources(ls)}
    async with resources(*shared.values()):
        await check(hits, CHAT, "miss")
        await check(hits, CHAT, "hit")
        await check(misses, CHAT, "miss")
        cases = [("real forwarder: miss → fake upstream (aiohttp), JSON", misses),
                 ("real forwarder stack: hit, JSON", hits)]  # fmt: skip
        samples: dict[str, list[float]] = {name: [] for name, _ in cases}
        for _ in range(repeats):
            for name, app in cases:
                samples[name].append(await _timed(app, max(200, n // 10)))
    return [(name, statistics.median(values)) for name, values in samples.items()]


async def _timed(app: Any, n: int) -> float:
    """Like ``cpu_per_request``, with a ``receive`` that gives the body once, then waits (the forwarder watches it)."""
    body = _dump(CHAT)
    never = asyncio.Event()
    started = time.process_time_ns()
    for _ in range(n):
        given = False

        async def receive() -> dict[str, Any]:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            await never.wait()
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            return None

        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": HEADERS,
                 "scheme": "http", "client": ("127.0.0.1", 5000), "query_string": b""}  # fmt: skip
        await app(scope, receive, send)
    return (time.process_time_ns() - started) / n / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-upstream", action="store_true", help="skip the real forwarder and upstream")
    args = parser.parse_args()
    rows = asyncio.run(in_process(args.requests, args.repeats))
    if not args.no_upstream:
        with fake_upstream() as url:
            rows += asyncio.run(through_the_forwarder(url, args.requests, args.repeats))
    print("| stack and request | CPU µs/request (median) |")
    print("| --- | --- |")
    for name, median in rows:
        print(f"| {name} | {median:.1f} |")


if __name__ == "__main__":
    main()
