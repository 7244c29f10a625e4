"""UsageLedger: usage records leave the request path through a disk spool and reach the database in batches.

``submit`` appends the record to the spool (:mod:`hfasgi.usage.spool`) and returns: from then on the
record survives the death of the process. One background writer seals the current segment when it has
records (every ``flush_interval``, or sooner once ``batch_size`` are waiting), writes it to the store in
batches of ``batch_size`` and deletes it after the commit. When the database is down, segments wait on disk
and the writer retries with capped exponential backoff and jitter; segments left by a dead process (a
crash, a SIGKILL, another worker) are replayed at start-up and every ``orphan_scan_interval``. A record
written twice (a segment killed between the commit and its deletion) counts once: the store's primary key
is the request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from hfasgi.usage.record import UsageRecord
from hfasgi.usage.spool import Segment, Spool
from hfasgi.usage.stores import LedgerStore, UsagePage

__all__ = ["LedgerStats", "UsageLedger"]

logger = logging.getLogger("hfasgi.usage.ledger")

T = TypeVar("T")

_ORPHANS_PER_SCAN = 64
"""Segments of dead processes locked at once (each holds a file descriptor until replayed)."""
_FIRST_BACKOFF = 0.05


@dataclass(frozen=True, slots=True)
class LedgerStats:
    """A snapshot of the ledger's state (for ``/health``)."""

    pending: int
    """Records submitted here and not yet confirmed in the database."""
    in_memory: int
    """Records the spool disk refused, kept in memory."""
    dropped: int
    """Records lost: the disk refused them and memory was full."""
    segments: int
    """Sealed segments waiting for the database."""
    database_up: bool
    last_error: str | None
    written: int
    """Records written to the database by this ledger."""
    duplicates: int
    """Records the database already had (a replayed segment): skipped."""


