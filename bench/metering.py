"""CPU per request of usage metering, in process: no server, no network.

    .venv/bin/python bench/metering.py [--requests 20000] [--repeats 7]

The same request through ``RequestId`` around a trivial app that answers like an upstream (a chat
completion with a usage object, or a stream of 32 events plus a usage chunk and ``[DONE]``), with and
without :class:`~hfasgi.usage.UsageMeter` in front of it. The meter's ledger is the real
:class:`~hfasgi.usage.UsageLedger`: each record is appended to a spool file on the request path, and
its background writer moves the spool into a SQLite file in batches. ``time.process_time`` counts
every thread, so the writer's CPU is included; "the ledger's writer" isolates it (a ledger whose
records are submitted without a request around them). Medians of interleaved repeats.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from inprocess import ANSWER, CHAT, EVENTS, STREAM, cpu_per_request

from hfasgi.context import get_context
from hfasgi.principal import Principal
from hfasgi.request_id import RequestId
from hfasgi.usage import SQLiteLedgerStore, UsageLedger, UsageRecord
from hfasgi.usage.meter import UsageMeter, UsageMeterConfig
from hfasgi.usage.prices import Price, PriceTable

ALICE = Principal(id="alice")


async def upstream_like(scope: Any, receive: Any, send: Any) -> None:
    """What the inner layers leave in the context, and an upstream's answer."""
    ctx = get_context(scope)
    ctx.principal = ALICE
    ctx.model = "org/model"
    ctx.upstream_name = "default"
    message = await receive()
    if b'"stream": true' in message["body"]:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for event in EVENTS:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": ANSWER, "more_body": False})


async def writer_only(ledger: UsageLedger, n: int) -> float:
    """CPU µs per record of submitting ``n`` records and letting the writer store them (no request around)."""
    record = UsageRecord(
        request_id="", timestamp=time.time(), key_id="alice", model="org/model", task="chat-completion",
        route="chat", status=200, input_tokens=5, output_tokens=32, cost_nano_usd=100,
    )  # fmt: skip
    started = time.process_time_ns()
    for index in range(n):
        ledger.submit(UsageRecord(**{**_fields(record), "request_id": f"w-{time.time_ns()}-{index}"}))
    await ledger.flush()
    return (time.process_time_ns() - started) / n / 1000


def _fields(record: UsageRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        ledger = UsageLedger(SQLiteLedgerStore(Path(folder) / "usage.db"), Path(folder) / "spool")
        await ledger.open()
        prices = PriceTable({"org/model": Price(3, 7)})
        stacks = {
            "no meter (baseline)": RequestId(upstream_like),
            "UsageMeter + UsageLedger (SQLite)": RequestId(UsageMeter(upstream_like, config=UsageMeterConfig(
                ledger=ledger, prices=prices))),
        }  # fmt: skip
        bodies = {"chat": CHAT, "stream (32 events)": STREAM}
        samples: dict[tuple[str, str], list[float]] = {(k, s): [] for k in bodies for s in stacks}
        writer: list[float] = []
        for _ in range(args.repeats):
            for kind, body in bodies.items():
                for name, app in stacks.items():
                    samples[kind, name].append(await cpu_per_request(app, "/v1/chat/completions", body, args.requests))
                    await ledger.flush()  # the writer's work for this run lands in this run
            writer.append(await writer_only(ledger, args.requests))
        await ledger.aclose()
    print("| request | stack | CPU µs/request (median) | added |")
    print("| --- | --- | --- | --- |")
    for kind in bodies:
        base = statistics.median(samples[kind, "no meter (baseline)"])
        for name in stacks:
            median = statistics.median(samples[kind, name])
            print(f"| {kind} | {name} | {median:.1f} | {median - base:+.1f} |")
    print(f"| - | the ledger's writer alone (submit + batch into SQLite) | {statistics.median(writer):.1f} | |")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
