"""CPU per request of request validation, in process: a 10-message chat, a TGI generate, a task body.

    .venv/bin/python bench/validation.py [--requests 20000] [--repeats 7]

For each body: the schema check alone (``CompiledSchema.check`` on the parsed document), and the whole
``RequestValidator`` layer around a trivial app that reads and parses the body as the forwarder would
(so the parse, which the forwarder does anyway, is not charged to the layer), against that app alone
in the same run. CPU time (``time.process_time``), medians of interleaved repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from inprocess import cpu_per_request

from hfasgi.body import read_body
from hfasgi.context import get_context
from hfasgi.validation import RequestValidator, ValidatorConfig

_TURNS = [
    ("system", "You are a helpful assistant that answers briefly."),
    ("user", "What does a reverse proxy do in front of an inference server?"),
    ("assistant", "It terminates connections, checks credentials and forwards requests to the model server."),
    ("user", "And why would I validate requests there?"),
    ("assistant", "Bad input is refused before it costs GPU time, with a message naming the wrong field."),
    ("user", "Can it stream?"),
    ("assistant", "Yes, server-sent events pass through chunk by chunk."),
    ("user", "What about rate limits?"),
    ("assistant", "Per key, for requests and tokens, shared through Redis across replicas."),
    ("user", "Summarise all of that in one sentence."),
]
BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat, 10 messages": (
        "/v1/chat/completions",
        {
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "messages": [{"role": role, "content": text} for role, text in _TURNS],
            "max_tokens": 256,
            "temperature": 0.7,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ),
    "TGI generate": (
        "/generate",
        {"inputs": "The quick brown fox", "parameters": {"max_new_tokens": 20, "temperature": 0.5, "details": True}},
    ),
    "text-classification": (
        "/models/m/pipeline/text-classification",
        {"inputs": "I love it", "parameters": {"top_k": 2}},
    ),
}


async def app(scope: Any, receive: Any, send: Any) -> None:
    await read_body(scope, receive)
    get_context(scope).json()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def check_only(config: ValidatorConfig, path: str, document: dict[str, Any], n: int) -> float:
    from hfasgi.operations import DEFAULT_ROUTES

    op = DEFAULT_ROUTES.match("POST", path)
    assert op is not None
    schema = config.schema_for(op, op.task)
    assert schema is not None
    started = time.process_time_ns()
    for _ in range(n):
        schema.check(document)
    return (time.process_time_ns() - started) / n / 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    compiled = time.perf_counter()
    config = ValidatorConfig()
    compile_ms = (time.perf_counter() - compiled) * 1000
    validated = RequestValidator(app, config=config)
    print(f"compiling every schema at start-up: {compile_ms:.1f} ms")
    print("| body | schema check µs | app alone µs | with the validator µs | added µs |")
    print("| --- | --- | --- | --- | --- |")
    for name, (path, document) in BODIES.items():
        raw = json.dumps(document).encode()
        checks, bare, layered = [], [], []
        for _ in range(args.repeats):
            checks.append(check_only(config, path, document, args.requests))
            bare.append(await cpu_per_request(app, path, raw, args.requests))
            layered.append(await cpu_per_request(validated, path, raw, args.requests))
        check, alone, full = (statistics.median(v) for v in (checks, bare, layered))
        print(f"| {name} | {check:.2f} | {alone:.2f} | {full:.2f} | {full - alone:+.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
