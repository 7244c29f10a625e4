"""Helpers of the usage-ledger tests: records, reading a ledger table directly, the child ledger process.

:class:`Child` runs ``tests/usage/ledger_child.py`` (a ledger or a bare spool in a process of its own)
and reads what it prints: ``READY``, ``ID <id> ...`` after ``submit`` returned (the request "got its
response"), ``COMMITTED <n>`` after the store committed a batch, ``IN-TRANSACTION <n>`` inside one,
``DONE`` when it has submitted all it was asked to. The tests SIGKILL it at those points.
"""

from __future__ import annotations

import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

from hfasgi.usage import UsageRecord

ROOT = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT = 60.0
"""Seconds a child may take to print what a test waits for (a hang detector, not a speed check)."""


def record(n: int, *, prefix: str = "r", key: str | None = "key-a", cost: int = 7, at: float = 1.7e9) -> UsageRecord:
    """Record number ``n``: id ``{prefix}-{n}``, timestamps increasing with ``n``."""
    return UsageRecord(
        request_id=f"{prefix}-{n}",
        timestamp=at + n / 1000,
        key_id=key,
        model="meta-llama/Llama-3.1-8B-Instruct",
        task="chat-completion",
        route="/v1/chat/completions",
        status=200,
        input_tokens=n,
        output_tokens=2 * n,
        cost_nano_usd=cost,
        upstream="router",
    )


def sqlite_ids(path: Path, table: str) -> list[str]:
    """Every ``request_id`` in ``table`` of the SQLite file ``path``, read without the ledger's code."""
    with closing(sqlite3.connect(path)) as db:
        return [row[0] for row in db.execute(f"SELECT request_id FROM {table}")]


async def postgres_ids(url: str, table: str) -> list[str]:
    """Every ``request_id`` in ``table`` of the PostgreSQL at ``url``, read without the ledger's code."""
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(url, timeout=10)
    try:
        return [row[0] for row in await connection.fetch(f"SELECT request_id FROM {table}")]
    finally:
        await connection.close()


def assert_exactly_once(stored: list[str], confirmed: Iterable[str], possible: Iterable[str] = ()) -> None:
    """Every confirmed id is stored exactly once; nothing else is stored but ids that may have been submitted."""
    counts: dict[str, int] = {}
    for request_id in stored:
        counts[request_id] = counts.get(request_id, 0) + 1
    twice = sorted(i for i, c in counts.items() if c > 1)
    assert not twice, f"{len(twice)} records stored more than once, e.g. {twice[:5]}"
    confirmed = set(confirmed)
    missing = sorted(confirmed - counts.keys())
    assert not missing, f"{len(missing)} of {len(confirmed)} confirmed records are missing, e.g. {missing[:5]}"
    unexpected = sorted(counts.keys() - confirmed - set(possible))
    assert not unexpected, f"records never submitted were stored: {unexpected[:5]}"


def segments(spool: Path) -> list[str]:
    """The segment files in ``spool``."""
    return sorted(p.name for p in spool.glob("*.seg")) if spool.exists() else []


class Child:
    """``ledger_child.py`` running with ``args``; its stdout is read line by line as it comes."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "tests.usage.ledger_child", *args]
        self._stderr_file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by kill(), also on __exit__)
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self._stderr_file, stdin=subprocess.DEVNULL
        )
        self.lines: list[str] = []
        self._buffer = b""
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()

    @property
    def ids(self) -> list[str]:
        """Every id the child printed (each after its ``submit`` returned)."""
        return [i for line in self.lines if line.startswith("ID ") for i in line.split()[1:]]

    def seen(self, prefix: str) -> list[str]:
        """The lines printed so far that start with ``prefix``."""
        return [line for line in self.lines if line.startswith(prefix)]

    def wait_for(self, condition: Callable[[Child], bool], what: str, timeout: float = CHILD_TIMEOUT) -> None:
        """Read output until ``condition(self)``; fail with the child's stderr if it exits or stalls first."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while not condition(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the child did not print {what} within {timeout} s:\n{self._stderr()}")
                if selector.select(min(left, 0.5)) and not self._read():
                    raise AssertionError(f"the child exited before printing {what}:\n{self._stderr()}")

    def kill(self) -> None:
        """SIGKILL the child, wait for it, and read everything it printed before it died."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(CHILD_TIMEOUT)
        if self.process.stdout is not None and not self.process.stdout.closed:
            os.set_blocking(self.process.stdout.fileno(), True)
            while self._read():
                pass
            self.process.stdout.close()
        self._stderr_file.close()

    def _read(self) -> bool:
        """Take what stdout has now; ``False`` at its end."""
        assert self.process.stdout is not None
        try:
            chunk = os.read(self.process.stdout.fileno(), 1 << 16)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\n")
        self.lines += [line.decode() for line in complete]
        return True

    def _stderr(self) -> str:
        self._stderr_file.seek(0)
        return self._stderr_file.read().decode(errors="replace")[-4000:] or "(nothing on stderr)"
