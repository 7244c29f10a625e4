"""SIGKILL: a gateway stand-in (tests/usage/ledger_child.py) is killed under load; a new ledger on the same spool
and database then has every record whose ``submit`` had returned exactly once, and none twice.

Three kill points, on SQLite and on PostgreSQL (the shared server, a table of its own):

* ``load``: anywhere, while records stream in and the writer commits batch after batch;
* ``commit-hang``: right after a batch committed, before its segment was deleted, so the replay writes
  that batch again and the primary key must absorb it (``duplicates`` equals the batch);
* ``txn-hang``: inside a write transaction, before its commit: the database rolls it back, the replay
  writes it for real.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from hfasgi.usage import LedgerStats, UsageLedger, store_for
from tests.postgres_support import drop_table, require_postgres, unique_table
from tests.usage.ledger_child import CHUNK
from tests.usage.ledger_support import Child, assert_exactly_once, postgres_ids, segments, sqlite_ids

pytestmark = pytest.mark.anyio

HANG = 60.0
"""Seconds the replay may take before it counts as hung (a hang detector, not a speed check)."""
COUNT = 1000
"""Records the ``*-hang`` children submit (``load`` submits until it is killed)."""


class Database:
    """Where the child and the restarted ledger write: a SQLite file or a table in the shared PostgreSQL."""

    def __init__(self, kind: str, url: str, table: str) -> None:
        self.kind, self.url, self.table = kind, url, table

    async def ids(self) -> list[str]:
        if self.kind == "sqlite":
            return await anyio.to_thread.run_sync(sqlite_ids, Path(self.url), self.table)
        return await postgres_ids(self.url, self.table)


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    table = unique_table()
    if request.param == "sqlite":
        yield Database("sqlite", str(tmp_path / "usage.db"), table)
        return
    url = require_postgres()
    try:
        yield Database("postgres", url, table)
    finally:
        await drop_table(url, table)


def kill_child(mode: str, database: Database, spool: Path) -> tuple[Child, int]:
    """Run the child in ``mode`` until its kill point, SIGKILL it; returns it and the batch it was writing."""
    with Child(mode, database.url, database.table, str(spool), mode, str(COUNT)) as child:
        if mode == "load":
            child.wait_for(lambda c: len(c.seen("COMMITTED")) >= 5 and len(c.ids) >= 3000, "5 commits")
            batch = 0
        else:
            marker = "COMMITTED" if mode == "commit-hang" else "IN-TRANSACTION"
            child.wait_for(lambda c: bool(c.seen(marker)) and bool(c.seen("DONE")), marker)
            batch = int(child.seen(marker)[0].split()[1])
        child.kill()
    return child, batch


async def restart(database: Database, spool: Path) -> LedgerStats:
    """A new ledger on the same spool and database: replay, flush, close; its stats."""
    async with UsageLedger(store_for(database.url, table=database.table), spool) as usage:
        with anyio.fail_after(HANG):
            await usage.flush()
        return usage.stats()


@pytest.mark.parametrize("mode", ["load", "commit-hang", "txn-hang"])
async def test_every_answered_request_has_exactly_one_record_after_a_sigkill(
    mode: str, database: Database, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    child, batch = await anyio.to_thread.run_sync(kill_child, mode, database, spool)
    confirmed = child.ids
    assert confirmed and segments(spool)  # it answered requests, and left segments behind
    before = await database.ids() if mode != "load" else []
    if mode == "commit-hang":
        assert len(before) == batch  # committed, but the segment was never deleted
    elif mode == "txn-hang":
        assert before == []  # killed inside the transaction: rolled back

    stats = await restart(database, spool)

    possible = {f"{mode}-{n}" for n in range(len(confirmed) + CHUNK)}  # a chunk may be submitted, not yet printed
    assert_exactly_once(await database.ids(), confirmed, possible)
    if mode == "commit-hang":
        assert stats.duplicates == batch  # the replayed batch was absorbed by the primary key
    elif mode == "txn-hang":
        assert stats.duplicates == 0
    assert stats.pending == 0 and segments(spool) == []
