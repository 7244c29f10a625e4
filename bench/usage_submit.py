"""CPU per ``UsageLedger.submit``, with the ledger's writer running against a SQLite file.

    .venv/bin/python bench/usage_submit.py [--records 20000] [--repeats 7]

``submit``: each repeat submits ``--records`` prebuilt records in a tight loop (what the request path
pays: the JSON line and one ``os.write`` to the spool), then lets the writer drain them into SQLite
before the next repeat, outside the measurement. ``end to end``: the same records with the writer
interleaved (an ``await`` every 50 submits, as between requests), timed up to the flush that puts the
last one in SQLite, so it also counts the writer's thread and SQLite's inserts. CPU time of the whole
process (``time.process_time``), median of the repeats, in µs per record.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from hfasgi.usage import SQLiteLedgerStore, UsageLedger, UsageRecord


def make(repeat: int, count: int, tag: str) -> list[UsageRecord]:
    now = time.time()
    return [
        UsageRecord(
            request_id=f"{tag}{repeat}-{n:08d}-0123456789abcdef",
            timestamp=now,
            key_id="key_0123456789",
            model="meta-llama/Llama-3.1-8B-Instruct",
            task="chat-completion",
            route="/v1/chat/completions",
            status=200,
            input_tokens=120,
            output_tokens=48,
            cost_nano_usd=12_000,
            upstream="router",
        )
        for n in range(count)
    ]


async def measure(records: int, repeats: int) -> tuple[list[float], list[float]]:
    submit: list[float] = []
    end_to_end: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hfasgi-bench-usage-") as folder:
        store = SQLiteLedgerStore(Path(folder) / "usage.db")
        async with UsageLedger(store, Path(folder) / "spool") as ledger:
            await ledger.flush()
            for repeat in range(repeats):
                batch = make(repeat, records, "s")
                started = time.process_time()
                for record in batch:
                    ledger.submit(record)
                submit.append((time.process_time() - started) / records * 1e6)
                await ledger.flush()
            for repeat in range(repeats):
                batch = make(repeat, records, "e")
                started = time.process_time()
                for n, record in enumerate(batch):
                    ledger.submit(record)
                    if n % 50 == 49:
                        await asyncio.sleep(0)
                await ledger.flush()
                end_to_end.append((time.process_time() - started) / records * 1e6)
            assert await store.count() == 2 * records * repeats
    return submit, end_to_end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    submit, end_to_end = asyncio.run(measure(args.records, args.repeats))
    print(f"UsageLedger.submit: median {statistics.median(submit):.2f} µs CPU per record")
    print(f"  repeats: {', '.join(f'{s:.2f}' for s in submit)}")
    print(f"end to end (submit + writer + SQLite): median {statistics.median(end_to_end):.2f} µs CPU per record")
    print(f"  repeats: {', '.join(f'{s:.2f}' for s in end_to_end)}")


if __name__ == "__main__":
    main()
