"""The in-process driver the CPU benchmarks share: the same request ``n`` times, no server, CPU time only."""

from __future__ import annotations

import json
import time
from typing import Any

JSON_HEADERS = [(b"content-type", b"application/json")]

# The request and the upstream answers the CPU benchmarks share: a chat request, and the same streamed
# (with its usage chunk); a small chat completion with a usage object, and a stream of 32 events.
CHAT = json.dumps(
    {"model": "org/model", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 32}
).encode()
STREAM = json.dumps(
    {
        "model": "org/model",
        "messages": [{"role": "user", "content": "Hello there"}],
        "max_tokens": 32,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
).encode()
USAGE = {"prompt_tokens": 5, "completion_tokens": 32, "total_tokens": 37}
HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "org/model"}
ANSWER = json.dumps(
    {
        **HEAD,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}],
        "usage": USAGE,
    }
).encode()
EVENTS = [
    b"data: "
    + json.dumps({**HEAD, "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}]}).encode()
    + b"\n\n"
    for i in range(32)
] + [b"data: " + json.dumps({**HEAD, "choices": [], "usage": USAGE}).encode() + b"\n\n", b"data: [DONE]\n\n"]


async def cpu_per_request(
    app: Any, path: str, body: bytes, n: int, headers: list[tuple[bytes, bytes]] | None = None
) -> float:
    """CPU microseconds per request (``time.process_time``) for ``n`` POSTs of ``body`` to ``path``."""
    raw = JSON_HEADERS if headers is None else headers

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    started = time.process_time_ns()
    for _ in range(n):
        scope = {"type": "http", "method": "POST", "path": path, "headers": raw, "scheme": "http",
                 "client": ("127.0.0.1", 5000), "query_string": b""}  # fmt: skip
        await app(scope, receive, send)
    return (time.process_time_ns() - started) / n / 1000
