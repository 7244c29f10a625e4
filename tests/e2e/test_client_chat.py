"""``InferenceClient`` / ``AsyncInferenceClient`` chat through the gateway, on every upstream kind.

The client is configured as a user would configure it for Hugging Face, with only the base URL changed:
the gateway root, ``…/v1``, or the model-scoped ``…/models/{id}`` (hf_api.md §5.1, §8.8).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from huggingface_hub import AsyncInferenceClient, InferenceClient

from tests.e2e.clients import CHAT_MODEL, DEFAULT_MODEL, KINDS, MESSAGES, chat_path, chat_usage, usage_of
from tests.upstream import FakeHF, expected_chat, messages_text, token_texts
from tests.upstream.shapes import SYSTEM_FINGERPRINT

pytestmark = pytest.mark.socket

FORMS = {"root": "", "v1": "/v1", "model-scoped": f"/models/{CHAT_MODEL}"}
"""The base URLs a user may configure, relative to the gateway."""


def client_for(gateway: Callable[..., str], kind: str, form: str) -> tuple[str, str | None]:
    """The base URL for ``form`` and the ``model=`` argument that goes with it (none when the URL names it)."""
    return gateway(kind) + FORMS[form], None if form == "model-scoped" else CHAT_MODEL


def check_completion(out: Any, model: str, n: int | None) -> None:
    """A non-stream chat answer is the upstream's, field for field (``n`` tokens asked, or the default)."""
    choice = out.choices[0]
    assert len(out.choices) == 1 and choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == (expected_chat(MESSAGES, n) if n else expected_chat(MESSAGES))
    assert choice.finish_reason == ("length" if n else "stop")
    assert out.model == model and out.object == "chat.completion" and out.id.startswith("chatcmpl-")
    assert out.system_fingerprint == SYSTEM_FINGERPRINT and out.created > 0
    assert usage_of(out.usage) == chat_usage(n or 8)


def check_stream(chunks: list[Any], model: str, n: int, include_usage: bool) -> None:
    """A streamed chat: one chunk per token, then the usage-only chunk exactly when it was asked for."""
    content = [c for c in chunks if c.choices]
    assert [c.choices[0].delta.content for c in content] == token_texts(messages_text(MESSAGES), n)
    assert content[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in content] == [None] * (n - 1) + ["length"]
    assert all(c.model == model and c.object == "chat.completion.chunk" for c in chunks)
    assert all(c.usage is None for c in content)
    if include_usage:
        assert len(chunks) == n + 1 and chunks[-1].choices == []
        assert usage_of(chunks[-1].usage) == chat_usage(n)
    else:
        assert len(chunks) == n


# --- InferenceClient ---------------------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", KINDS)
def test_chat_completion(gateway: Callable[..., str], fake: FakeHF, kind: str, form: str) -> None:
    """Non-stream chat: the upstream's answer reaches the client intact, from the right upstream route."""
    base, model = client_for(gateway, kind, form)
    with InferenceClient(base_url=base) as client:
        out = client.chat_completion(MESSAGES, model=model, max_tokens=5)
    check_completion(out, CHAT_MODEL, 5)
    sent = fake.last()
    assert sent.path == chat_path(kind, CHAT_MODEL)
    assert sent.json["model"] == CHAT_MODEL and sent.json["messages"] == MESSAGES and sent.json["max_tokens"] == 5


@pytest.mark.parametrize("include_usage", [True, False], ids=["usage", "no-usage"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", KINDS)
def test_chat_completion_stream(
    gateway: Callable[..., str], fake: FakeHF, kind: str, form: str, include_usage: bool
) -> None:
    """Streamed chat yields every token chunk; ``include_usage`` adds the usage-only chunk, its absence none."""
    base, model = client_for(gateway, kind, form)
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    with InferenceClient(base_url=base) as client:
        chunks = list(client.chat_completion(MESSAGES, model=model, max_tokens=4, stream=True, **options))
    check_stream(chunks, CHAT_MODEL, 4, include_usage)
    assert fake.last().path == chat_path(kind, CHAT_MODEL) and fake.last().json["stream"] is True


@pytest.mark.parametrize("form", ["root", "v1"])
@pytest.mark.parametrize("kind", KINDS)
def test_chat_without_model_uses_the_default_model(
    gateway: Callable[..., str], fake: FakeHF, kind: str, form: str
) -> None:
    """With no ``model=``, HFH sends ``"model": "dummy"``; the gateway serves its ``default_model`` instead."""
    with InferenceClient(base_url=gateway(kind, default_model=DEFAULT_MODEL) + FORMS[form]) as client:
        out = client.chat_completion(MESSAGES)
        chunks = list(client.chat_completion(MESSAGES, max_tokens=3, stream=True))
    check_completion(out, DEFAULT_MODEL, None)
    check_stream(chunks, DEFAULT_MODEL, 3, include_usage=False)
    sent = fake.last()
    assert sent.path == chat_path(kind, DEFAULT_MODEL) and sent.json["model"] == DEFAULT_MODEL


def test_model_scoped_url_wins_over_the_model_argument(gateway: Callable[..., str], fake: FakeHF) -> None:
    """``base_url=…/models/{id}`` names the model: a different ``model=`` in the body does not reroute it."""
    with InferenceClient(base_url=gateway("serverless") + FORMS["model-scoped"]) as client:
        out = client.chat_completion(MESSAGES, model="other/model", max_tokens=2)
    check_completion(out, CHAT_MODEL, 2)
    assert fake.last().path == chat_path("serverless", CHAT_MODEL)


# --- AsyncInferenceClient ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", KINDS)
async def test_async_chat_completion(gateway: Callable[..., str], fake: FakeHF, kind: str, form: str) -> None:
    """The async client gets the same non-stream answer as the sync one."""
    base, model = client_for(gateway, kind, form)
    async with AsyncInferenceClient(base_url=base) as client:
        out = await client.chat_completion(MESSAGES, model=model, max_tokens=6)
    check_completion(out, CHAT_MODEL, 6)
    assert fake.last().path == chat_path(kind, CHAT_MODEL)


@pytest.mark.anyio
@pytest.mark.parametrize("include_usage", [True, False], ids=["usage", "no-usage"])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", KINDS)
async def test_async_chat_completion_stream(
    gateway: Callable[..., str], fake: FakeHF, kind: str, form: str, include_usage: bool
) -> None:
    """The async stream yields the same chunks, usage-only chunk included exactly when asked for."""
    base, model = client_for(gateway, kind, form)
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    async with AsyncInferenceClient(base_url=base) as client:
        stream = await client.chat_completion(MESSAGES, model=model, max_tokens=3, stream=True, **options)
        chunks = [chunk async for chunk in stream]
    check_stream(chunks, CHAT_MODEL, 3, include_usage)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_async_chat_without_model_uses_the_default_model(
    gateway: Callable[..., str], fake: FakeHF, kind: str
) -> None:
    """The async client's ``"dummy"`` model is the gateway's default model too."""
    async with AsyncInferenceClient(base_url=gateway(kind, default_model=DEFAULT_MODEL)) as client:
        out = await client.chat_completion(MESSAGES, max_tokens=2)
    check_completion(out, DEFAULT_MODEL, 2)
    assert fake.last().json["model"] == DEFAULT_MODEL