class UsageLedger:
    """The usage ledger: a shared resource (``async with``, or ``open``/``aclose``). See the module docstring.

    ``max_pending`` bounds the records held in memory when the spool's disk refuses writes (the oldest are
    dropped beyond it, the only way a record is lost); on disk, records wait without a bound.
    """

    def __init__(
        self,
        store: LedgerStore,
        spool_dir: str | os.PathLike[str],
        *,
        batch_size: int = 500,
        flush_interval: float = 0.5,
        max_pending: int = 100_000,
        max_backoff: float = 5.0,
        close_timeout: float = 10.0,
        open_timeout: float = 5.0,
        orphan_scan_interval: float = 30.0,
    ) -> None:
        for name, value in (
            ("batch_size", batch_size),
            ("flush_interval", flush_interval),
            ("max_pending", max_pending),
            ("max_backoff", max_backoff),
            ("orphan_scan_interval", orphan_scan_interval),
        ):
            if not value > 0:
                raise ValueError(f"UsageLedger {name} must be positive, got {value!r}")
        if close_timeout < 0 or open_timeout < 0:
            raise ValueError("UsageLedger close_timeout and open_timeout must not be negative")
        self.store = store
        self.spool = Spool(spool_dir, max_memory=max_pending)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.close_timeout = close_timeout
        self.open_timeout = open_timeout
        self.orphan_scan_interval = orphan_scan_interval
        self._random = random.Random()
        self._queue: deque[Segment] = deque()
        self._stored = -1
        """``spool.appended`` as of the writer's last complete pass (-1: none yet, orphans not replayed)."""
        self._written = 0
        self._duplicates = 0
        self._store_open = False
        self._down_since: float | None = None
        self._last_error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._progress: asyncio.Condition | None = None
        self._wake_requested = False

    def __repr__(self) -> str:
        return f"UsageLedger({self.store!r}, {str(self.spool.directory)!r})"

    async def __aenter__(self) -> UsageLedger:
        await self.open()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Open the spool and the store (a store that is down is retried in the background), start the writer."""
        if self._task is not None:
            raise RuntimeError(f"{self!r} is already open")
        self._loop = asyncio.get_running_loop()
        self._wake, self._progress = asyncio.Event(), asyncio.Condition()
        self._stored, self._wake_requested = -1, False
        await asyncio.to_thread(self.spool.open)
        try:
            async with asyncio.timeout(self.open_timeout):
                await self.store.open()
            self._store_open = True
        except Exception as exc:  # the gateway starts with its database down: records wait on disk
            self._failed(exc)
        except BaseException:
            self.spool.close()
            raise
        self._task = self._loop.create_task(self._run(), name="hfasgi-usage-writer")

    async def aclose(self) -> None:
        """Flush (for up to ``close_timeout`` seconds), stop the writer and close; what is left stays on disk."""
        task = self._task
        if task is None:
            return
        flushed = await self._flush_within(self.close_timeout)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._task = None
        left = self.spool.appended - max(self._stored, 0)
        while self._queue:
            self._queue.popleft().release(delete=False)
        self.spool.close()
        if self._store_open:
            self._store_open = False
            try:
                await self.store.close()
            except Exception as exc:
                logger.warning("usage ledger: closing %r failed: %s", self.store, exc)
        if not flushed:
            logger.warning(
                "usage ledger: closed before the database had every record (%d of this run, %s); "
                "they wait in %s for the next start",
                left,
                self._last_error or "timed out",
                self.spool.directory,
            )

    def submit(self, record: UsageRecord) -> None:
        """Spool ``record`` (one local file append, safe from any thread). Raises only if the ledger is not open."""
        if self.spool.append(record.to_line()) >= self.batch_size and not self._wake_requested:
            self._wake_requested = True
            loop, wake = self._loop, self._wake
            if loop is not None and wake is not None:
                loop.call_soon_threadsafe(wake.set)

    async def flush(self) -> None:
        """Wait until every record submitted before the call (and every orphan found at start-up) is in the store.

        While the database is down this waits for it: bound the wait with ``asyncio.timeout``.
        """
        if self._task is None or self._wake is None or self._progress is None:
            raise RuntimeError(f"{self!r} is not open")
        target = self.spool.appended
        if self._stored >= target:
            return
        self._wake.set()
        progress, task = self._progress, self._task
        async with progress:
            await progress.wait_for(lambda: self._stored >= target or task.done())
        if self._stored < target:
            raise RuntimeError(f"{self!r}: the writer stopped before the flush completed")

    async def _flush_within(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self.flush()
        except TimeoutError:
            return False
        return True

    async def query(self, key_id: str | None, limit: int, offset: int) -> UsagePage:
        """A page of ``key_id``'s records, newest first, with totals (see :meth:`LedgerStore.query`)."""
        return await self.store.query(key_id, limit, offset)

    def stats(self) -> LedgerStats:
        """Pending records, the database's state and the last error."""
        return LedgerStats(
            pending=max(0, self.spool.appended - max(self._stored, 0)),
            in_memory=self.spool.in_memory,
            dropped=self.spool.dropped,
            segments=len(self._queue),
            database_up=self._store_open and self._down_since is None,
            last_error=self._last_error or self.spool.last_error,
            written=self._written,
            duplicates=self._duplicates,
        )

    async def _run(self) -> None:
        failures = 0
        next_scan = 0.0
        assert self._wake is not None
        while True:
            scan = time.monotonic() >= next_scan
            try:
                await self._pass(scan)
            except Exception as exc:
                failures += 1
                self._failed(exc)
                await asyncio.sleep(self._backoff(failures))
                continue
            if scan:
                next_scan = time.monotonic() + self.orphan_scan_interval
            failures = 0
            self._recovered()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval):
                    await self._wake.wait()

    async def _pass(self, scan: bool) -> None:
        """One pass: open the store, replay orphans, drain waiting segments, seal and drain the current one."""
        assert self._wake is not None and self._progress is not None
        if not self._store_open:
            await self.store.open()
            self._store_open = True
        if scan:
            while True:
                found = self.spool.orphans(_ORPHANS_PER_SCAN)  # a few opens and flocks: cheap enough here
                self._queue.extend(found)
                await self._drain_queue()
                if len(found) < _ORPHANS_PER_SCAN:
                    break
        await self._drain_queue()
        target = self.spool.appended  # before sealing: every record counted is in the sealed segment or memory
        self._wake.clear()
        self._wake_requested = False
        sealed = self.spool.seal()
        if sealed is not None:
            self._queue.append(sealed)
            await self._drain_queue()
        lines = self.spool.take_memory()
        if lines:
            try:
                await self._write_lines(lines)
            except BaseException:
                self.spool.restore_memory(lines)
                raise
        if target > self._stored:
            self._stored = target
            async with self._progress:
                self._progress.notify_all()

    async def _drain_queue(self) -> None:
        while self._queue:
            segment = self._queue[0]
            while True:
                records, end, at_end = await _in_thread(segment.read, self.batch_size)
                if records:
                    await self._write(records)
                segment.offset = end
                if at_end:
                    break
            self._queue.popleft()
            segment.release(delete=True)

    async def _write_lines(self, lines: list[bytes]) -> None:
        records: list[UsageRecord] = []
        for line in lines:
            try:
                records.append(UsageRecord.from_line(line))
            except ValueError as exc:
                logger.warning("usage ledger: skipped an unreadable record (%s)", exc)
        for start in range(0, len(records), self.batch_size):
            await self._write(records[start : start + self.batch_size])

    async def _write(self, records: list[UsageRecord]) -> None:
        new = await self.store.write(records)
        self._written += new
        self._duplicates += len(records) - new

    def _backoff(self, failures: int) -> float:
        """Capped exponential backoff with equal jitter: half the delay fixed, half random."""
        delay = min(self.max_backoff, _FIRST_BACKOFF * 2.0 ** min(failures - 1, 30))
        return delay / 2 + self._random.uniform(0, delay / 2)

    def _failed(self, exc: BaseException) -> None:
        self._last_error = f"{type(exc).__name__}: {exc}"
        if self._down_since is None:
            self._down_since = time.monotonic()
            logger.warning(
                "usage ledger: the database is unavailable (%s); records wait in %s and are retried",
                self._last_error,
                self.spool.directory,
            )

    def _recovered(self) -> None:
        if self._down_since is not None:
            logger.warning(
                "usage ledger: the database is back after %.1f s; waiting records are written",
                time.monotonic() - self._down_since,
            )
            self._down_since = None


async def _in_thread(function: Callable[[int], T], argument: int) -> T:
    """``function(argument)`` on a worker thread; when cancelled, wait for the thread before re-raising.

    So a segment is never closed (by :meth:`UsageLedger.aclose`) while a thread still reads it.
    """
    future = asyncio.get_running_loop().run_in_executor(None, function, argument)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise
