"""A gateway stand-in for the SIGKILL tests: a ledger (or a bare spool) that submits records until it is killed.

``python -m tests.usage.ledger_child MODE DB TABLE SPOOL PREFIX COUNT`` (see tests/usage/ledger_support.py
for what it prints). ``submit`` is called for ``PREFIX-0``, ``PREFIX-1``, … in chunks of :data:`CHUNK`; a
chunk's ids are printed once ``submit`` has returned for each (the gateway's "the response went out").

Modes: ``load`` submits without end and prints ``COMMITTED n`` after each batch the store commits;
``commit-hang`` stops forever right after the first commit (before the segment is deleted);
``txn-hang`` stops forever inside the first write transaction, before its commit; ``spool`` holds a
bare :class:`~hfasgi.usage.spool.Spool` with COUNT records appended.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from typing import Any

from hfasgi.usage import PostgresLedgerStore, SQLiteLedgerStore, UsageLedger, UsageRecord, store_for
from hfasgi.usage.record import COLUMNS
from hfasgi.usage.spool import Spool

CHUNK = 50
FOREVER = 3600.0


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def make(prefix: str, n: int) -> UsageRecord:
    return UsageRecord(
        request_id=f"{prefix}-{n}",
        timestamp=time.time(),
        key_id="key-child",
        model="m",
        task="chat-completion",
        route="/v1/chat/completions",
        status=200,
        input_tokens=3,
        output_tokens=5,
        cost_nano_usd=11,
    )


class Announcing:
    """A store that says when it committed a batch, and may then hang (``commit-hang``)."""

    def __init__(self, inner: Any, *, hang: bool) -> None:
        self.inner = inner
        self.hang = hang

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def write(self, records: Sequence[UsageRecord]) -> int:
        new: int = await self.inner.write(records)
        say(f"COMMITTED {len(records)}")
        if self.hang:
            await asyncio.sleep(FOREVER)
        return new

    async def query(self, key_id: str | None, limit: int, offset: int) -> Any:
        return await self.inner.query(key_id, limit, offset)

    async def count(self) -> int:
        count: int = await self.inner.count()
        return count


class SQLiteHangInTransaction(SQLiteLedgerStore):
    def _write(self, rows: list[tuple[Any, ...]]) -> int:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        db.executemany(self._insert, rows)
        say(f"IN-TRANSACTION {len(rows)}")
        time.sleep(FOREVER)
        return 0


class PostgresHangInTransaction(PostgresLedgerStore):
    async def write(self, records: Sequence[UsageRecord]) -> int:
        pool = await self._get_pool()
        async with pool.acquire() as connection, connection.transaction():
            rows = [record.to_row() for record in records]
            await connection.copy_records_to_table(self._temp, records=rows, columns=COLUMNS)
            await connection.execute(self._move)
            say(f"IN-TRANSACTION {len(records)}")
            await asyncio.sleep(FOREVER)
        return 0


def build_store(mode: str, database: str, table: str) -> Any:
    if mode == "txn-hang":
        if database.startswith("postgresql://"):
            return PostgresHangInTransaction(database, table=table)
        return SQLiteHangInTransaction(database, table=table)
    return Announcing(store_for(database, table=table), hang=mode == "commit-hang")


async def run_ledger(mode: str, database: str, table: str, spool: str, prefix: str, count: int) -> None:
    ledger = UsageLedger(build_store(mode, database, table), spool, batch_size=100, flush_interval=0.01)
    async with ledger:
        say("READY")
        n = 0
        while mode == "load" or n < count:
            ids = []
            for _ in range(CHUNK):
                request_id = f"{prefix}-{n}"
                ledger.submit(make(prefix, n))
                ids.append(request_id)
                n += 1
            say("ID " + " ".join(ids))
            await asyncio.sleep(0)  # the writer runs between chunks, as it does between requests
        say("DONE")
        await asyncio.sleep(FOREVER)


def run_spool(spool_dir: str, prefix: str, count: int) -> None:
    spool = Spool(spool_dir)
    spool.open()
    for n in range(count):
        spool.append(make(prefix, n).to_line())
    say("READY")
    time.sleep(FOREVER)


def main(argv: list[str]) -> None:
    mode, database, table, spool, prefix, count = argv
    if mode == "spool":
        run_spool(spool, prefix, int(count))
    else:
        asyncio.run(run_ledger(mode, database, table, spool, prefix, int(count)))


if __name__ == "__main__":
    main(sys.argv[1:])
