"""Upstream health: background probes of every upstream, and the ``/health`` answers made from them.

:class:`UpstreamHealth` is a shared resource (``open()`` / ``aclose()``): one task probes every upstream
of the catalog now and then every ``interval`` seconds, concurrently, each probe bounded by ``timeout``.
``GET /health`` (:func:`send_health`) never waits for a probe: it reads the last known states. It keeps
TGI's contract for TGI clients (200 when serving; 503 ``{"error": "unhealthy", "error_type":
"healthcheck"}`` when no upstream answers, so ``huggingface_hub``'s ``health_check()`` is False) and
carries the provider task API's body for everyone else. ``GET /health/upstream``
(:func:`send_upstream_health`) gives each upstream's detail.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from hfasgi import __version__
from hfasgi.catalog import ModelCatalog
from hfasgi.forwarding.pool import UpstreamPool
from hfasgi.forwarding.upstream import Upstream
from hfasgi.types import Scope, Send

__all__ = [
    "PROBE_USER_AGENT",
    "HealthConfig",
    "Overall",
    "State",
    "UpstreamHealth",
    "UpstreamState",
    "health_document",
    "public_url",
    "send_health",
    "send_upstream_health",
    "upstream_document",
]

_JITTER_RANDOM = random.Random()
"""Jitter comes from a generator of its own, never from the ``random`` module's shared state."""

PROBE_USER_AGENT = f"hfasgi-health/{__version__}"
"""The ``User-Agent`` of health probes, so an upstream's logs (and the test upstream) can tell them from traffic."""

logger = logging.getLogger("hfasgi.health")

State = Literal["healthy", "unhealthy", "unknown"]
Overall = Literal["healthy", "degraded", "unhealthy", "unknown"]

