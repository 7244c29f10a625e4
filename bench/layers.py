"""CPU per request of the auth and rate-limit layers, in process: the layers alone, no server, no network.

    .venv/bin/python bench/layers.py [--requests 20000] [--repeats 7]

Each variant drives the same chat request through its stack around a trivial ASGI app that does what
the forwarder does with a chat body anyway (read it into the context and parse it once, so a layer
that needs the body first is not charged for it) and answers a small JSON with a usage object; the
bare app is measured in the same run, and the difference of the medians is what the layers add.
CPU time (``time.process_time``), not wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from typing import Any

from inprocess import cpu_per_request

from hfasgi.auth import ApiKeyAuth, AuthConfig, MemoryKeyStore
from hfasgi.body import read_body
from hfasgi.context import get_context
from hfasgi.limits import Limit
from hfasgi.ratelimit import MemoryLimiterStore, RateLimiter, RateLimiterConfig
from hfasgi.request_id import RequestId

KEY = "sk-bench-0123456789abcdef"
BODY = json.dumps({"model": "anything", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 32})
ANSWER = json.dumps({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})


async def app(scope: Any, receive: Any, send: Any) -> None:
    """What the forwarder does with a chat body anyway: read it once into the context and parse it."""
    await read_body(scope, receive)
    get_context(scope).json()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": ANSWER.encode()})


def variants() -> dict[str, Any]:
    store = MemoryKeyStore.from_keys([f"bench={KEY}"])
    auth = AuthConfig(store=store)

    def limited(**limits: Any) -> Any:
        return RequestId(
            ApiKeyAuth(
                RateLimiter(app, config=RateLimiterConfig(store=MemoryLimiterStore(), **limits)),
                config=auth,
            )
        )

    return {
        "request id only (baseline)": RequestId(app),
        "+ auth": RequestId(ApiKeyAuth(app, config=auth)),
        "+ auth + request limit": limited(rate_limit=Limit(10**9, 60)),
        "+ auth + request and token limits": limited(rate_limit=Limit(10**9, 60), token_limit=Limit(10**12, 60)),
    }


async def measure(stack: Any, n: int) -> float:
    """CPU microseconds per request over ``n`` requests."""
    headers = [(b"content-type", b"application/json"), (b"authorization", f"Bearer {KEY}".encode())]
    return await cpu_per_request(stack, "/v1/chat/completions", BODY.encode(), n, headers)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    stacks = variants()
    samples: dict[str, list[float]] = {name: [] for name in stacks}
    for _ in range(args.repeats):  # interleaved, so drifting machine load hits every variant alike
        for name, stack in stacks.items():
            samples[name].append(await measure(stack, args.requests))
    base = statistics.median(samples["request id only (baseline)"])
    print("| stack | CPU µs/request (median) | added by the layers |")
    print("| --- | --- | --- |")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {median - base:+.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
