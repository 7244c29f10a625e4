"""UsageLedger on a real SQLite file: submit, flush, query, shutdown, replay, and a database that fails.

A :class:`Flaky` store wraps the real one and refuses to open or write while ``down`` is set, so these
tests control outages exactly; real PostgreSQL outages and SIGKILLs have their own modules.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from hfasgi.usage import LedgerStore, SQLiteLedgerStore, StoreUnavailable, UsageLedger, UsagePage, UsageRecord
from tests.usage.ledger_support import assert_exactly_once, record, segments, sqlite_ids

pytestmark = pytest.mark.anyio

TABLE = "usage_records"
HANG = 30.0
"""Seconds after which a flush counts as hung (a hang detector, not a speed check)."""


class Flaky:
    """A real SQLite store that fails (to open, to write) while ``down`` is set; counts its calls."""

    def __init__(self, path: Path) -> None:
        self.inner = SQLiteLedgerStore(path)
        self.down = False
        self.opens = self.writes = 0

    async def open(self) -> None:
        self.opens += 1
        if self.down:
            raise StoreUnavailable("the database is down (test)")
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def write(self, records: Sequence[UsageRecord]) -> int:
        self.writes += 1
        if self.down:
            raise StoreUnavailable("the database is down (test)")
        return await self.inner.write(records)

    async def query(self, key_id: str | None, limit: int, offset: int) -> UsagePage:
        return await self.inner.query(key_id, limit, offset)

    async def count(self) -> int:
        return await self.inner.count()


def ledger(store: LedgerStore, spool: Path, **options: float) -> UsageLedger:
    values: dict[str, Any] = {"flush_interval": 0.02, "max_backoff": 0.05, "close_timeout": 5.0, **options}
    return UsageLedger(store, spool, **values)


async def flush(ledger: UsageLedger) -> None:
    with anyio.fail_after(HANG):
        await ledger.flush()


async def test_submitted_records_are_queryable_after_a_flush(tmp_path: Path) -> None:
    async with ledger(SQLiteLedgerStore(tmp_path / "u.db"), tmp_path / "spool", batch_size=64) as usage:
        for n in range(1000):
            usage.submit(record(n, key="key-a" if n % 2 else "key-b", cost=3))
        await flush(usage)
        page = await usage.query("key-a", 5, 0)
        assert [r.request_id for r in page.records] == ["r-999", "r-997", "r-995", "r-993", "r-991"]
        assert (page.total_records, page.total_cost_nano_usd) == (500, 1500)
        stats = usage.stats()
        assert (stats.pending, stats.written, stats.duplicates, stats.database_up) == (0, 1000, 0, True)
        assert segments(tmp_path / "spool") != []  # the current (empty) segment, held
    assert_exactly_once(sqlite_ids(tmp_path / "u.db", TABLE), {f"r-{n}" for n in range(1000)})
    assert segments(tmp_path / "spool") == []


async def test_exit_writes_what_was_submitted_just_before(tmp_path: Path) -> None:
    async with ledger(SQLiteLedgerStore(tmp_path / "u.db"), tmp_path / "spool", flush_interval=60.0) as usage:
        for n in range(777):
            usage.submit(record(n))
    assert_exactly_once(sqlite_ids(tmp_path / "u.db", TABLE), {f"r-{n}" for n in range(777)})
    assert segments(tmp_path / "spool") == []


async def test_the_gateway_starts_with_the_database_down_and_catches_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Flaky(tmp_path / "u.db")
    store.down = True
    with caplog.at_level(logging.WARNING, "hfasgi.usage.ledger"):
        async with ledger(store, tmp_path / "spool") as usage:
            for n in range(300):
                usage.submit(record(n))
            with anyio.move_on_after(0.3) as waited:
                await usage.flush()
            assert waited.cancelled_caught  # the database is down: the flush cannot complete
            assert store.opens > 1  # retried in the background
            stats = usage.stats()
            assert not stats.database_up and stats.pending == 300 and "down (test)" in (stats.last_error or "")
            store.down = False
            await flush(usage)
            assert usage.stats().database_up and usage.stats().pending == 0
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in messages) == 1, messages  # once per outage, however many retries
    assert sum("is back" in m for m in messages) == 1, messages
    assert_exactly_once(sqlite_ids(tmp_path / "u.db", TABLE), {f"r-{n}" for n in range(300)})


async def test_an_outage_mid_run_loses_nothing_and_logs_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = Flaky(tmp_path / "u.db")
    with caplog.at_level(logging.WARNING, "hfasgi.usage.ledger"):
        async with ledger(store, tmp_path / "spool", batch_size=50) as usage:
            for n in range(200):
                usage.submit(record(n))
            await flush(usage)
            store.down = True
            writes = store.writes
            for n in range(200, 900):
                usage.submit(record(n))
                if n % 100 == 0:
                    await anyio.sleep(0.01)
            with anyio.fail_after(HANG):
                while store.writes < writes + 3:  # noqa: ASYNC110 (several failed attempts: nothing to wait on)
                    await anyio.sleep(0.01)
            store.down = False
            for n in range(900, 1000):
                usage.submit(record(n))
            await flush(usage)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in messages) == 1, messages
    assert sum("is back" in m for m in messages) == 1, messages
    assert_exactly_once(sqlite_ids(tmp_path / "u.db", TABLE), {f"r-{n}" for n in range(1000)})


async def test_what_the_database_did_not_take_at_exit_is_replayed_at_the_next_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Flaky(tmp_path / "u.db")
    store.down = True
    with caplog.at_level(logging.WARNING, "hfasgi.usage.ledger"):
        async with ledger(store, tmp_path / "spool", close_timeout=0.1) as usage:
            for n in range(250):
                usage.submit(record(n))
    assert "wait in" in caplog.text  # the exit says where the records are
    assert len(segments(tmp_path / "spool")) >= 1
    async with ledger(SQLiteLedgerStore(tmp_path / "u.db"), tmp_path / "spool") as usage:
        await flush(usage)  # a fresh ledger's first flush includes the replay of leftover segments
        assert usage.stats().written == 250
    assert_exactly_once(sqlite_ids(tmp_path / "u.db", TABLE), {f"r-{n}" for n in range(250)})
    assert segments(tmp_path / "spool") == []


async def test_a_replayed_segment_already_in_the_database_counts_once(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    batch = [record(n) for n in range(120)]
    (spool / "1-dead-00000001.seg").write_bytes(b"".join(r.to_line() for r in batch))
    store = SQLiteLedgerStore(tmp_path / "u.db")
    await store.open()
    await store.write(batch[:70])  # the dead process committed part of it before it died
    await store.close()
    async with ledger(SQLiteLedgerStore(tmp_path / "u.db"), spool, batch_size=25) as usage:
        await flush(usage)
        assert (usage.stats().written, usage.stats().duplicates) == (50, 70)
    assert_exactly_once(sqlite_ids(tmp_path / "u.db", TABLE), {r.request_id for r in batch})


async def test_a_torn_line_in_a_leftover_segment_does_not_stop_the_replay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    lines = b"".join(record(n).to_line() for n in range(10)) + record(10).to_line()[:25]
    (spool / "1-dead-00000001.seg").write_bytes(lines)
    with caplog.at_level(logging.WARNING):
        async with ledger(SQLiteLedgerStore(tmp_path / "u.db"), spool) as usage:
            await flush(usage)
    assert "torn last line" in caplog.text
    assert_exactly_once(sqlite_ids(tmp_path / "u.db", TABLE), {f"r-{n}" for n in range(10)})


async def test_records_in_memory_after_a_disk_failure_reach_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hfasgi.usage import spool as spool_module

    def refuse(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    async with ledger(SQLiteLedgerStore(tmp_path / "u.db"), tmp_path / "spool") as usage:
        monkeypatch.setattr(spool_module, "_write", refuse)
        for n in range(40):
            usage.submit(record(n))  # never raises into the request path
        assert usage.stats().in_memory == 40
        await flush(usage)  # the disk still refuses: the writer takes them from memory
        assert usage.stats().in_memory == 0
    assert_exactly_once(sqlite_ids(tmp_path / "u.db", TABLE), {f"r-{n}" for n in range(40)})


async def test_submit_and_flush_need_an_open_ledger(tmp_path: Path) -> None:
    usage = ledger(SQLiteLedgerStore(tmp_path / "u.db"), tmp_path / "spool")
    assert not (tmp_path / "spool").exists()  # no I/O before it is opened
    with pytest.raises(RuntimeError, match="not open"):
        usage.submit(record(1))
    with pytest.raises(RuntimeError, match="not open"):
        await usage.flush()
    await usage.open()
    with pytest.raises(RuntimeError, match="already open"):
        await usage.open()
    await usage.aclose()
    await usage.aclose()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="not open"):
        usage.submit(record(2))


def test_bad_options_fail_at_construction(tmp_path: Path) -> None:
    store = SQLiteLedgerStore(tmp_path / "u.db")
    for name in ("batch_size", "flush_interval", "max_pending", "max_backoff"):
        with pytest.raises(ValueError, match=name):
            UsageLedger(store, tmp_path, **{name: 0})


async def test_two_workers_on_one_spool_and_database_never_take_each_others_records(tmp_path: Path) -> None:
    spool, database = tmp_path / "spool", tmp_path / "u.db"
    async with ledger(SQLiteLedgerStore(database), spool) as a, ledger(SQLiteLedgerStore(database), spool) as b:
        for n in range(600):
            (a if n % 2 else b).submit(record(n, prefix="a" if n % 2 else "b"))
            if n % 100 == 0:
                await anyio.sleep(0.005)
        await flush(a)
        await flush(b)
        assert a.stats().duplicates == b.stats().duplicates == 0  # neither replayed the other's live segments
    expected = {f"a-{n}" for n in range(1, 600, 2)} | {f"b-{n}" for n in range(0, 600, 2)}
    assert_exactly_once(sqlite_ids(database, TABLE), expected)


async def test_a_live_worker_replays_what_a_dead_one_left(tmp_path: Path) -> None:
    spool, database = tmp_path / "spool", tmp_path / "u.db"
    gone = Flaky(database)
    gone.down = True
    async with ledger(SQLiteLedgerStore(database), spool, orphan_scan_interval=0.05) as alive:
        async with ledger(gone, spool, close_timeout=0.05) as dying:
            for n in range(100):
                dying.submit(record(n))
        # ``dying`` exited with its records on disk; ``alive`` finds them at its next scan, no restart needed
        with anyio.fail_after(HANG):
            while alive.stats().written < 100:  # noqa: ASYNC110 (the next orphan scan: nothing to wait on)
                await anyio.sleep(0.01)
    assert_exactly_once(sqlite_ids(database, TABLE), {f"r-{n}" for n in range(100)})
    assert segments(spool) == []
