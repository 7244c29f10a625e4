"""The ``openai`` client (``OpenAI`` / ``AsyncOpenAI``) pointed at ``f"{gateway}/v1"``.

Chat works on every upstream kind; legacy completions where the upstream speaks them (TGI, OpenAI-compatible
servers); embeddings on OpenAI-compatible servers (the client asks for base64 by default); ``/v1/models``
from the upstream, or from the gateway's catalog for serverless upstreams.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import openai
import pytest

from tests.e2e.clients import CHAT_MODEL, DEFAULT_MODEL, KINDS, MESSAGES, chat_path, chat_usage, usage_of
from tests.e2e.conftest import CLIENT_KEY, SERVER_TOKEN, Upstream
from tests.upstream import FakeHF, expected_chat, expected_embedding, expected_generation, messages_text, token_texts
from tests.upstream.shapes import SYSTEM_FINGERPRINT, count_tokens, usage

pytestmark = pytest.mark.socket

PROMPTS = ["Once upon a time", "In a galaxy"]
COMPLETION_KINDS = ("tgi", "openai")
"""The upstream kinds that serve ``/v1/completions``."""


def client(gateway: Callable[..., str], kind: str, **settings: Any) -> openai.OpenAI:
    """An OpenAI client on the gateway's ``/v1`` (no retries: every request is seen once upstream)."""
    return openai.OpenAI(base_url=gateway(kind, **settings) + "/v1", api_key=CLIENT_KEY, max_retries=0)


def async_client(gateway: Callable[..., str], kind: str) -> openai.AsyncOpenAI:
    """The async twin of :func:`client`."""
    return openai.AsyncOpenAI(base_url=gateway(kind) + "/v1", api_key=CLIENT_KEY, max_retries=0)


def check_chat(out: Any, model: str, n: int) -> None:
    """A non-stream chat completion as the upstream made it."""
    assert out.model == model and out.object == "chat.completion" and out.id.startswith("chatcmpl-")
    assert out.system_fingerprint == SYSTEM_FINGERPRINT
    assert [(c.index, c.message.role, c.message.content, c.finish_reason) for c in out.choices] == [
        (0, "assistant", expected_chat(MESSAGES, n), "length")
    ]
    assert usage_of(out.usage) == chat_usage(n)


def check_chat_stream(chunks: list[Any], n: int, include_usage: bool) -> None:
    """Token chunks, then the usage-only chunk exactly when ``include_usage`` was asked for."""
    content = [c for c in chunks if c.choices]
    assert [c.choices[0].delta.content for c in content] == token_texts(messages_text(MESSAGES), n)
    assert content[-1].choices[0].finish_reason == "length" and all(c.usage is None for c in content)
    if include_usage:
        assert len(chunks) == n + 1 and chunks[-1].choices == [] and usage_of(chunks[-1].usage) == chat_usage(n)
    else:
        assert len(chunks) == n


# --- chat -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_chat(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """Non-stream chat; the client's key stays at the gateway, the gateway's token goes upstream."""
    with client(gateway, kind) as oai:
        out = oai.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=4)
    check_chat(out, CHAT_MODEL, 4)
    sent = fake.last()
    assert sent.path == chat_path(kind, CHAT_MODEL) and sent.json["messages"] == MESSAGES
    assert sent.headers["authorization"] == f"Bearer {SERVER_TOKEN}"


@pytest.mark.parametrize("include_usage", [True, False], ids=["usage", "no-usage"])
@pytest.mark.parametrize("kind", KINDS)
def test_chat_stream(gateway: Callable[..., str], fake: FakeHF, kind: str, include_usage: bool) -> None:
    """Streamed chat ends cleanly (``[DONE]``), with the usage-only chunk only when asked for."""
    options: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    with client(gateway, kind) as oai:
        chunks = list(
            oai.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=3, stream=True, **options)
        )
    check_chat_stream(chunks, 3, include_usage)
    assert all(c.model == CHAT_MODEL for c in chunks) and fake.last().path == chat_path(kind, CHAT_MODEL)