_JITTER = 0.1
"""Each pause between rounds is ``interval`` times a random factor in [0.9, 1.1] (replicas drift apart)."""
_TLS_ERRORS = (aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch)


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthConfig:
    """How often and how patiently the upstreams are probed."""

    interval: float = 10.0
    """Seconds between the starts of two probe rounds (each pause jittered by ±10%)."""
    timeout: float = 2.0
    """Seconds a probe may take before it counts as failed (``timeout``); below ``interval``."""
    failures_to_unhealthy: int = 1
    """Consecutive failed probes that turn a healthy upstream unhealthy."""
    successes_to_healthy: int = 1
    """Consecutive good probes that turn an unhealthy upstream healthy again."""

    def __post_init__(self) -> None:
        for name in ("interval", "timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ValueError(f"HealthConfig.{name} must be a finite number > 0 seconds, got {value!r}")
        if not self.timeout < self.interval:
            raise ValueError(
                f"HealthConfig.timeout ({self.timeout!r} s) must be shorter than HealthConfig.interval "
                f"({self.interval!r} s), so a round ends before the next one starts"
            )
        for name in ("failures_to_unhealthy", "successes_to_healthy"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"HealthConfig.{name} must be an integer >= 1, got {value!r}")

    @classmethod
    def for_interval(cls, interval: float, **options: Any) -> HealthConfig:
        """A config probing every ``interval`` seconds, with a timeout of 2 s or half the interval if shorter."""
        options.setdefault("timeout", min(2.0, interval / 2))
        return cls(interval=interval, **options)


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamState:
    """What the probes know about one upstream. Nothing secret: no token, no credentials in ``url``."""

    name: str
    kind: str
    url: str
    """The upstream's URL without userinfo, query or fragment (see :func:`public_url`)."""
    status: State
    since: float | None
    """Wall-clock time (seconds since the epoch) ``status`` was last set; ``None`` before the first probe."""
    last_checked: float | None
    """Wall-clock time the last probe ended."""
    last_error: str | None
    """Why the last failed probe failed (``timeout``, ``connection refused``, ``HTTP 503``, ...)."""
    consecutive_failures: int

    def document(self) -> dict[str, Any]:
        """The JSON form (times as ISO 8601 UTC)."""
        return {
            "status": self.status,
            "kind": self.kind,
            "url": self.url,
            "since": _iso(self.since),
            "last_checked": _iso(self.last_checked),
            "last_error": self.last_error,
            "consecutive_failures": self.consecutive_failures,
        }


class _Tracker:
    """The mutable state of one upstream's probes (one per upstream, touched only by the probe loop)."""

    __slots__ = ("failures", "last_checked", "last_error", "since", "status", "successes", "upstream", "url")

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.url = public_url(upstream.url)
        self.status: State = "unknown"
        self.since: float | None = None
        self.last_checked: float | None = None
        self.last_error: str | None = None
        self.failures = 0
        self.successes = 0

    def record(self, error: str | None, config: HealthConfig) -> None:
        """Count one probe (``error`` None: it succeeded) and change the state when a threshold is reached.

        The first probe decides an unknown upstream at once; the thresholds only damp later flips.
        """
        now = time.time()
        self.last_checked = now
        name = self.upstream.name
        if error is None:
            self.failures, self.successes = 0, self.successes + 1
            if self.status == "unknown" or (
                self.status == "unhealthy" and self.successes >= config.successes_to_healthy
            ):
                if self.status == "unhealthy":
                    down = f" after {now - self.since:.0f} s" if self.since is not None else ""
                    logger.info("hfasgi: upstream %r is healthy again%s", name, down, extra={"upstream": name})
                else:
                    logger.debug("hfasgi: upstream %r is healthy", name, extra={"upstream": name})
                self.status, self.since = "healthy", now
            return
        self.successes, self.failures, self.last_error = 0, self.failures + 1, error
        if self.status == "unknown" or (self.status == "healthy" and self.failures >= config.failures_to_unhealthy):
            logger.warning(
                "hfasgi: upstream %r is unhealthy: %s (%d failed probe%s in a row)",
                name,
                error,
                self.failures,
                "" if self.failures == 1 else "s",
                extra={"upstream": name, "reason": error},
            )
            self.status, self.since = "unhealthy", now

    def state(self) -> UpstreamState:
        return UpstreamState(
            name=self.upstream.name,
            kind=self.upstream.kind.value,
            url=self.url,
            status=self.status,
            since=self.since,
            last_checked=self.last_checked,
            last_error=self.last_error,
            consecutive_failures=self.failures,
        )


class UpstreamHealth:
    """Background health probes of every upstream of ``catalog``, through ``pool``'s session.

    A shared resource: the app's lifespan opens it after the pool (``open()`` starts the probe task and
    returns at once; start-up never waits for an upstream) and closes it before the pool. A probe is a
    ``GET`` of :meth:`Upstream.health_url` with the upstream's token as ``Bearer``, redirects not
    followed; any status below 500 is healthy. ``__init__`` does no I/O.
    """

    __slots__ = ("_rounds", "_task", "_trackers", "catalog", "config", "pool")

    def __init__(self, catalog: ModelCatalog, pool: UpstreamPool, config: HealthConfig | None = None) -> None:
        self.catalog = catalog
        self.pool = pool
        self.config = config or HealthConfig()
        self._trackers: dict[str, _Tracker] = {}
        self._rounds = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def rounds(self) -> int:
        """Probe rounds finished so far."""
        return self._rounds

    @property
    def running(self) -> bool:
        """Whether the background probe task is running."""
        return self._task is not None and not self._task.done()

    async def open(self) -> None:
        """Start the background probes (idempotent): a first round now, then one every ``interval``."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="hfasgi-upstream-health")

    async def aclose(self) -> None:
        """Stop the background probes and wait until they have stopped (idempotent)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})

    async def check(self) -> None:
        """Run one probe round now: every upstream concurrently, each bounded by ``timeout``."""
        upstreams = list(self.catalog.upstreams.values())
        errors = await asyncio.gather(*(self._probe(u) for u in upstreams))
        for upstream, error in zip(upstreams, errors, strict=True):
            tracker = self._trackers.get(upstream.name)
            if tracker is None or tracker.upstream is not upstream:
                tracker = self._trackers[upstream.name] = _Tracker(upstream)
            tracker.record(error, self.config)
        self._rounds += 1

    def snapshot(self) -> dict[str, UpstreamState]:
        """The state of every upstream of the catalog, by name (``unknown`` until it was probed)."""
        states = {}
        for name, upstream in self.catalog.upstreams.items():
            tracker = self._trackers.get(name)
            if tracker is None or tracker.upstream is not upstream:
                tracker = _Tracker(upstream)
            states[name] = tracker.state()
        return states

    @property
    def overall(self) -> Overall:
        """``healthy`` (every upstream), ``degraded`` (some), ``unhealthy`` (none); ``unknown`` before a round."""
        if self._rounds == 0:
            return "unknown"
        states = [s.status for s in self.snapshot().values()]
        healthy = states.count("healthy")
        return "healthy" if healthy == len(states) else "degraded" if healthy else "unhealthy"

    async def _run(self) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.check()
            except Exception:  # a bug must not end the probes: log it and try again next round
                logger.exception("hfasgi: upstream health round failed")
            pause = config.interval * _JITTER_RANDOM.uniform(1 - _JITTER, 1 + _JITTER)
            await asyncio.sleep(max(0.0, started + pause - loop.time()))

    async def _probe(self, upstream: Upstream) -> str | None:
        """``None`` when ``upstream`` answers its health URL below 500 in time, else a short reason."""
        headers = {"user-agent": PROBE_USER_AGENT}
        if upstream.token:
            headers["authorization"] = f"Bearer {upstream.token}"
        try:
            async with asyncio.timeout(self.config.timeout):
                session = self.pool.session()
                async with session.get(upstream.health_url(), headers=headers, allow_redirects=False) as response:
                    await response.read()
                    return None if response.status < 500 else f"HTTP {response.status}"
        except Exception as exc:  # every failure is a reason, never the exception's text (it may hold a URL)
            return _reason(exc)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, _TLS_ERRORS):
        return "TLS error"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "name resolution failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        refused = isinstance(exc.os_error, ConnectionRefusedError) or exc.os_error.errno == errno.ECONNREFUSED
        return "connection refused" if refused else "connection failed"
    if isinstance(exc, aiohttp.ServerDisconnectedError | ConnectionResetError | aiohttp.ClientPayloadError):
        return "connection closed"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "invalid response"
    return f"probe failed ({type(exc).__name__})"


