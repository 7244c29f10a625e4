"""Translated streams are incremental: the client gets the first events while the upstream is still streaming.

The fake's ``gate`` holds its stream after the first event until ``fake.release(key)``; ``gate-after:N``
after N events, for translations that may hold one event back (a TGI stream's last token must carry
``generated_text`` and ``details``, so it waits for the next upstream event or the end). Every test checks
the *order*: a translated event arrived, the fake is still gated, then the release, then the rest. No timing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import openai
import pytest
from huggingface_hub import InferenceClient

from tests.e2e.clients import CHAT_MODEL, DEFAULT_MODEL, MESSAGES, PROMPT
from tests.e2e.test_dialect_matrix import CATALOG, only
from tests.upstream import FakeHF, expected_chat, expected_generation, token_texts

pytestmark = pytest.mark.socket


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The matrix's models file (``org/chat-writer`` is a chat-completion model)."""
    path = tmp_path_factory.mktemp("dialect-streams") / "models.toml"
    path.write_text(CATALOG)
    return str(path)


def gated(kind: str, key: str, directive: str = "gate", quirks: str | None = None) -> dict[str, str]:
    """Headers: only ``kind``'s routes, a gated stream under ``key``."""
    return only(kind, quirks, **{"x-fake-scenario": directive, "x-fake-key": key})


async def data_events(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The payloads of the ``data:`` lines, as they arrive."""
    async for line in lines:
        if line.startswith("data: "):
            yield line[len("data: ") :]


async def check_held(fake: FakeHF, key: str, sent: int) -> None:
    """The upstream stream of ``key`` is waiting at its gate after ``sent`` events, not finished."""
    await fake.await_for(lambda: fake.gated(key))
    state = fake.streams[key]
    assert state.events_sent == sent and not state.finished


# --- TGI stream over OpenAI completions ----------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("quirks", [None, "transformers"], ids=["hf", "transformers"])
async def test_generate_stream_over_completions_is_incremental(
    gateway: Callable[..., str], fake: FakeHF, quirks: str | None
) -> None:
    """``/generate_stream`` on an OpenAI-only upstream: token 1 arrives while the upstream holds after chunk 2."""
    key = f"tgi-over-completions-{quirks}"
    base = gateway("openai", default_model=DEFAULT_MODEL)
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 5}}
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as client,
        client.stream("POST", "/generate_stream", json=body, headers=gated("openai", key, "gate-after:2", quirks)) as r,
    ):
        assert r.status_code == 200
        events = data_events(r.aiter_lines())
        first = json.loads(await anext(events))
        await check_held(fake, key, 2)
        assert first["index"] == 1 and first["token"]["text"] == token_texts(PROMPT, 5)[0]
        fake.release(key)
        rest = [json.loads(payload) async for payload in events]
    assert [e["token"]["text"] for e in [first, *rest]] == token_texts(PROMPT, 5)
    assert rest[-1]["generated_text"] == expected_generation(PROMPT, 5) and fake.streams[key].finished
    assert fake.last().path == "/v1/completions"


def test_text_generation_iterator_over_completions_is_incremental(gateway: Callable[..., str], fake: FakeHF) -> None:
    """``InferenceClient.text_generation(stream=True)`` yields the first token before the upstream is released."""
    key = "hfh-tgi-over-completions"
    base = gateway("openai", default_model=DEFAULT_MODEL)
    with InferenceClient(base_url=base, headers=gated("openai", key, "gate-after:2")) as client:
        stream = iter(client.text_generation(PROMPT, max_new_tokens=4, stream=True))
        first = next(stream)
        fake.wait_for(lambda: fake.gated(key))
        assert first == token_texts(PROMPT, 4)[0] and not fake.streams[key].finished
        fake.release(key)
        rest = list(stream)
    assert [first, *rest] == token_texts(PROMPT, 4)


# --- OpenAI completions stream over TGI task streams ----------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["router", "serverless"])
async def test_completions_stream_over_task_stream_is_incremental(
    gateway: Callable[..., str], fake: FakeHF, kind: str
) -> None:
    """``/v1/completions`` on the HF task API: the first chunk arrives while the TGI stream is held (plain gate)."""
    key = f"completions-over-tgi-{kind}"
    base = gateway(kind, default_model=DEFAULT_MODEL)
    body = {"model": DEFAULT_MODEL, "prompt": PROMPT, "max_tokens": 4, "stream": True}
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as client,
        client.stream("POST", "/v1/completions", json=body, headers=gated(kind, key)) as r,
    ):
        events = data_events(r.aiter_lines())
        first = json.loads(await anext(events))
        await check_held(fake, key, 1)
        assert first["object"] == "text_completion" and first["choices"][0]["text"] == token_texts(PROMPT, 4)[0]
        fake.release(key)
        rest = [payload async for payload in events]
    assert rest[-1] == "[DONE]"
    texts = [first["choices"][0]["text"], *(json.loads(p)["choices"][0]["text"] for p in rest[:-1])]
    assert texts == token_texts(PROMPT, 4)


def test_openai_completions_iterator_over_task_stream_is_incremental(gateway: Callable[..., str], fake: FakeHF) -> None:
    """The openai client's iterator gets chunk 1 first, with the router's TGI stream still held."""
    key = "oai-completions-over-tgi"
    base = gateway("router", default_model=DEFAULT_MODEL) + "/v1"
    with openai.OpenAI(base_url=base, api_key="k", max_retries=0, default_headers=gated("router", key)) as client:
        stream = iter(client.completions.create(model=DEFAULT_MODEL, prompt=PROMPT, max_tokens=3, stream=True))
        first = next(stream)
        fake.wait_for(lambda: fake.gated(key))
        assert first.choices[0].text == token_texts(PROMPT, 3)[0] and not fake.streams[key].finished
        fake.release(key)
        rest = list(stream)
    assert [c.choices[0].text for c in [first, *rest]] == token_texts(PROMPT, 3)


# --- chat streams with transformers serve quirks ----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["openai", "router", "tgi", "serverless"])
async def test_chat_stream_with_quirks_is_incremental(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """A transformers-serve chat stream, rewritten chunk by chunk: the role chunk arrives while the fake is held."""
    key = f"chat-quirks-{kind}"
    base = gateway(kind, default_model=DEFAULT_MODEL)
    body = {"model": CHAT_MODEL, "messages": MESSAGES, "max_tokens": 3, "stream": True}
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as client,
        client.stream("POST", "/v1/chat/completions", json=body, headers=gated(kind, key, quirks="transformers")) as r,
    ):
        events = data_events(r.aiter_lines())
        first = json.loads(await anext(events))
        await check_held(fake, key, 1)
        assert first["model"] == CHAT_MODEL and first["system_fingerprint"] and first["usage"] is None
        assert first["choices"][0]["delta"]["role"] == "assistant"
        fake.release(key)
        rest = [payload async for payload in events]
    assert rest[-1] == "[DONE]"
    chunks = [json.loads(p) for p in rest[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == expected_chat(MESSAGES, 3)
    assert all(c["model"] == CHAT_MODEL for c in chunks) and all(c["choices"] for c in chunks)  # no usage asked


def test_openai_chat_iterator_with_quirks_is_incremental(gateway: Callable[..., str], fake: FakeHF) -> None:
    """The openai client's chat iterator yields the first chunk with the upstream still held."""
    key = "oai-chat-quirks"
    base = gateway("openai", default_model=DEFAULT_MODEL) + "/v1"
    headers = gated("openai", key, quirks="transformers")
    with openai.OpenAI(base_url=base, api_key="k", max_retries=0, default_headers=headers) as client:
        stream = iter(client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=2, stream=True))
        first = next(stream)
        fake.wait_for(lambda: fake.gated(key))
        assert first.model == CHAT_MODEL and not fake.streams[key].finished
        fake.release(key)
        rest = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in [first, *rest] if c.choices) == expected_chat(MESSAGES, 2)