@pytest.mark.parametrize("kind", KINDS)
def test_chat_placeholder_model_is_the_default_model(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """``model="tgi"`` (TGI's docs) means the gateway's default model."""
    with client(gateway, kind, default_model=DEFAULT_MODEL) as oai:
        out = oai.chat.completions.create(model="tgi", messages=MESSAGES, max_tokens=2)
    check_chat(out, DEFAULT_MODEL, 2)
    assert fake.last().json["model"] == DEFAULT_MODEL


def test_chat_stream_from_transformers_serve(gateway: Callable[..., str], fake: FakeHF) -> None:
    """``transformers serve`` ends streams without ``[DONE]``, answers ``<id>@main`` and always puts usage on the
    last chunk: the client sees the id it asked for, and no usage it did not ask for (``include_usage``)."""
    with (
        client(gateway, "openai") as oai,
        oai.chat.completions.create(
            model=CHAT_MODEL,
            messages=MESSAGES,
            max_tokens=3,
            stream=True,
            extra_headers={"x-fake-quirks": "transformers"},
        ) as stream,
    ):
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected_chat(MESSAGES, 3)
    assert chunks[0].choices[0].delta.role == "assistant" and all(c.model == CHAT_MODEL for c in chunks)
    assert all(c.usage is None for c in chunks) and chunks[-1].choices[0].finish_reason == "length"


# --- legacy completions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", COMPLETION_KINDS)
def test_completions(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """``/v1/completions`` with several prompts: one choice per prompt, usage over all of them."""
    with client(gateway, kind) as oai:
        out = oai.completions.create(model=CHAT_MODEL, prompt=PROMPTS, max_tokens=2)
    assert out.object == "text_completion" and out.model == CHAT_MODEL
    assert [(c.index, c.text, c.finish_reason) for c in out.choices] == [
        (i, expected_generation(p, 2), "length") for i, p in enumerate(PROMPTS)
    ]
    assert usage_of(out.usage) == usage(sum(count_tokens(p) for p in PROMPTS), 4)
    assert fake.last().path == "/v1/completions" and fake.last().json["prompt"] == PROMPTS


@pytest.mark.parametrize("kind", COMPLETION_KINDS)
def test_completions_stream(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """Streamed completions yield the token texts of each prompt, by choice index."""
    with client(gateway, kind) as oai:
        chunks = list(oai.completions.create(model=CHAT_MODEL, prompt=PROMPTS, max_tokens=3, stream=True))
    for index, prompt in enumerate(PROMPTS):
        assert [c.choices[0].text for c in chunks if c.choices[0].index == index] == token_texts(prompt, 3)
    assert len(chunks) == 6 and fake.last().json["stream"] is True


# --- embeddings -----------------------------------------------------------------------------------------


def test_embeddings_base64_default(gateway: Callable[..., str], fake: FakeHF) -> None:
    """The client asks for base64 by default and decodes it: the floats are the upstream's."""
    texts = ["first sentence", "a second, longer sentence"]
    with client(gateway, "openai") as oai:
        out = oai.embeddings.create(model="org/embedder", input=texts, dimensions=4)
    assert [d.index for d in out.data] == [0, 1] and out.model == "org/embedder"
    for item, text in zip(out.data, texts, strict=True):
        assert np.allclose(item.embedding, expected_embedding(text, 4))
    tokens = sum(count_tokens(t) for t in texts)
    assert (out.usage.prompt_tokens, out.usage.total_tokens) == (tokens, tokens)
    sent = fake.last()
    assert sent.path == "/v1/embeddings"
    assert sent.json == {"model": "org/embedder", "input": texts, "dimensions": 4, "encoding_format": "base64"}


def test_embeddings_float(gateway: Callable[..., str], fake: FakeHF) -> None:
    """``encoding_format="float"`` gives plain float lists, exactly."""
    with client(gateway, "openai") as oai:
        out = oai.embeddings.create(model="org/embedder", input="one text", encoding_format="float")
    assert out.data[0].embedding == expected_embedding("one text")
    assert fake.last().json == {"model": "org/embedder", "input": "one text", "encoding_format": "float"}


def test_embeddings_base64_bytes_cross_unchanged(gateway: Callable[..., str], fake: FakeHF) -> None:
    """The base64 payload the client decodes is the packed little-endian float32 the upstream sent."""
    with client(gateway, "openai") as oai:
        raw = oai.embeddings.with_raw_response.create(
            model="org/embedder", input="bytes check", encoding_format="base64"
        )
    payload = raw.http_response.json()["data"][0]["embedding"]
    vector = expected_embedding("bytes check")
    assert payload == base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


# --- models ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["router", "tgi", "openai"])
def test_models_list_is_the_upstreams(gateway: Callable[..., str], fake: FakeHF, upstream: Upstream, kind: str) -> None:
    """``models.list()`` through the gateway lists what the upstream lists; ``retrieve`` takes ids with a slash."""
    with openai.OpenAI(base_url=upstream.url + "/v1", api_key="direct", max_retries=0) as direct:
        listed = [m.model_dump() for m in direct.models.list()]
    with client(gateway, kind) as oai:
        models = [m.model_dump() for m in oai.models.list()]
        one = oai.models.retrieve("fake/summarization")
    assert models == listed and len(models) > 1
    assert (one.id, one.object, one.owned_by) == ("fake/summarization", "model", "fake")
    assert fake.last().path == "/v1/models/fake/summarization"


def test_models_list_of_a_serverless_upstream_is_the_catalog(gateway: Callable[..., str], fake: FakeHF) -> None:
    """The serverless API has no ``/v1/models``: the gateway lists its own (default) model."""
    with client(gateway, "serverless", default_model=DEFAULT_MODEL) as oai:
        models = list(oai.models.list())
    assert [(m.id, m.object) for m in models] == [(DEFAULT_MODEL, "model")] and fake.requests == []


# --- AsyncOpenAI ----------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_async_chat(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """``AsyncOpenAI`` chat, plain and streamed with usage, as the sync client gets it."""
    async with async_client(gateway, kind) as oai:
        out = await oai.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=5)
        stream = await oai.chat.completions.create(
            model=CHAT_MODEL, messages=MESSAGES, max_tokens=2, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    check_chat(out, CHAT_MODEL, 5)
    check_chat_stream(chunks, 2, include_usage=True)


@pytest.mark.anyio
async def test_async_embeddings_and_completions(gateway: Callable[..., str], fake: FakeHF) -> None:
    """``AsyncOpenAI`` embeddings (base64, decoded) and completions on an OpenAI-compatible upstream."""
    async with async_client(gateway, "openai") as oai:
        emb = await oai.embeddings.create(model="org/embedder", input=["async text"])
        comp = await oai.completions.create(model=CHAT_MODEL, prompt=PROMPTS[0], max_tokens=3)
    assert np.allclose(emb.data[0].embedding, expected_embedding("async text"))
    assert comp.choices[0].text == expected_generation(PROMPTS[0], 3)
