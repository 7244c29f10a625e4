"""``text_generation`` in the TGI dialect through the gateway (hf_api.md §3, §5.2, §8.12).

HFH posts ``{"inputs", "parameters"[, "stream"]}`` to the base URL exactly: the gateway root on a ``tgi``
upstream (or with a ``default_model`` elsewhere), or ``…/models/{id}`` on router and serverless upstreams.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from huggingface_hub import AsyncInferenceClient, InferenceClient

from tests.e2e.clients import DEFAULT_MODEL, PROMPT, like
from tests.upstream import FakeHF, expected_generation, token_texts
from tests.upstream.shapes import tgi_generate_response, tgi_stream_events

pytestmark = pytest.mark.socket


@dataclass(frozen=True)
class Target:
    """Where a text-generation client points, and where the upstream should receive the request."""

    kind: str
    path: str
    upstream_path: str
    settings: dict[str, Any] = field(default_factory=dict)

    def url(self, gateway: Callable[..., str]) -> str:
        return gateway(self.kind, **self.settings) + self.path

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.path or '/'}"


TGI_MODEL = "fake/text-generation"
TARGETS = [
    Target("tgi", "", "/"),
    Target("tgi", f"/models/{TGI_MODEL}", "/"),
    Target("router", f"/models/{TGI_MODEL}", f"/hf-inference/models/{TGI_MODEL}"),
    Target("serverless", f"/models/{TGI_MODEL}", f"/models/{TGI_MODEL}"),
    Target("router", "", f"/hf-inference/models/{DEFAULT_MODEL}", {"default_model": DEFAULT_MODEL}),
    Target("serverless", "", f"/models/{DEFAULT_MODEL}", {"default_model": DEFAULT_MODEL}),
]
targets = pytest.mark.parametrize("target", TARGETS, ids=[t.id for t in TARGETS])


@targets
def test_text_generation(gateway: Callable[..., str], fake: FakeHF, target: Target) -> None:
    """Plain generation returns the generated text (with the prompt only when ``return_full_text``)."""
    with InferenceClient(base_url=target.url(gateway)) as client:
        plain = client.text_generation(PROMPT)
        full = client.text_generation(PROMPT, max_new_tokens=3, return_full_text=True)
    assert plain == expected_generation(PROMPT)
    assert full == PROMPT + expected_generation(PROMPT, 3)
    sent = fake.last()
    assert sent.path == target.upstream_path
    assert sent.json == {"inputs": PROMPT, "parameters": {"max_new_tokens": 3, "return_full_text": True}}


@targets
def test_text_generation_details(gateway: Callable[..., str], fake: FakeHF, target: Target) -> None:
    """``details=True`` gives a TextGenerationOutput with finish reason, seed, tokens and (asked) prefill."""
    with InferenceClient(base_url=target.url(gateway)) as client:
        out = client.text_generation(PROMPT, details=True, decoder_input_details=True, max_new_tokens=4, seed=7)
        eos = client.text_generation(PROMPT, details=True)
    expected = tgi_generate_response(PROMPT, 4, details=True, decoder_input_details=True, seed=7)
    assert like(out, expected) == expected
    assert out.details is not None and [t.text for t in out.details.tokens] == token_texts(PROMPT, 4)
    expected_eos = tgi_generate_response(PROMPT, 8, details=True, finish_reason="eos_token")
    assert like(eos, expected_eos) == expected_eos
    assert fake.last().path == target.upstream_path and fake.last().json == {
        "inputs": PROMPT,
        "parameters": {"details": True},
    }


@targets
def test_text_generation_stream(gateway: Callable[..., str], fake: FakeHF, target: Target) -> None:
    """``stream=True`` yields the token texts, one per event, and nothing after the last token."""
    with InferenceClient(base_url=target.url(gateway)) as client:
        texts = list(client.text_generation(PROMPT, max_new_tokens=3, stream=True))
    assert texts == token_texts(PROMPT, 3)
    sent = fake.last()
    assert sent.path == target.upstream_path and sent.json["stream"] is True


@targets
def test_text_generation_stream_details(gateway: Callable[..., str], fake: FakeHF, target: Target) -> None:
    """``stream=True, details=True`` yields full events; the last carries ``generated_text`` and ``details``."""
    with InferenceClient(base_url=target.url(gateway)) as client:
        events = list(client.text_generation(PROMPT, max_new_tokens=5, seed=3, stream=True, details=True))
    expected = tgi_stream_events(PROMPT, 5, details=True, seed=3)
    assert like(events, expected) == expected
    assert [e.generated_text for e in events[:-1]] == [None] * 4 and [e.details for e in events[:-1]] == [None] * 4
    assert events[-1].generated_text == expected_generation(PROMPT, 5)
    assert events[-1].details is not None and events[-1].details.input_length == 5


@pytest.mark.anyio
@targets
async def test_async_text_generation(gateway: Callable[..., str], fake: FakeHF, target: Target) -> None:
    """The async client: plain, details, and a detailed stream, as the sync client gets them."""
    async with AsyncInferenceClient(base_url=target.url(gateway)) as client:
        plain = await client.text_generation(PROMPT, max_new_tokens=2)
        detailed = await client.text_generation(PROMPT, max_new_tokens=2, details=True)
        stream = await client.text_generation(PROMPT, max_new_tokens=4, stream=True, details=True)
        events = [event async for event in stream]
    assert plain == expected_generation(PROMPT, 2)
    expected = tgi_generate_response(PROMPT, 2, details=True)
    assert like(detailed, expected) == expected
    expected_events = tgi_stream_events(PROMPT, 4, details=True)
    assert like(events, expected_events) == expected_events
    assert fake.last().path == target.upstream_path


def test_generate_routes_of_a_tgi_upstream(gateway: Callable[..., str], fake: FakeHF) -> None:
    """A base URL of ``…/generate`` / ``…/generate_stream`` reaches TGI's own routes (an object, an SSE)."""
    base = gateway("tgi")
    with InferenceClient(base_url=base + "/generate") as client:
        out = client.text_generation(PROMPT, max_new_tokens=3, details=True)
    expected = tgi_generate_response(PROMPT, 3, details=True)
    assert like(out, expected) == expected and fake.last().path == "/generate"
    with InferenceClient(base_url=base + "/generate_stream") as client:
        events = list(client.text_generation(PROMPT, max_new_tokens=3, stream=True, details=True))
    expected_events = tgi_stream_events(PROMPT, 3, details=True)
    assert like(events, expected_events) == expected_events and fake.last().path == "/generate_stream"
