"""Redis for the tests: the shared server (skipped when absent, but a failure on CI) and private servers.

* :data:`SHARED_REDIS_URL` is the Redis every developer machine and CI job runs (``HFASGI_TEST_REDIS_URL``
  overrides it); tests share it safely by working under a unique key prefix (:func:`unique_prefix`) and
  deleting their keys afterwards (:func:`delete_prefixed`).
* :func:`require_redis` skips a test when that Redis does not answer, with the reason, except on CI
  (``CI=true``) where a missing Redis is a broken job, not an excuse: the test fails.
* :func:`private_redis` starts a ``redis-server`` of the test's own (no persistence, a free port), for
  tests that stop, freeze or restart Redis or that run code using the default ``hfasgi:`` prefix.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from uuid import uuid4

import pytest

from tests.servers import free_port

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "SHARED_REDIS_URL",
    "PrivateRedis",
    "delete_prefixed",
    "on_ci",
    "private_redis",
    "redis_available",
    "redis_server_binary",
    "require",
    "require_redis",
    "require_redis_server",
    "unique_prefix",
]

SHARED_REDIS_URL = os.environ.get("HFASGI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
"""The shared Redis of the test machines (``HFASGI_TEST_REDIS_URL`` overrides it)."""

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


def on_ci() -> bool:
    """Whether the tests run on CI (``CI=true``), where missing infrastructure must fail, not skip."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip the test with ``reason`` unless ``condition``; on CI fail with it instead."""
    if condition:
        return
    if on_ci():
        pytest.fail(f"{reason} (CI=true: required infrastructure is missing, so this fails instead of skipping)")
    pytest.skip(reason)


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def _ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis answers ``PING`` on ``host:port`` (plain RESP on a socket: nothing to close but it)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = s.recv(64)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return False
    # +PONG, or -NOAUTH when a password is needed (the server is there all the same)
    return reply.startswith((b"+PONG", b"-NOAUTH"))


def redis_available(url: str = SHARED_REDIS_URL, timeout: float = 0.5) -> bool:
    """Whether the Redis at ``url`` answers within ``timeout`` seconds."""
    if url.startswith("unix://"):
        path = urlsplit(url).path
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(timeout)
                s.connect(path)
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False
    return _ping(*_address(url), timeout=timeout)


def require_redis(url: str = SHARED_REDIS_URL) -> str:
    """``url`` when that Redis answers; otherwise skip the test (fail on CI). Call it from a fixture."""
    require(
        redis_available(url), f"no Redis answers at {_address(url)[0]}:{_address(url)[1]} (set HFASGI_TEST_REDIS_URL)"
    )
    return url


def redis_server_binary() -> str | None:
    """The ``redis-server`` executable, if there is one."""
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None
    )


def require_redis_server() -> str:
    """The ``redis-server`` executable; skip the test when there is none (fail on CI)."""
    binary = redis_server_binary()
    require(binary is not None, "redis-server is not installed, so no private Redis can be started")
    assert binary is not None
    return binary


def unique_prefix() -> str:
    """A key prefix no other test (or test run) uses."""
    return f"hfasgi-test-{uuid4().hex}:"


async def delete_prefixed(client: Redis, prefix: str) -> int:
    """Delete every key under ``prefix`` (as a glob, with its special characters escaped); returns the count."""
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
    keys = [key async for key in client.scan_iter(match=pattern, count=500)]
    if keys:
        await client.delete(*keys)
    return len(keys)


class PrivateRedis:
    """A ``redis-server`` subprocess of the test's own on a fixed free port: it can be stopped, frozen and restarted.

    ``url`` stays the same across restarts (same port), so a client built on it reconnects by itself.
    Nothing is persisted (``--save ""``, ``--appendonly no``): a restarted server starts empty.
    """

    def __init__(self, binary: str, port: int, directory: str) -> None:
        self.binary = binary
        self.port = port
        self.directory = directory
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log = Path(directory, "redis.log")
        self._process: subprocess.Popen[bytes] | None = None
        self._frozen = False

    def __repr__(self) -> str:
        return f"PrivateRedis(port={self.port}, running={self.running})"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def ping(self) -> bool:
        """Whether it answers ``PING`` now."""
        return _ping("127.0.0.1", self.port, timeout=0.2)

    def start(self, timeout: float = _START_TIMEOUT) -> None:
        """Start the server (again, on the same port) and return once it answers ``PING``."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.directory,
            "--logfile",
            str(self.log),
            "--daemonize",
            "no",
        ]
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self._frozen = False
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise RuntimeError(
                    f"redis-server on port {self.port} exited with {code} during start-up:\n{self._tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING within {timeout} s")
            time.sleep(0.01)

    def stop(self, *, kill: bool = False, timeout: float = _STOP_TIMEOUT) -> None:
        """Stop the server (SIGTERM, or SIGKILL with ``kill``) and wait until its process is gone."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            if self._frozen:
                process.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            if kill:
                process.kill()
            else:
                process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        self._frozen = False

    def freeze(self) -> None:
        """Suspend the server (SIGSTOP): connections still open, nothing answers — a hung Redis."""
        if not self.running:
            raise RuntimeError(f"{self!r} is not running")
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        """Resume a frozen server (SIGCONT)."""
        if self._process is not None and self._frozen:
            self._process.send_signal(signal.SIGCONT)
            self._frozen = False

    def _tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def private_redis(*, attempts: int = 3) -> Iterator[PrivateRedis]:
    """A started :class:`PrivateRedis`; it is killed when the block ends, whatever happened in it.

    Skips the test when ``redis-server`` is not installed (fails on CI). The free port is chosen just
    before the server binds it, so another process may take it in between: start-up is then retried on
    a new port (``attempts`` times).
    """
    binary = require_redis_server()
    with tempfile.TemporaryDirectory(prefix="hfasgi-redis-") as directory:
        server: PrivateRedis | None = None
        try:
            for attempt in range(attempts):
                server = PrivateRedis(binary, free_port(), directory)
                try:
                    server.start()
                    break
                except RuntimeError:
                    if attempt == attempts - 1:
                        raise
            assert server is not None
            yield server
        finally:
            if server is not None:
                server.stop(kill=True)
