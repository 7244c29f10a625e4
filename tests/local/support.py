"""Helpers for the local-model tests: the fake child's command, process liveness, polling without fixed sleeps."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hfasgi.local.process import ProcessConfig
from tests.servers import free_port

FAKE_CHILD = Path(__file__).with_name("fake_child.py")
DEADLINE = 30.0
"""Seconds a poll waits before failing: a guard against hangs, not a timing assertion."""

__all__ = ["DEADLINE", "FAKE_CHILD", "alive", "eventually", "fake_command", "fake_config", "wait_gone"]


def fake_command(port: int, *switches: str) -> tuple[str, ...]:
    """The fake child's command line on ``port``."""
    return (sys.executable, str(FAKE_CHILD), "--port", str(port), *switches)


def fake_config(*switches: str, port: int | None = None, **options: Any) -> ProcessConfig:
    """A :class:`ProcessConfig` running the fake child on a free port, quick to start, restart and stop."""
    port = port or free_port()
    defaults: dict[str, Any] = {
        "name": "fake child",
        "start_timeout": DEADLINE,
        "stop_grace": 5.0,
        "restart_backoff": 0.05,
        "probe_interval": 0.02,
    }
    defaults.update(options)
    return ProcessConfig(argv=fake_command(port, *switches), health_url=f"http://127.0.0.1:{port}/health", **defaults)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (a dead child nobody reaped yet counts as gone)."""
    if sys.platform == "linux":
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return False
        return stat.rpartition(")")[2].split()[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, within: float = DEADLINE) -> bool:
    """Poll until ``pid`` is gone; return whether it went within ``within`` seconds."""
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def eventually(check: Callable[[], bool], what: str, within: float = DEADLINE) -> None:
    """Poll ``check`` (on the event loop) until true; fail naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
