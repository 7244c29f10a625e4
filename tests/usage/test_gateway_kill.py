"""Nothing accepted is lost: ``hfasgi serve`` killed with SIGKILL under load, then started again on the same files.

Four client threads send chat requests to the gateway (SQLite usage database, its spool beside it) and note
the request id of every answer they received whole. The gateway is SIGKILLed mid-run, started again on the
same database and spool, and stopped cleanly; then every noted request id is in the database exactly once,
and no request id is there twice.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from tests.e2e.clients import CHAT_MODEL, MESSAGES
from tests.processes import environment, serve_process, start
from tests.upstream import FakeHF
from tests.upstream.fixtures import Upstream

KEY = "hfasgi_kill_test_key_0123456789"


def load(url: str, answered: list[str], stop: threading.Event) -> None:
    """Chat requests until ``stop`` (or the gateway is gone); the id of each answer received whole."""
    body = {"model": CHAT_MODEL, "messages": MESSAGES, "max_tokens": 2}
    with httpx.Client(base_url=url, timeout=5.0, headers={"authorization": f"Bearer {KEY}"}) as http:
        while not stop.is_set():
            try:
                response = http.post("/v1/chat/completions", json=body)
                response.read()
            except httpx.HTTPError:
                continue  # the gateway died mid-request: that request got no answer
            if response.status_code == 200 and response.json()["usage"]["completion_tokens"] == 2:
                answered.append(response.headers["x-request-id"])


def test_a_killed_gateway_loses_no_record_and_counts_none_twice(
    upstream: Upstream, fake: FakeHF, tmp_path: Path
) -> None:
    database = tmp_path / "usage.db"
    env = environment(
        HFASGI_UPSTREAM_URL=upstream.url,
        HFASGI_API_KEYS=f"killer={KEY}",
        HFASGI_USAGE_DB=str(database),
        HF_TOKEN="hf_kill_server_token",
    )
    answered: list[str] = []
    stop = threading.Event()
    gateway = start(env, tmp_path / "first.log")
    gateway.wait_ready()
    threads = [threading.Thread(target=load, args=(gateway.url, answered, stop)) for _ in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(answered) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    gateway.process.send_signal(signal.SIGKILL)  # under load: answers in flight, records not yet in the database
    gateway.process.wait(10)
    stop.set()
    for thread in threads:
        thread.join(10)
    assert len(answered) >= 200, gateway.output()

    with serve_process(env, tmp_path / "second.log"):
        pass  # start (the spool is replayed) and a clean stop (the writer flushes)

    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT request_id, count(*) FROM usage_records GROUP BY request_id").fetchall()
    counts = dict(rows)
    missing = [request_id for request_id in answered if request_id not in counts]
    assert missing == [], f"{len(missing)} answered requests have no record"
    assert [request_id for request_id, n in rows if n != 1] == []
    assert len(set(answered)) == len(answered)
