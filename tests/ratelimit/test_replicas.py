"""Two gateway processes sharing one real Redis are one gateway: one rate limit, one set of keys.

Two ``hfasgi serve`` processes (real subprocesses, started as an operator would, configured by the
environment) in front of the fake upstream share a private ``redis-server``; a key is added to that
Redis directly. Chat requests alternating between the processes with the ``openai`` client are counted
once, wherever they land; a key revoked in Redis is refused by both within a second (the key store's
local cache lives 0.5 s).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from hfasgi.auth import RedisKeyStore
from hfasgi.auth.keys import KeyRecord, new_key
from hfasgi.redis_client import RedisConnection
from tests.e2e.clients import CHAT_MODEL, MESSAGES
from tests.redis_support import PrivateRedis
from tests.servers import free_port
from tests.upstream.fixtures import Upstream

pytestmark = [pytest.mark.anyio, pytest.mark.socket]

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
HANG = 15.0
"""Seconds after which a request counts as hung (a hang detector, not a speed requirement)."""
LIMIT = 10
KEY_ID = "replica-test"


@dataclass
class Replica:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _environment(upstream: Upstream, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFASGI_") and k != "HF_TOKEN"}
    env.update(
        HFASGI_UPSTREAM_URL=upstream.url,
        HFASGI_UPSTREAM_KIND="router",
        HF_TOKEN="x",
        HFASGI_REDIS_URL=redis_url,
        HFASGI_KEY_STORE="redis",
        HFASGI_RATE_LIMIT=f"{LIMIT}/minute",
        PYTHONUNBUFFERED="1",
    )
    return env


def _start(env: dict[str, str], log: Path) -> Replica:
    port = free_port()
    command = [sys.executable, "-m", "hfasgi.cli", "serve", "--port", str(port), "--log-level", "warning"]
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    return Replica(f"http://127.0.0.1:{port}", process, log)


def _wait_until_up(replica: Replica) -> None:
    """Poll ``/health`` until the process answers (any status: the upstream's health is not the point)."""
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=2.0) as client:
        while True:
            code = replica.process.poll()
            if code is not None:
                pytest.fail(
                    f"`python -m hfasgi.cli serve` exited with {code} during start-up (outside the tests: "
                    f"see hfasgi/cli.py and hfasgi/app.py). Its output:\n{replica.output()}"
                )
            try:
                client.get(f"{replica.url}/health")
                return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"`hfasgi serve` did not answer within {START_TIMEOUT} s. Its output:\n{replica.output()}")
            time.sleep(0.05)


def _stop(replica: Replica) -> None:
    process = replica.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture
def replicas(upstream: Upstream, redis_server: PrivateRedis, tmp_path: Path) -> Iterator[list[Replica]]:
    """Two ``hfasgi serve`` processes sharing ``redis_server``; terminated (killed if need be) afterwards."""
    env = _environment(upstream, redis_server.url)
    started: list[Replica] = []
    try:
        for n in range(2):
            started.append(_start(env, tmp_path / f"replica-{n}.log"))
        for replica in started:
            _wait_until_up(replica)
        yield started
    finally:
        for replica in started:
            _stop(replica)


@pytest.fixture
async def key_store(redis_server: PrivateRedis) -> AsyncIterator[RedisKeyStore]:
    """The key store of the replicas' Redis, as an operator's tool would open it (default prefix)."""
    store = RedisKeyStore(RedisConnection(redis_server.url))
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


async def _refused(client: openai.AsyncOpenAI) -> float:
    """Poll until ``client``'s key is refused with 401; returns when (``time.monotonic()``)."""
    deadline = time.monotonic() + HANG
    while True:
        try:
            async with asyncio.timeout(HANG):
                await client.models.list()
        except openai.AuthenticationError as exc:
            assert exc.status_code == 401
            return time.monotonic()
        assert time.monotonic() < deadline, "the revoked key was never refused"
        await asyncio.sleep(0.02)


async def test_two_processes_share_one_limit_and_one_revocation(
    replicas: list[Replica], key_store: RedisKeyStore
) -> None:
    assert replicas[0].process.pid != replicas[1].process.pid
    key = new_key()
    await key_store.add(KeyRecord.for_key(KEY_ID, key))
    clients = [openai.AsyncOpenAI(base_url=f"{r.url}/v1", api_key=key, max_retries=0) for r in replicas]
    try:
        served: list[tuple[int, int]] = []  # (process, X-RateLimit-Remaining)
        refused: list[tuple[int, openai.RateLimitError]] = []
        for i in range(2 * LIMIT):
            which = i % 2
            try:
                async with asyncio.timeout(HANG):
                    raw = await clients[which].chat.completions.with_raw_response.create(
                        model=CHAT_MODEL, messages=MESSAGES, max_tokens=2
                    )
            except openai.RateLimitError as exc:
                refused.append((which, exc))
                continue
            assert raw.parse().choices[0].message.content
            assert raw.headers["x-ratelimit-limit"] == str(LIMIT)
            served.append((which, int(raw.headers["x-ratelimit-remaining"])))

        assert len(served) == LIMIT and len(refused) == LIMIT
        # One counter for both processes: each admitted request saw the other process's requests too.
        assert [remaining for _, remaining in served] == list(range(LIMIT - 1, -1, -1))
        assert {which for which, _ in served} == {which for which, _ in refused} == {0, 1}
        for _, error in refused:
            assert error.status_code == 429
            assert error.response.json()["error_type"] == "rate_limit"
            assert error.response.headers["x-ratelimit-remaining"] == "0"
            assert int(error.response.headers["retry-after"]) >= 1
            assert KEY_ID in error.response.json()["error"]

        # Both processes know the key (and have it in their local cache) right before it is revoked.
        for client in clients:
            async with asyncio.timeout(HANG):
                assert [m async for m in await client.models.list()]
        await key_store.revoke(KEY_ID)
        revoked = time.monotonic()
        elapsed = [await _refused(client) - revoked for client in clients]
        assert all(e < 1.0 for e in elapsed), f"revocation took {elapsed} s to reach the processes"
        for client in clients:  # refused for inference too, as 401, not as 429
            with pytest.raises(openai.AuthenticationError):
                async with asyncio.timeout(HANG):
                    await client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=2)
    finally:
        for client in clients:
            await client.close()
    for replica in replicas:
        assert replica.process.poll() is None, f"a gateway process died:\n{replica.output()}"