def public_url(url: str) -> str:
    """``url`` without userinfo (``user:password@``), query or fragment: what may be shown and logged."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def health_document(
    health: UpstreamHealth, *, started: float, version: str, models_count: int
) -> tuple[int, dict[str, Any]]:
    """``GET /health``'s status and body: 503 in TGI's shape only when every upstream is unhealthy.

    Before the first round the gateway is live and says so (200, ``healthy``, every upstream ``unknown``).
    ``started`` is the app's start on :func:`time.monotonic`'s clock.
    """
    overall = health.overall
    status = "healthy" if overall == "unknown" else overall
    document: dict[str, Any] = {"status": status}
    if status == "unhealthy":  # TGI's 503 body (hf_api.md §3.1): HF clients read `error`
        document.update(error="unhealthy", error_type="healthcheck")
    document.update(
        uptime=max(0, int(time.monotonic() - started)),
        models_cached=models_count,
        provider_status={name: state.status for name, state in health.snapshot().items()},
        version=version,
    )
    return (503 if status == "unhealthy" else 200), document


def upstream_document(health: UpstreamHealth) -> dict[str, Any]:
    """``GET /health/upstream``'s body: every upstream's detail, the overall state and the probe interval."""
    return {
        "upstreams": {name: state.document() for name, state in health.snapshot().items()},
        "status": health.overall,
        "interval": health.config.interval,
    }


async def send_health(
    scope: Scope, send: Send, health: UpstreamHealth, *, started: float, version: str, models_count: int
) -> None:
    """Answer ``GET`` or ``HEAD /health`` from the last known states (never waits for a probe)."""
    status, document = health_document(health, started=started, version=version, models_count=models_count)
    await _send_json(scope, send, status, document)


async def send_upstream_health(scope: Scope, send: Send, health: UpstreamHealth) -> None:
    """Answer ``GET`` or ``HEAD /health/upstream`` (always 200: the body says what is wrong)."""
    await _send_json(scope, send, 200, upstream_document(health))


async def _send_json(scope: Scope, send: Send, status: int, document: Any) -> None:
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    head = scope.get("method") == "HEAD"  # same headers (Content-Length of the GET body), no body
    await send({"type": "http.response.body", "body": b"" if head else body, "more_body": False})
