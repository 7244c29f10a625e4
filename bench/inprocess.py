"""The in-process driver the CPU benchmarks share: the same request ``n`` times, no server, CPU time only."""

from __future__ import annotations

import time
from typing import Any

JSON_HEADERS = [(b"content-type", b"application/json")]


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
