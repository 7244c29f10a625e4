"""UsageMeter: one record per inference request, with the upstream's token counts and the price table's cost.

The layers run on a socket in front of the fake upstream, driven by the real clients. The ledger here
is a list (the durable ledger has its own tests): what matters is which records the meter makes and when.
Expected counts come from what the clients received (the ``usage`` the fake reported, the events read).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import httpx
import openai
import pytest
from huggingface_hub import InferenceClient

from hfasgi.app import layers
from hfasgi.auth import AuthConfig, MemoryKeyStore
from hfasgi.catalog import ModelCatalog
from hfasgi.forwarding.forwarder import ForwarderConfig
from hfasgi.forwarding.retry import RetryPolicy
from hfasgi.forwarding.upstream import Upstream, UpstreamKind
from hfasgi.stack import Lifespan, layer_resources, stack
from hfasgi.usage.meter import UsageMeterConfig
from hfasgi.usage.prices import Price, PriceTable
from hfasgi.usage.record import UsageRecord
from tests.e2e.clients import CHAT_MODEL, DEFAULT_MODEL, MESSAGES, PROMPT, chat_usage
from tests.servers import serve
from tests.upstream import FakeHF
from tests.upstream.fixtures import Upstream as FakeUpstream
from tests.upstream.shapes import count_tokens

KEY = "sk-meter-test-key-0123456789"
PRICES = PriceTable(
    {
        CHAT_MODEL: Price(input_nano_usd_per_token=3, output_nano_usd_per_token=7),
        DEFAULT_MODEL: Price(input_nano_usd_per_token=2, output_nano_usd_per_token=5, nano_usd_per_request=11),
    }
)
_keys = itertools.count(1)


@dataclass
class ListLedger:
    """Keeps the records in a list; ``query`` pages them as the durable ledger does."""

    records: list[UsageRecord] = field(default_factory=list)

    def submit(self, record: UsageRecord) -> None:
        self.records.append(record)

    async def flush(self) -> bool:
        return True

    async def query(self, key_id: str | None, limit: int, offset: int) -> Any:
        mine = [r for r in reversed(self.records) if r.key_id == key_id]
        total = sum(r.cost_nano_usd for r in mine)
        return SimpleNamespace(
            records=mine[offset : offset + limit], total_records=len(mine), total_cost_nano_usd=total
        )

    def one(self, request_id: str) -> UsageRecord:
        found = [r for r in self.records if r.request_id == request_id]
        assert len(found) == 1, (request_id, self.records)
        return found[0]


@contextmanager
def gateway(upstream: FakeUpstream, kind: str = "router") -> Iterator[tuple[str, ListLedger]]:
    """The layers with a meter, on a socket, in front of the fake as an upstream of ``kind``."""
    base = Upstream(url=upstream.url, kind=UpstreamKind(kind), token="hf_server")
    catalog = ModelCatalog.single(base, default_model=DEFAULT_MODEL)
    forwarder = ForwarderConfig(catalog=catalog, retry=RetryPolicy(attempts=1))
    ledger = ListLedger()
    auth = AuthConfig(store=MemoryKeyStore.from_keys([f"alice={KEY}"]), catalog=catalog)
    found = layers(forwarder, auth=auth, meter=UsageMeterConfig(ledger=ledger, prices=PRICES))

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("every request is the gateway's")

    app = Lifespan(stack(inner, *found), resources=layer_resources(found))
    with serve(app) as url:
        yield url, ledger


def ids(responses: list[httpx.Response]) -> Any:
    def hook(response: httpx.Response) -> None:
        responses.append(response)

    return {"response": [hook]}


def test_every_request_has_one_record_with_the_upstreams_counts_and_its_cost(
    upstream: FakeUpstream, fake: FakeHF
) -> None:
    seen: list[httpx.Response] = []
    with gateway(upstream) as (url, ledger):
        http = httpx.Client(base_url=url, event_hooks=ids(seen))
        oai = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, http_client=http)
        plain = oai.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=3)
        assert plain.usage is not None
        with oai.chat.completions.create(
            model=CHAT_MODEL, messages=MESSAGES, max_tokens=4, stream=True, stream_options={"include_usage": True}
        ) as stream:
            chunks = list(stream)
        streamed_usage = chunks[-1].usage
        assert streamed_usage is not None
        with pytest.raises(openai.InternalServerError):
            oai.with_options(default_headers={"x-fake-scenario": "error:500"}).chat.completions.create(
                model=CHAT_MODEL, messages=MESSAGES
            )
        http.close()
        records = list(ledger.records)

    assert len(records) == 3 == len(seen)
    first, second, failed = (ledger.one(r.headers["x-request-id"]) for r in seen)
    assert (first.input_tokens, first.output_tokens) == (plain.usage.prompt_tokens, plain.usage.completion_tokens)
    assert first.cost_nano_usd == 3 * first.input_tokens + 7 * first.output_tokens
    assert (first.key_id, first.model, first.route, first.status, first.stream) == (
        "alice",
        CHAT_MODEL,
        "chat",
        200,
        False,
    )
    assert (second.input_tokens, second.output_tokens) == (
        streamed_usage.prompt_tokens,
        streamed_usage.completion_tokens,
    )
    assert second.stream and second.output_tokens == 4 and second.cost_nano_usd == 3 * second.input_tokens + 28
    assert (failed.status, failed.input_tokens, failed.output_tokens, failed.cost_nano_usd) == (500, 0, 0, 0)
    assert first.task == "chat-completion" and first.upstream == "default" and not first.cache_hit


def test_translated_and_tgi_streams_are_counted(upstream: FakeUpstream, fake: FakeHF) -> None:
    """TGI clients: over an OpenAI-style upstream (translated) and a TGI stream with no usage at all."""
    with gateway(upstream, "openai") as (url, ledger):
        client = InferenceClient(base_url=url, api_key=KEY)
        out = client.text_generation(PROMPT, max_new_tokens=3, details=True)
        (translated,) = ledger.records
    assert out.details is not None and out.details.generated_tokens == 3
    assert (translated.input_tokens, translated.output_tokens) == (count_tokens(PROMPT), 3)
    assert translated.route == "compat_generate" and translated.model == DEFAULT_MODEL
    assert translated.cost_nano_usd == 11 + 2 * count_tokens(PROMPT) + 5 * 3

    with gateway(upstream, "tgi") as (url, ledger):
        client = InferenceClient(base_url=url, api_key=KEY)
        tokens = list(client.text_generation(PROMPT, max_new_tokens=5, stream=True))
        (streamed,) = ledger.records
    assert len(tokens) == 5
    assert streamed.stream and streamed.output_tokens == 5 and streamed.status == 200


def test_a_client_that_leaves_mid_stream_is_charged_for_what_it_received(upstream: FakeUpstream, fake: FakeHF) -> None:
    key = f"meter-leave-{next(_keys)}"
    with gateway(upstream, "tgi") as (url, ledger):
        headers = {"authorization": f"Bearer {KEY}", "x-fake-key": key, "x-fake-scenario": "gate-after:2"}
        body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 8}}
        with (
            httpx.Client(base_url=url) as http,
            http.stream("POST", "/generate_stream", json=body, headers=headers) as r,
        ):
            events = []
            for line in r.iter_lines():
                if line.startswith("data:"):
                    events.append(line)
                if len(events) == 2:
                    break
            request_id = r.headers["x-request-id"]
        deadline = time.monotonic() + 10
        while not ledger.records and time.monotonic() < deadline:
            time.sleep(0.01)  # the gateway notices the disconnect on its own time
        fake.release(key)
        record = ledger.one(request_id)
    assert record.stream and record.status == 200 and record.output_tokens == 2
    assert record.input_tokens > 0  # TGI streams without details report no prompt: estimated
    assert record.cost_nano_usd == 11 + 2 * record.input_tokens + 5 * 2


def test_refused_and_catalog_requests_are_not_metered(upstream: FakeUpstream, fake: FakeHF) -> None:
    with gateway(upstream) as (url, ledger):
        with httpx.Client(base_url=url) as http:
            assert (
                http.post("/v1/chat/completions", json={"model": CHAT_MODEL, "messages": MESSAGES}).status_code == 401
            )
            assert http.get("/v1/models", headers={"authorization": f"Bearer {KEY}"}).status_code == 200
        assert ledger.records == []


def test_the_record_exists_before_the_client_has_the_last_byte(upstream: FakeUpstream, fake: FakeHF) -> None:
    with gateway(upstream) as (url, ledger):
        client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
        for n in range(1, 6):
            response = client.chat.completions.with_raw_response.create(
                model=CHAT_MODEL, messages=MESSAGES, max_tokens=n
            )
            assert response.parse().usage is not None
            # no waiting: the record was submitted before the answer's final body message was sent
            assert ledger.one(response.headers["x-request-id"]).output_tokens == n == chat_usage(n)["completion_tokens"]
