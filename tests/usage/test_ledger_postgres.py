"""UsageLedger on a private PostgreSQL that is stopped and restarted under it (tests/postgres_support.py).

Records are submitted all along, also while the server is down; once it is back and the ledger has flushed,
every record is in the table exactly once. The shared server is never touched here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from hfasgi.usage import PostgresLedgerStore, UsageLedger
from tests.postgres_support import PrivatePostgres, private_postgres
from tests.usage.ledger_support import assert_exactly_once, postgres_ids, record, segments

pytestmark = pytest.mark.anyio

TABLE = "usage_outage"
HANG = 60.0
"""Seconds after which waiting counts as hung (a hang detector, not a speed check)."""


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        yield server


def ledger(url: str, spool: Path) -> UsageLedger:
    store = PostgresLedgerStore(url, table=TABLE, connect_timeout=2.0)
    return UsageLedger(store, spool, batch_size=40, flush_interval=0.02, max_backoff=0.3)


async def until(condition: Callable[[], bool], what: str) -> None:
    with anyio.move_on_after(HANG) as waited:
        while not condition():  # noqa: ASYNC110 (the ledger's and the server's state: nothing to wait on)
            await anyio.sleep(0.01)
    if waited.cancelled_caught:
        pytest.fail(f"waited {HANG} s in vain for {what}")


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_stopping_and_restarting_postgres_mid_run_loses_and_doubles_nothing(
    postgres: PrivatePostgres, tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    submitted: list[str] = []
    running = True

    async def submit_all_along(usage: UsageLedger) -> None:
        n = 0
        while running:
            for _ in range(10):
                usage.submit(record(n, prefix=mode))
                submitted.append(f"{mode}-{n}")
                n += 1
            await anyio.sleep(0.002)

    with caplog.at_level(logging.WARNING, "hfasgi.usage.ledger"):
        async with ledger(postgres.url, tmp_path / "spool") as usage, anyio.create_task_group() as tasks:
            tasks.start_soon(submit_all_along, usage)
            await until(lambda: usage.stats().written >= 200, "the first records written")
            await anyio.to_thread.run_sync(postgres.stop, mode)  # "immediate": as if the server crashed
            await until(lambda: not usage.stats().database_up, "the ledger notices the outage")
            during = len(submitted)
            await until(lambda: len(submitted) >= during + 300, "records submitted during the outage")
            await anyio.to_thread.run_sync(postgres.start)
            await until(lambda: usage.stats().database_up, "the ledger notices the recovery")
            after = len(submitted)
            await until(lambda: len(submitted) >= after + 200, "records submitted after the recovery")
            running = False
            with anyio.fail_after(HANG):
                await usage.flush()
            assert usage.stats().pending == 0
    stored = await postgres_ids(postgres.url, TABLE)
    assert len(stored) == len(submitted)
    assert_exactly_once(stored, submitted)
    assert segments(tmp_path / "spool") == []
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in messages) == 1, messages  # once per outage
    assert sum("is back" in m for m in messages) == 1, messages


async def test_the_ledger_starts_before_postgres_does(postgres: PrivatePostgres, tmp_path: Path) -> None:
    await anyio.to_thread.run_sync(postgres.stop)
    async with ledger(postgres.url, tmp_path / "spool") as usage:
        for n in range(500):
            usage.submit(record(n))
        assert not usage.stats().database_up
        await anyio.to_thread.run_sync(postgres.start)
        with anyio.fail_after(HANG):
            await usage.flush()
        page = await usage.query("key-a", 3, 0)
        assert [r.request_id for r in page.records] == ["r-499", "r-498", "r-497"] and page.total_records == 500
    assert_exactly_once(await postgres_ids(postgres.url, TABLE), {f"r-{n}" for n in range(500)})
