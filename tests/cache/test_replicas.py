"""Two gateway processes sharing one real Redis share one response cache.

Two ``hfasgi serve`` processes (``HFASGI_CACHE_TTL``, ``HFASGI_REDIS_URL``), each with its own Redis
connection, in front of the fake upstream, on a private ``redis-server``. What one process answered and
cached, the other answers from the cache (``X-Cache: hit``), as JSON and as a stream; the upstream saw
one request.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.processes import ServeProcess, environment, start
from tests.redis_support import PrivateRedis, private_redis
from tests.upstream import FakeHF
from tests.upstream.fixtures import Upstream

pytestmark = pytest.mark.socket

MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "Shared between replicas"}]


def start_replica(upstream: Upstream, redis_url: str, log: Path) -> ServeProcess:
    env = environment(
        HFASGI_UPSTREAM_URL=upstream.url,
        HFASGI_UPSTREAM_KIND="router",
        HFASGI_REDIS_URL=redis_url,
        HFASGI_CACHE_TTL="60",
        HFASGI_API_KEYS="replica=k",
        HFASGI_METRICS="0",
    )
    return start(env, log)


@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


@pytest.fixture
def replicas(upstream: Upstream, redis_server: PrivateRedis, tmp_path: Path) -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    try:
        for n in range(2):
            started.append(start_replica(upstream, redis_server.url, tmp_path / f"replica-{n}.log"))
        for replica in started:
            replica.wait_ready()
        yield started
    finally:
        for replica in started:
            replica.stop()


def test_what_one_process_cached_the_other_answers(replicas: list[ServeProcess], fake: FakeHF) -> None:
    assert replicas[0].process.pid != replicas[1].process.pid
    clients = [openai.OpenAI(base_url=f"{r.url}/v1", api_key="k", max_retries=0, timeout=15.0) for r in replicas]
    try:
        ask = {"model": "org/chat-model", "messages": MESSAGES, "max_tokens": 4, "temperature": 0}
        first = clients[0].chat.completions.with_raw_response.create(**ask)  # type: ignore[call-overload]
        second = clients[1].chat.completions.with_raw_response.create(**ask)  # type: ignore[call-overload]
        assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
        assert second.parse().model_dump() == first.parse().model_dump()
        streamed = clients[1].chat.completions.with_raw_response.create(**ask, stream=True)  # type: ignore[call-overload]
        assert streamed.headers["x-cache"] == "hit"
        text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
        assert text == first.parse().choices[0].message.content
        assert sum(1 for r in fake.requests if r.path.endswith("/chat/completions")) == 1
    finally:
        for client in clients:
            client.close()
    for replica in replicas:
        assert replica.process.poll() is None, f"a gateway process died:\n{replica.output()}"
