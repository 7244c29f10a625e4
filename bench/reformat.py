"""CPU cost of dialect translation (ResponseReformatter), in process: no server, no network.

    .venv/bin/python bench/reformat.py [--requests 5000] [--repeats 7]

Each case runs the same request twice around a trivial app that stands in for the forwarder (it reads
the body into the context, parses it once, as the forwarder does, and answers a fixed upstream
payload): once without the reformatter, the upstream answering in the client's own dialect (the
baseline), once through ``ResponseReformatter`` with the upstream answering in its dialect. The
difference of the medians is what translation adds per request; for streams it is divided by the
number of chunks. CPU time (``time.process_time``), medians of interleaved repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
from dataclasses import dataclass
from typing import Any

from inprocess import cpu_per_request

from hfasgi.body import read_body
from hfasgi.catalog import ModelCatalog
from hfasgi.context import get_context
from hfasgi.forwarding.upstream import Upstream, UpstreamKind
from hfasgi.reformat import ReformatterConfig, ResponseReformatter

MODEL = "org/model"
USAGE = {"prompt_tokens": 5, "completion_tokens": 64, "total_tokens": 69}
WORDS = [f"word{i} " for i in range(64)]
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream")]


def _dump(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def chat_answer(model: str, fingerprint: bool) -> bytes:
    answer: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model}
    if fingerprint:
        answer["system_fingerprint"] = "3.3.6-native"
    message = {"role": "assistant", "content": "".join(WORDS)}
    answer["choices"] = [{"index": 0, "message": message, "logprobs": None, "finish_reason": "length"}]
    return _dump({**answer, "usage": USAGE})


def chat_chunks(model: str, transformers: bool) -> list[bytes]:
    head: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}
    if not transformers:
        head["system_fingerprint"] = "3.3.6-native"
    events = []
    for i, word in enumerate(WORDS):
        choice: dict[str, Any] = {"index": 0, "delta": {"content": word}}
        if not transformers:
            choice.update(logprobs=None, finish_reason="length" if i == len(WORDS) - 1 else None)
        event = {**head, "choices": [choice]}
        if not transformers:
            event["usage"] = None
        elif i == len(WORDS) - 1:
            event["usage"] = USAGE
        events.append(b"data: " + _dump(event) + b"\n\n")
    return events + ([] if transformers else [b"data: [DONE]\n\n"])


def tgi_answer() -> bytes:
    return _dump({"generated_text": "".join(WORDS)})


def completion_answer() -> bytes:
    choice = {"index": 0, "text": "".join(WORDS), "logprobs": None, "finish_reason": "length"}
    return _dump({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": MODEL, "choices": [choice],
                  "usage": USAGE})  # fmt: skip


def tgi_events() -> list[bytes]:
    events = []
    for i, word in enumerate(WORDS):
        last = i == len(WORDS) - 1
        token = {"id": i, "text": word, "logprob": -0.5, "special": False}
        event = {"index": i + 1, "token": token, "generated_text": "".join(WORDS) if last else None, "details": None}
        events.append(b"data: " + _dump(event) + b"\n\n")
    return events


def completion_chunks() -> list[bytes]:
    events = []
    for i, word in enumerate(WORDS):
        choice = {"index": 0, "text": word, "logprobs": None, "finish_reason": "length" if i == 63 else None}
        event = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": MODEL, "choices": [choice]}
        events.append(b"data: " + _dump(event) + b"\n\n")
    usage = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": MODEL, "choices": [], "usage": USAGE}
    return [*events, b"data: " + _dump(usage) + b"\n\n", b"data: [DONE]\n\n"]


def unit_vector(dim: int) -> list[float]:
    """A unit-length vector, as upstreams answer when asked to normalise (the translation asks them to)."""
    raw = [(i % 17 + 1) / 17 for i in range(dim)]
    norm = math.sqrt(sum(x * x for x in raw))
    return [x / norm for x in raw]


def embedding_answer(dim: int) -> bytes:
    vector = unit_vector(dim)
    return _dump({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": vector}],
                  "model": MODEL, "usage": {"prompt_tokens": 3, "total_tokens": 3}})  # fmt: skip


def features_answer(dim: int) -> bytes:
    return _dump(unit_vector(dim))


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    body: dict[str, Any]
    kind: UpstreamKind
    baseline: list[bytes]
    translated: list[bytes]
    stream: bool = False


def cases() -> list[Case]:
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 64}
    stream_chat = {**chat, "stream": True}
    generate = {"inputs": "The quick brown fox", "parameters": {"max_new_tokens": 64}}
    return [
        Case("chat, upstream already uniform (byte test)", "/v1/chat/completions", chat, UpstreamKind.ROUTER,
             [chat_answer(MODEL, True)], [chat_answer(MODEL, True)]),
        Case("chat, transformers serve answer rewritten", "/v1/chat/completions", chat, UpstreamKind.OPENAI,
             [chat_answer(MODEL, True)], [chat_answer(MODEL + "@main", False)]),
        Case("TGI /generate over OpenAI /v1/completions", "/generate", generate, UpstreamKind.OPENAI,
             [tgi_answer()], [completion_answer()]),
        Case("/v1/embeddings over feature-extraction (384 floats)", "/v1/embeddings",
             {"model": MODEL, "input": "hello", "encoding_format": "float"}, UpstreamKind.ROUTER,
             [embedding_answer(384)], [features_answer(384)]),
        Case("/v1/embeddings over feature-extraction (1024 floats, base64)", "/v1/embeddings",
             {"model": MODEL, "input": "hello", "encoding_format": "base64"}, UpstreamKind.ROUTER,
             [embedding_answer(1024)], [features_answer(1024)]),
        Case("chat stream, transformers chunks rewritten", "/v1/chat/completions", stream_chat, UpstreamKind.OPENAI,
             chat_chunks(MODEL, False), chat_chunks(MODEL + "@main", True), stream=True),
        Case("TGI /generate_stream over /v1/completions", "/generate_stream", generate, UpstreamKind.OPENAI,
             tgi_events(), completion_chunks(), stream=True),
    ]  # fmt: skip


def forwarder_standin(payload: list[bytes], stream: bool) -> Any:
    """Reads and parses the body as the forwarder does, then answers ``payload`` (one message per chunk)."""
    start = {"type": "http.response.start", "status": 200, "headers": SSE_HEADERS if stream else JSON_HEADERS}
    last = len(payload) - 1

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await read_body(scope, receive)
        get_context(scope).json()
        await send(start)
        for i, chunk in enumerate(payload):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < last})

    return app


async def measure(app: Any, case: Case, n: int) -> float:
    """CPU microseconds per request over ``n`` requests."""
    return await cpu_per_request(app, case.path, json.dumps(case.body).encode(), n)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print("| case | baseline µs | translated µs | added per request | added per chunk |")
    print("| --- | --- | --- | --- | --- |")
    for case in cases():
        catalog = ModelCatalog.single(Upstream(kind=case.kind, url="http://up"), default_model=MODEL)
        config = ReformatterConfig(catalog=catalog)
        plain = forwarder_standin(case.baseline, case.stream)
        translated = ResponseReformatter(forwarder_standin(case.translated, case.stream), config=config)
        base: list[float] = []
        over: list[float] = []
        for _ in range(args.repeats):  # interleaved, so drifting machine load hits both alike
            base.append(await measure(plain, case, args.requests))
            over.append(await measure(translated, case, args.requests))
        b, t = statistics.median(base), statistics.median(over)
        per_chunk = f"{(t - b) / len(WORDS):+.2f}" if case.stream else "—"
        print(f"| {case.name} | {b:.1f} | {t:.1f} | {t - b:+.1f} | {per_chunk} |")


if __name__ == "__main__":
    asyncio.run(main())
