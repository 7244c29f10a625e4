"""See everything, leak nothing: a mixed workload through the reference app, then its spans, /metrics and audit log.

The app is ``create_app`` with keys, a rate limit, an audit log file and console span export
(``OTEL_TRACES_EXPORTER=console``), served on a socket in front of the fake upstream; the real clients
drive it. Its lifespan ends inside the test, so every span and audit line is flushed before the checks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from huggingface_hub import InferenceClient
from prometheus_client.parser import text_string_to_metric_families

from hfasgi.app import create_app
from hfasgi.settings import Settings
from tests.e2e.clients import CHAT_MODEL, MESSAGES, PROMPT, chat_usage
from tests.servers import serve
from tests.upstream import FakeHF
from tests.upstream.fixtures import Upstream

SERVER_TOKEN = "hf_observed_server_token_never_shown"
ALICE = "hfasgi_alice_key_never_shown_0123456789"
BOB = "hfasgi_bob_key_never_shown_9876543210"
STRANGER = "hfasgi_stranger_key_never_shown_5555"
SECRETS = (SERVER_TOKEN, ALICE, BOB, STRANGER)


@pytest.fixture
def settings(upstream: Upstream, fake: FakeHF, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Keys, a rate limit, an audit log file and console span export (``OTEL_TRACES_EXPORTER=console``)."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "hfasgi-observed")
    return Settings(
        upstream_url=upstream.url,
        upstream_kind="router",
        hf_token=SERVER_TOKEN,
        api_keys=f"alice={ALICE},bob={BOB}",
        rate_limit="1000/minute",
        audit_log=str(tmp_path / "audit.jsonl"),
        default_model="fake/text-generation",
        health_interval=0.2,
    )


def workload(url: str) -> tuple[list[tuple[str, int]], str, str]:
    """A mixed workload: (request id, status) of each request, the /metrics text and /health/upstream text."""
    seen: list[tuple[str, int]] = []

    def hook(response: httpx.Response) -> None:
        if response.url.path != "/metrics":
            seen.append((response.headers["x-request-id"], response.status_code))

    http = httpx.Client(base_url=url, event_hooks={"response": [hook]})
    oai = openai.OpenAI(base_url=url + "/v1", api_key=ALICE, max_retries=0, http_client=http)
    out = oai.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=3)
    assert out.usage is not None and out.usage.total_tokens == chat_usage(3)["total_tokens"]
    with oai.chat.completions.create(
        model=CHAT_MODEL, messages=MESSAGES, max_tokens=4, stream=True, stream_options={"include_usage": True}
    ) as stream:
        assert [c for c in stream if not c.choices][0].usage is not None
    hf = InferenceClient(base_url=url, api_key=BOB)
    assert hf.text_generation(PROMPT, max_new_tokens=2)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key=STRANGER, max_retries=0, http_client=http).chat.completions.create(
            model=CHAT_MODEL, messages=MESSAGES
        )
    bad = http.post("/v1/chat/completions", json={"model": CHAT_MODEL, "messages": "not a list"},
                    headers={"authorization": f"Bearer {ALICE}"})  # fmt: skip
    assert bad.status_code == 422
    failed = http.post(
        "/v1/chat/completions",
        json={"model": CHAT_MODEL, "messages": MESSAGES},
        headers={"authorization": f"Bearer {ALICE}", "x-fake-scenario": "error:500"},
    )
    assert failed.status_code == 500
    metrics = http.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    upstream_health = http.get("/health/upstream").text
    http.close()
    return seen, metrics.text, upstream_health


def samples(text: str) -> dict[str, list[Any]]:
    """Prometheus samples by family name (parsed with prometheus_client's own parser)."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def test_every_request_is_audited_counted_and_nothing_secret_is_written(
    settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    with serve(create_app(settings)) as url:  # leaving the block ends the lifespan: spans and lines flushed
        seen, metrics_text, upstream_health = workload(url)
    assert settings.audit_log is not None
    audit_path = Path(settings.audit_log)
    captured = capfd.readouterr()
    lines = [json.loads(line) for line in audit_path.read_text().splitlines()]
    assert len(seen) == 6 and len(lines) >= 7  # the InferenceClient call is not in `seen`
    by_id = {line["request_id"]: line for line in lines}
    for request_id, status in seen:
        assert by_id[request_id]["status"] == status, by_id[request_id]
    chat = [line for line in lines if line["route"] == "chat" and line["status"] == 200]
    assert len(chat) == 2 and {line["key_id"] for line in chat} == {"alice"}
    assert all(line["model"] == CHAT_MODEL and line["upstream_status"] == 200 for line in chat)
    assert sorted(line["output_tokens"] for line in chat) == [3, 4]
    assert [line["stream"] for line in sorted(chat, key=lambda x: x["output_tokens"])] == [False, True]
    generated = [line for line in lines if line["route"] == "compat_generate"]
    assert len(generated) == 1 and generated[0]["key_id"] == "bob" and generated[0]["status"] == 200
    refused = [line for line in lines if line["status"] == 401]
    assert len(refused) == 1 and refused[0]["key_id"] is None and refused[0]["error_type"]
    failed = [line for line in lines if line["status"] == 500]
    assert len(failed) == 1 and failed[0]["upstream_status"] == 500

    families = samples(metrics_text)
    requests = next(v for k, v in families.items() if k.startswith("hfasgi_requests"))
    counted = sum(s.value for s in requests if s.name.endswith("_total") and s.labels.get("route") == "chat")
    assert counted == len([line for line in lines if line["route"] == "chat"])
    spans = [json.loads(block) for block in _span_blocks(captured.out)]
    assert {span["context"]["trace_id"] for span in spans}  # the console exporter printed the spans
    assert any(span["kind"] == "SpanKind.CLIENT" for span in spans)

    everything = "\n".join([captured.out, captured.err, audit_path.read_text(), metrics_text, upstream_health])
    for secret in SECRETS:
        assert secret not in everything


def _span_blocks(text: str) -> list[str]:
    """The JSON objects the console span exporter printed (one per span, pretty-printed)."""
    blocks, depth, start = [], 0, -1
    for i, char in enumerate(text):
        if char == "{":
            if depth == 0:
                start = i
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                blocks.append(text[start : i + 1])
    return [b for b in blocks if '"trace_id"' in b]
