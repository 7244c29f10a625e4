"""UpstreamHealth against small upstreams on real loopback sockets: states, thresholds, reasons, the loop, /health."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from hfasgi.catalog import ModelCatalog
from hfasgi.forwarding.pool import UpstreamPool
from hfasgi.forwarding.upstream import Upstream
from hfasgi.observability.health import (
    HealthConfig,
    UpstreamHealth,
    health_document,
    public_url,
    send_health,
    send_upstream_health,
    upstream_document,
)
from tests.servers import free_port, serve

pytestmark = pytest.mark.anyio

TOKEN = "hf_upstream_probe_secret_token"
ROUND = HealthConfig(interval=30.0, timeout=1.0)
"""For tests that run rounds by hand (``check()``): the interval never elapses."""
FAST = HealthConfig(interval=0.05, timeout=0.04)
"""For tests of the background loop."""


class Probed:
    """A tiny upstream: answers ``status`` (or, ``slow``, never: it waits for the client to hang up)."""

    def __init__(self) -> None:
        self.status = 200
        self.slow = False
        self.seen: list[tuple[str, str, str | None]] = []
        """(method, path, authorization) of every request."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization")
        self.seen.append((scope["method"], scope["path"], auth.decode() if auth is not None else None))
        if self.slow:
            while (await receive())["type"] != "http.disconnect":
                pass
            return
        await send({"type": "http.response.start", "status": self.status, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
def served() -> Iterator[Callable[[], tuple[Probed, str]]]:
    """``served()`` → a fresh :class:`Probed` and its base URL (stopped after the test)."""
    with contextlib.ExitStack() as stack:

        def make() -> tuple[Probed, str]:
            app = Probed()
            return app, stack.enter_context(serve(app, lifespan="off"))

        yield make


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    pool = UpstreamPool()
    await pool.open()
    yield pool
    await pool.aclose()


def closed_url() -> str:
    """A loopback URL nothing listens on (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"


def catalog(**urls: str | tuple[str, str]) -> ModelCatalog:
    """Upstreams by name: a URL (kind ``tgi``, with :data:`TOKEN`), or ``(kind, url)`` (no token)."""
    upstreams = []
    for name, spec in urls.items():
        if isinstance(spec, tuple):
            upstreams.append(Upstream(name=name, kind=spec[0], url=spec[1]))  # type: ignore[arg-type]
        else:
            upstreams.append(Upstream(name=name, kind="tgi", url=spec, token=TOKEN))  # type: ignore[arg-type]
    return ModelCatalog(upstreams)


async def until(condition: Callable[[], bool], what: str, deadline: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail after ``deadline`` seconds."""
    end = asyncio.get_running_loop().time() + deadline
    while True:
        if condition():
            return
        if asyncio.get_running_loop().time() > end:
            pytest.fail(f"timed out waiting for: {what}")
        await asyncio.sleep(0.01)


async def stop(health: UpstreamHealth) -> None:
    """``health.aclose()``, failing (not hanging) if the probe task does not end."""
    async with asyncio.timeout(10):
        await health.aclose()


class Captured:
    """What an ASGI app sent."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])

    def json(self) -> Any:
        return json.loads(self.body)


async def answer(health: UpstreamHealth, method: str = "GET", path: str = "/health") -> Captured:
    captured = Captured()
    scope = {"type": "http", "method": method, "path": path}
    if path == "/health":
        await send_health(scope, captured, health, started=0.0, version="9.9.9", models_count=7)
    else:
        await send_upstream_health(scope, captured, health)
    return captured


# --- config ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"interval": 0},
        {"interval": -1.0},
        {"interval": float("nan")},
        {"interval": float("inf"), "timeout": 1.0},
        {"timeout": 0},
        {"interval": 1.0, "timeout": 1.0},
        {"interval": 1.0, "timeout": 2.0},
        {"failures_to_unhealthy": 0},
        {"successes_to_healthy": 0},
        {"successes_to_healthy": 1.5},
        {"interval": "10"},
    ],
)
def test_config_rejects_bad_values(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="HealthConfig"):
        HealthConfig(**options)


def test_config_for_interval_keeps_the_timeout_below_the_interval() -> None:
    assert HealthConfig.for_interval(10.0) == HealthConfig(interval=10.0, timeout=2.0)
    assert HealthConfig.for_interval(1.0).timeout == 0.5
    assert HealthConfig.for_interval(1.0, failures_to_unhealthy=3).failures_to_unhealthy == 3


# --- one round -----------------------------------------------------------------------------------------------


async def test_a_round_probes_every_upstream_and_explains_failures(
    served: Callable[[], tuple[Probed, str]], pool: UpstreamPool
) -> None:
    ok, ok_url = served()
    missing, missing_url = served()
    missing.status = 404
    broken, broken_url = served()
    broken.status = 503
    router, router_url = served()
    health = UpstreamHealth(
        catalog(
            default=ok_url,
            missing=missing_url,
            broken=broken_url,
            refused=closed_url(),
            router=("router", router_url + "/"),
        ),
        pool,
        ROUND,
    )
    assert (health.overall, health.rounds) == ("unknown", 0)
    assert {s.status for s in health.snapshot().values()} == {"unknown"}

    await health.check()

    states = health.snapshot()
    summary = {name: (s.status, s.last_error, s.consecutive_failures) for name, s in states.items()}
    assert summary == {
        "default": ("healthy", None, 0),
        "missing": ("healthy", None, 0),  # any answer below 500 means the server is up
        "broken": ("unhealthy", "HTTP 503", 1),
        "refused": ("unhealthy", "connection refused", 1),
        "router": ("healthy", None, 0),
    }
    assert health.overall == "degraded" and health.rounds == 1
    assert all(s.since is not None and s.last_checked is not None for s in states.values())
    assert states["router"].kind == "router" and states["broken"].kind == "tgi"
    # the TGI health route with the upstream's token; the router's root without any token
    assert ok.seen == [("GET", "/health", f"Bearer {TOKEN}")]
    assert router.seen == [("GET", "/", None)]


async def test_overall_is_healthy_or_unhealthy_when_all_agree(
    served: Callable[[], tuple[Probed, str]], pool: UpstreamPool
) -> None:
    _, first = served()
    _, second = served()
    healthy = UpstreamHealth(catalog(default=first, spare=second), pool, ROUND)
    await healthy.check()
    assert healthy.overall == "healthy"
    dead = UpstreamHealth(catalog(default=closed_url(), spare=closed_url()), pool, ROUND)
    await dead.check()
    assert dead.overall == "unhealthy"


async def test_a_slow_upstream_times_out_within_the_round_without_holding_up_the_others(
    served: Callable[[], tuple[Probed, str]], pool: UpstreamPool
) -> None:
    slow, slow_url = served()
    slow.slow = True
    ok, ok_url = served()
    health = UpstreamHealth(catalog(default=ok_url, slow=slow_url), pool, HealthConfig(interval=30.0, timeout=0.5))
    await health.check()
    states = health.snapshot()
    assert (states["slow"].status, states["slow"].last_error) == ("unhealthy", "timeout")
    assert states["default"].status == "healthy"
    assert len(slow.seen) == 1 and len(ok.seen) == 1


async def test_thresholds_damp_flips_both_ways(
    served: Callable[[], tuple[Probed, str]], pool: UpstreamPool, caplog: pytest.LogCaptureFixture
) -> None:
    app, url = served()
    config = HealthConfig(interval=30.0, timeout=1.0, failures_to_unhealthy=2, successes_to_healthy=3)
    health = UpstreamHealth(catalog(default=url), pool, config)
    caplog.set_level(logging.DEBUG, logger="hfasgi.health")

    def state() -> tuple[str, str | None, int]:
        s = health.snapshot()["default"]
        return s.status, s.last_error, s.consecutive_failures

    await health.check()
    assert state() == ("healthy", None, 0)
    since = health.snapshot()["default"].since

    app.status = 500
    await health.check()
    assert state() == ("healthy", "HTTP 500", 1)  # one failure is below the threshold
    assert health.snapshot()["default"].since == since
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    await health.check()
    assert state() == ("unhealthy", "HTTP 500", 2)
    flipped = health.snapshot()["default"]
    assert flipped.since is not None and since is not None and flipped.since >= since
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.name == "hfasgi.health" and "'default' is unhealthy: HTTP 500" in warning.getMessage()

    app.status = 200
    for _ in range(2):
        await health.check()
        assert state() == ("unhealthy", "HTTP 500", 0)  # recovering, not yet trusted
    await health.check()
    assert state() == ("healthy", "HTTP 500", 0)  # last_error stays: what the last failure was
    assert any(r.levelno == logging.INFO and "healthy again" in r.getMessage() for r in caplog.records)
    assert TOKEN not in caplog.text


async def test_the_first_probe_decides_an_unknown_upstream_whatever_the_thresholds(pool: UpstreamPool) -> None:
    config = HealthConfig(interval=30.0, timeout=1.0, failures_to_unhealthy=5)
    health = UpstreamHealth(catalog(default=closed_url()), pool, config)
    await health.check()
    assert health.snapshot()["default"].status == "unhealthy" and health.overall == "unhealthy"


async def test_nothing_secret_in_states_documents_or_logs(pool: UpstreamPool, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    url = f"http://probe-user:url-password@127.0.0.1:{port}/base?api_key=query-secret#frag"
    health = UpstreamHealth(catalog(default=url), pool, ROUND)
    caplog.set_level(logging.DEBUG)
    await health.check()
    state = health.snapshot()["default"]
    assert state.url == public_url(url) == f"http://127.0.0.1:{port}/base"
    assert state.status == "unhealthy" and state.last_error is not None
    everything = json.dumps(upstream_document(health)) + repr(health.snapshot()) + caplog.text
    for secret in (TOKEN, "url-password", "probe-user", "query-secret"):
        assert secret not in everything


def test_public_url_keeps_ipv6_hosts_and_ports() -> None:
    assert public_url("https://u:p@[::1]:8443/v1?x=1") == "https://[::1]:8443/v1"
    assert public_url("https://router.huggingface.co") == "https://router.huggingface.co"


# --- the background loop -----------------------------------------------------------------------------------


async def test_the_loop_probes_now_then_every_interval_and_follows_flips(
    served: Callable[[], tuple[Probed, str]], pool: UpstreamPool
) -> None:
    app, url = served()
    health = UpstreamHealth(catalog(default=url), pool, FAST)
    await health.open()
    try:
        assert health.running
        await until(lambda: health.overall == "healthy", "first round")
        await until(lambda: health.rounds >= 3, "more rounds")
        app.status = 502
        await until(
            lambda: health.overall == "unhealthy" and health.snapshot()["default"].last_error == "HTTP 502",
            "flip to unhealthy",
        )
        rounds = health.rounds
        await until(lambda: health.rounds > rounds + 2, "rounds go on while unhealthy")
        app.status = 200
        await until(lambda: health.overall == "healthy", "recovery")
    finally:
        await stop(health)
    assert not health.running


async def test_aclose_cancels_a_probe_in_flight_and_open_starts_again(
    served: Callable[[], tuple[Probed, str]], pool: UpstreamPool
) -> None:
    app, url = served()
    app.slow = True
    health = UpstreamHealth(catalog(default=url), pool, HealthConfig(interval=60.0, timeout=30.0))
    await health.open()
    await health.open()  # idempotent: still one task
    await until(lambda: len(app.seen) == 1, "a probe is in flight")
    await stop(health)
    assert not health.running and health.rounds == 0 and health.overall == "unknown"
    await stop(health)  # idempotent
    app.slow = False
    await health.open()
    try:
        await until(lambda: health.overall == "healthy", "probing again after a restart")
    finally:
        await stop(health)
    assert len(app.seen) == 2


class _FailingOnce(UpstreamHealth):
    __slots__ = ("failed",)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.failed = False

    async def check(self) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a bug in a round")
        await super().check()


async def test_a_failing_round_does_not_end_the_loop(
    served: Callable[[], tuple[Probed, str]], pool: UpstreamPool, caplog: pytest.LogCaptureFixture
) -> None:
    _, url = served()
    health = _FailingOnce(catalog(default=url), pool, FAST)
    await health.open()
    try:
        await until(lambda: health.overall == "healthy", "the round after the failing one")
    finally:
        await stop(health)
    [record] = [r for r in caplog.records if r.name == "hfasgi.health" and r.levelno == logging.ERROR]
    assert "round failed" in record.getMessage() and record.exc_info is not None


# --- /health and /health/upstream ----------------------------------------------------------------------------


async def test_health_before_the_first_round_is_live_with_unknown_upstreams(pool: UpstreamPool) -> None:
    health = UpstreamHealth(catalog(default=closed_url(), spare=closed_url()), pool, ROUND)
    response = await answer(health)
    assert response.status == 200
    doc = response.json()
    assert doc["status"] == "healthy" and "error" not in doc
    assert doc["provider_status"] == {"default": "unknown", "spare": "unknown"}
    assert (doc["models_cached"], doc["version"]) == (7, "9.9.9")
    assert isinstance(doc["uptime"], int) and doc["uptime"] >= 0
    assert response.headers[b"content-type"] == b"application/json"
    assert response.headers[b"cache-control"] == b"no-store"
    detail = (await answer(health, path="/health/upstream")).json()
    assert detail["status"] == "unknown" and detail["interval"] == ROUND.interval
    assert detail["upstreams"]["default"]["since"] is None and detail["upstreams"]["default"]["last_checked"] is None


async def test_health_is_a_503_in_tgi_shape_only_when_every_upstream_is_down(
    served: Callable[[], tuple[Probed, str]], pool: UpstreamPool
) -> None:
    _, url = served()
    degraded = UpstreamHealth(catalog(default=url, spare=closed_url()), pool, ROUND)
    await degraded.check()
    response = await answer(degraded)
    assert response.status == 200
    assert response.json()["status"] == "degraded" and "error" not in response.json()
    assert response.json()["provider_status"] == {"default": "healthy", "spare": "unhealthy"}

    dead = UpstreamHealth(catalog(default=closed_url()), pool, ROUND)
    await dead.check()
    response = await answer(dead)
    assert response.status == 503
    doc = response.json()
    assert (doc["status"], doc["error"], doc["error_type"]) == ("unhealthy", "unhealthy", "healthcheck")
    assert doc["provider_status"] == {"default": "unhealthy"}
    assert health_document(dead, started=0.0, version="v", models_count=0)[0] == 503


async def test_head_has_the_status_and_length_but_no_body(pool: UpstreamPool) -> None:
    dead = UpstreamHealth(catalog(default=closed_url()), pool, ROUND)
    await dead.check()
    get, head = await answer(dead), await answer(dead, "HEAD")
    assert head.status == get.status == 503
    assert head.body == b"" and get.body
    assert head.headers[b"content-length"] == get.headers[b"content-length"] == str(len(get.body)).encode()
    assert (await answer(dead, "HEAD", "/health/upstream")).body == b""


async def test_upstream_detail_document(served: Callable[[], tuple[Probed, str]], pool: UpstreamPool) -> None:
    _, url = served()
    refused = closed_url()
    health = UpstreamHealth(catalog(default=url, spare=("openai", refused + "/v1")), pool, ROUND)
    await health.check()
    response = await answer(health, path="/health/upstream")
    assert response.status == 200
    doc = response.json()
    assert doc["status"] == "degraded" and doc["interval"] == 30.0
    spare = doc["upstreams"]["spare"]
    assert {k: spare[k] for k in ("status", "kind", "url", "last_error", "consecutive_failures")} == {
        "status": "unhealthy",
        "kind": "openai",
        "url": refused + "/v1",
        "last_error": "connection refused",
        "consecutive_failures": 1,
    }
    default = doc["upstreams"]["default"]
    assert (default["status"], default["last_error"], default["url"]) == ("healthy", None, url)
    for field in ("since", "last_checked"):
        assert datetime.fromisoformat(default[field]).tzinfo is not None