# --- task text-generation through a chat model ------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("quirks", "after"), [(None, 2), ("transformers", 3)], ids=["hf", "transformers"])
async def test_task_text_generation_via_chat_is_incremental(
    gateway: Callable[..., str], fake: FakeHF, catalog_file: str, quirks: str | None, after: int
) -> None:
    """A catalog chat model asked for text-generation streams TGI events made from chat chunks, as they come.

    The translation holds one content delta back (the last event carries ``generated_text``); transformers
    serve's role-only first chunk carries none, hence one more event before the gate.
    """
    key = f"task-via-chat-{quirks}"
    base = gateway("router", models_file=catalog_file)
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 4}, "stream": True}
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as client,
        client.stream(
            "POST",
            "/models/org/chat-writer/pipeline/text-generation",
            json=body,
            headers=gated("router", key, f"gate-after:{after}", quirks),
        ) as r,
    ):
        assert r.status_code == 200
        events = data_events(r.aiter_lines())
        first = json.loads(await anext(events))
        await check_held(fake, key, after)
        fake.release(key)
        rest = [json.loads(payload) async for payload in events]
    sent = fake.last()
    assert sent.path == "/v1/chat/completions" and sent.json["model"] == "org/chat-writer"
    assert sent.json["messages"] == [{"role": "user", "content": PROMPT}]
    texts = [e["token"]["text"] for e in [first, *rest]]
    assert texts == token_texts(PROMPT, 4) and first["index"] == 1 and first["generated_text"] is None
    assert rest[-1]["generated_text"] == expected_generation(PROMPT, 4)


# --- leaving early ----------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_client_leaving_a_translated_stream_cancels_the_upstream(
    gateway: Callable[..., str], fake: FakeHF
) -> None:
    """Closing a translated stream while the upstream is held ends the upstream stream too."""
    key = "leave-translated"
    base = gateway("openai", default_model=DEFAULT_MODEL)
    body: dict[str, Any] = {"inputs": PROMPT, "parameters": {"max_new_tokens": 6}}
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as client,
        client.stream("POST", "/generate_stream", json=body, headers=gated("openai", key, "gate-after:2")) as r,
    ):
        events = data_events(r.aiter_lines())
        await anext(events)
        await check_held(fake, key, 2)
    await fake.await_for(lambda: fake.streams[key].cancelled)
    assert not fake.streams[key].finished and not fake.gated(key)
