"""The ledger stores, one contract for SQLite (a real file) and PostgreSQL (the shared server, a table of its own).

Writes are idempotent per request id, pages come newest first, totals cover all of a key's records, and a
PostgreSQL password never shows in an error, a log line or a ``repr``.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hfasgi.usage import LedgerStore, PostgresLedgerStore, SQLiteLedgerStore, StoreUnavailable, UsageLedger, store_for
from hfasgi.usage.stores import redact_url
from tests.postgres_support import SHARED_POSTGRES_URL, drop_table, require_postgres, unique_table
from tests.servers import free_port
from tests.usage.ledger_support import record

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LedgerStore]:
    """Each store in turn, opened on a fresh table, closed (and the PostgreSQL table dropped) afterwards."""
    table = unique_table()
    opened: LedgerStore
    if request.param == "sqlite":
        opened = SQLiteLedgerStore(tmp_path / "usage.db", table=table)
    else:
        opened = PostgresLedgerStore(require_postgres(), table=table)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
        if request.param == "postgres":
            await drop_table(SHARED_POSTGRES_URL, table)


async def test_writing_the_same_records_twice_keeps_one_row_each(store: LedgerStore) -> None:
    batch = [record(n) for n in range(300)]
    assert await store.write(batch) == 300
    assert await store.write(batch) == 0
    assert await store.write([*batch[:10], record(300)]) == 1
    assert await store.count() == 301


async def test_pages_are_newest_first_and_totals_cover_every_record_of_the_key(store: LedgerStore) -> None:
    mine = [record(n, key="key-a", cost=n) for n in range(25)]
    theirs = [record(n, prefix="o", key="key-b", cost=1000) for n in range(5)]
    await store.write(mine + theirs)
    page = await store.query("key-a", 10, 5)
    assert [r.request_id for r in page.records] == [f"r-{n}" for n in range(19, 9, -1)]
    assert (page.total_records, page.total_cost_nano_usd) == (25, sum(range(25)))
    assert page.records[0] == mine[19]
    everyone = await store.query(None, 100, 0)
    assert (everyone.total_records, everyone.total_cost_nano_usd) == (30, sum(range(25)) + 5000)
    nobody = await store.query("key-none", 10, 0)
    assert (nobody.records, nobody.total_records, nobody.total_cost_nano_usd) == ([], 0, 0)


async def test_every_field_round_trips(store: LedgerStore) -> None:
    full = dataclasses.replace(
        record(1), cache_hit=True, stream=True, key_id=None, model=None, task=None, route=None, upstream=None
    )
    big = dataclasses.replace(record(2), cost_nano_usd=2**62, input_tokens=10**12, status=499, timestamp=1.5)
    await store.write([full, big])
    page = await store.query(None, 10, 0)
    assert sorted(page.records, key=lambda r: r.request_id) == [full, big]


async def test_a_nul_character_from_a_client_cannot_block_the_ledger(store: LedgerStore) -> None:
    await store.write([dataclasses.replace(record(1), model="evil\x00model")])
    [stored] = (await store.query(None, 1, 0)).records
    assert stored.model in ("evil\x00model", "evil\ufffdmodel")  # SQLite keeps it, PostgreSQL text cannot


async def test_sqlite_uses_wal_and_indexes_key_and_time(tmp_path: Path) -> None:
    path = tmp_path / "deeper" / "usage.db"
    store = SQLiteLedgerStore(path)
    await store.open()
    await store.open()  # opening twice is harmless
    await store.close()
    await store.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = db.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
        assert ("usage_records_key_time",) in indexes
    finally:
        db.close()
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.write([record(1)])


def test_store_for_picks_the_store_by_its_address(tmp_path: Path) -> None:
    assert isinstance(store_for("postgresql://u@h/db"), PostgresLedgerStore)
    assert isinstance(store_for("postgres://u@h/db"), PostgresLedgerStore)
    assert isinstance(store_for(tmp_path / "u.db"), SQLiteLedgerStore)
    relative = store_for("sqlite:///usage.db")
    absolute = store_for("sqlite:////var/lib/usage.db")
    assert isinstance(relative, SQLiteLedgerStore) and relative.path == Path("usage.db")
    assert isinstance(absolute, SQLiteLedgerStore) and absolute.path == Path("/var/lib/usage.db")
    with pytest.raises(ValueError, match="postgresql://"):
        store_for("mysql://user:hunter2@h/db")
    with pytest.raises(ValueError, match="table"):
        SQLiteLedgerStore(tmp_path / "u.db", table="x; DROP TABLE y")


def test_redacted_urls_keep_everything_but_the_password() -> None:
    assert redact_url("postgresql://app:s3cr%40t@db:5432/usage?sslmode=require") == (
        "postgresql://app:***@db:5432/usage?sslmode=require"
    )
    assert redact_url("postgresql://db/usage?user=app&password=s3cret") == "postgresql://db/usage?user=app&password=***"
    assert redact_url("postgresql://app@db/usage") == "postgresql://app@db/usage"
    assert redact_url("postgresql://a%40b:pw@db/usage") == "postgresql://a%40b:***@db/usage"


async def test_a_password_never_reaches_an_error_or_a_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3t-pa55"
    url = f"postgresql://app:{secret}@127.0.0.1:{free_port()}/usage?password={secret}x"
    store = PostgresLedgerStore(url, connect_timeout=2.0)
    assert secret not in repr(store) and secret not in store.url
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    assert secret not in str(caught.value) and "***" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with caplog.at_level(logging.DEBUG):
        async with UsageLedger(store, tmp_path / "spool", open_timeout=2.0, close_timeout=0.2) as ledger:
            ledger.submit(record(1))
            assert ledger.stats().last_error is not None
            assert secret not in (ledger.stats().last_error or "")
    assert "unavailable" in caplog.text and secret not in caplog.text
