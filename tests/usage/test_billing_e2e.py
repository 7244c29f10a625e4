"""Count every token: a mixed workload through the reference app, then its billing endpoints and its database.

``create_app`` with two keys, a price file and a SQLite usage database, on a socket in front of the fake
upstream; the real clients drive it. The expected tokens are what the upstream reported (the ``usage`` the
clients received; where the upstream reports no count, TGI's prompt, the gateway's documented estimate) and
the expected nano-USD follow from the price file, summed as integers.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from huggingface_hub import InferenceClient

from hfasgi.app import create_app
from hfasgi.settings import Settings
from hfasgi.tokens import estimate_text
from tests.e2e.clients import CHAT_MODEL, DEFAULT_MODEL, MESSAGES, PROMPT
from tests.servers import serve
from tests.upstream import FakeHF
from tests.upstream.fixtures import Upstream

ALICE = "hfasgi_billing_alice_key_0123456789"
BOB = "hfasgi_billing_bob_key_9876543210"
PRICE_FILE = f"""
["{CHAT_MODEL}"]
input_nano_usd_per_token = 30
output_nano_usd_per_token = 70

["{DEFAULT_MODEL}"]
input_nano_usd_per_token = 2
output_nano_usd_per_token = 5
nano_usd_per_request = 1000
"""
PRICES = {CHAT_MODEL: (30, 70, 0), DEFAULT_MODEL: (2, 5, 1000)}
_keys = itertools.count(1)


def cost(model: str, prompt: int, completion: int) -> int:
    per_in, per_out, per_request = PRICES[model]
    return per_request + per_in * prompt + per_out * completion


@pytest.fixture
def settings(upstream: Upstream, fake: FakeHF, tmp_path: Path) -> Settings:
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICE_FILE, encoding="utf-8")
    return Settings(
        upstream_url=upstream.url,
        upstream_kind="router",
        hf_token="hf_billing_server_token",
        api_keys=f"alice={ALICE},bob={BOB}",
        default_model=DEFAULT_MODEL,
        usage_db=str(tmp_path / "usage.db"),
        prices_file=str(prices),
    )


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def test_a_mixed_workload_is_billed_exactly(settings: Settings, fake: FakeHF) -> None:
    expected: list[tuple[str, int, int, int]] = []  # (key id, input, output, nano-USD) of every metered request
    with serve(create_app(settings)) as url:
        oai = openai.OpenAI(base_url=url + "/v1", api_key=ALICE, max_retries=0)
        plain = oai.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=3)
        assert plain.usage is not None
        u = plain.usage
        expected.append(("alice", u.prompt_tokens, u.completion_tokens, cost(CHAT_MODEL, u.prompt_tokens, 3)))
        with oai.chat.completions.create(
            model=CHAT_MODEL, messages=MESSAGES, max_tokens=4, stream=True, stream_options={"include_usage": True}
        ) as stream:
            s = list(stream)[-1].usage
        assert s is not None
        expected.append(("alice", s.prompt_tokens, 4, cost(CHAT_MODEL, s.prompt_tokens, 4)))

        generated = InferenceClient(base_url=url, api_key=BOB).text_generation(PROMPT, max_new_tokens=2, details=True)
        assert generated.details is not None and generated.details.generated_tokens == 2
        prompt = estimate_text(PROMPT)  # TGI reports no prompt count: the gateway's estimate, UTF-8 bytes / 3
        expected.append(("bob", prompt, 2, cost(DEFAULT_MODEL, prompt, 2)))

        with pytest.raises(openai.InternalServerError):
            oai.with_options(default_headers={"x-fake-scenario": "error:500"}).chat.completions.create(
                model=CHAT_MODEL, messages=MESSAGES
            )
        expected.append(("alice", 0, 0, 0))

        key = f"billing-leave-{next(_keys)}"
        body = {"model": CHAT_MODEL, "messages": MESSAGES, "max_tokens": 9, "stream": True}
        headers = {**auth(ALICE), "x-fake-key": key, "x-fake-scenario": "gate-after:3"}
        with (
            httpx.Client(base_url=url) as http,
            http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r,
        ):
            received = 0
            for line in r.iter_lines():
                received += line.startswith("data:")
                if received == 3:
                    break
        with httpx.Client(base_url=url, timeout=10) as http:
            deadline = time.monotonic() + 10
            while True:  # the gateway notices the client left on its own time; then the record is there
                alice = http.get("/hf/tasks/billing/usage", params={"limit": 100}, headers=auth(ALICE)).json()
                if alice["total_records"] == 4 or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            fake.release(key)
            bob = http.get("/hf/tasks/billing/usage", headers=auth(BOB)).json()
            other = http.get("/hf/tasks/billing/usage", params={"key_id": "bob"}, headers=auth(ALICE))
            priced = http.post(
                "/hf/tasks/billing/cost",
                json={
                    "requests": [
                        {"task": "chat-completion", "model": CHAT_MODEL, "input_tokens": 100, "output_tokens": 50}
                    ]
                },
                headers=auth(BOB),
            )

    assert other.status_code == 403 and other.json()["error_type"] == "permission"
    assert priced.json() == {
        "total_cost_nano_usd": 6500,
        "costs": [
            {"task": "chat-completion", "model": CHAT_MODEL, "input_tokens": 100, "output_tokens": 50,
             "cost_nano_usd": 6500, "cost_usd": 6.5e-06}
        ],
        "currency": "USD",
    }  # fmt: skip

    assert len(alice["records"]) == 4 and alice["total_records"] == 4
    left = alice["records"][0]  # newest first: the stream the client left
    assert left["output_tokens"] == 3 and left["input_tokens"] > 0  # an estimate: that stream reported nothing
    expected.append(("alice", left["input_tokens"], 3, cost(CHAT_MODEL, left["input_tokens"], 3)))

    def totals(key_id: str) -> tuple[int, int, int]:
        mine = [e for e in expected if e[0] == key_id]
        return sum(e[1] for e in mine), sum(e[2] for e in mine), sum(e[3] for e in mine)

    def billed(page: dict[str, Any]) -> tuple[int, int, int]:
        records = page["records"]
        return (
            sum(r["input_tokens"] for r in records),
            sum(r["output_tokens"] for r in records),
            sum(r["cost_nano_usd"] for r in records),
        )

    assert billed(alice) == totals("alice") and alice["total_cost_nano_usd"] == totals("alice")[2]
    assert billed(bob) == totals("bob") and bob["total_records"] == 1
    assert all(r["timestamp"].endswith("Z") and r["request_id"] for r in alice["records"] + bob["records"])

    assert settings.usage_db is not None
    with sqlite3.connect(settings.usage_db) as db:  # the lifespan ended: everything is in the file
        query = "SELECT count(*), count(DISTINCT request_id), sum(cost_nano_usd) FROM usage_records"
        rows = db.execute(query).fetchone()
    assert rows == (5, 5, totals("alice")[2] + totals("bob")[2])


def test_a_reused_request_id_is_billed_every_time(settings: Settings, fake: FakeHF) -> None:
    """The client chooses ``x-request-id``; reusing one must not make a second request free."""
    body = {"model": CHAT_MODEL, "messages": MESSAGES, "max_tokens": 2}
    with serve(create_app(settings)) as url, httpx.Client(base_url=url, timeout=10) as http:
        for _ in range(3):
            answer = http.post("/v1/chat/completions", json=body, headers={**auth(ALICE), "x-request-id": "same-id"})
            assert answer.status_code == 200 and answer.headers["x-request-id"] == "same-id"
        page = http.get("/hf/tasks/billing/usage", headers=auth(ALICE)).json()
    assert page["total_records"] == 3 and {r["request_id"] for r in page["records"]} == {"same-id"}
    assert page["total_cost_nano_usd"] == 3 * page["records"][0]["cost_nano_usd"] > 0
