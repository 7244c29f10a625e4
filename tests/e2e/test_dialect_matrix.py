"""Every client dialect on every upstream kind that can serve it, through the ResponseReformatter.

Real clients (``huggingface_hub`` and ``openai``, sync and async) talk to the reference gateway. The fake
upstream gets ``x-fake-only: <kind>`` (a client header the gateway forwards), so it serves *only* the routes
of that upstream kind and answers 404 ``{"detail": "Not Found"}`` anywhere else: a passing test proves the
gateway spoke the upstream's own dialect, and ``fake.last().path`` says which route it used. Expected answers
are computed with ``tests.upstream.shapes``, the functions the fake answers with.
"""

from __future__ import annotations

import base64
import math
import struct
from array import array
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from huggingface_hub import AsyncInferenceClient, InferenceClient
from huggingface_hub.errors import (
    GenerationError,
    HfHubHTTPError,
    TextGenerationError,
    UnknownError,
    ValidationError,
)

from hfasgi.app import create_app
from hfasgi.settings import Settings
from hfasgi.tokens import estimate_text
from tests.e2e.clients import (
    CHAT_MODEL,
    DEFAULT_MODEL,
    KINDS,
    MESSAGES,
    PROMPT,
    chat_path,
    chat_usage,
    like,
    objects,
    sse_payloads,
    usage_of,
)
from tests.servers import serve
from tests.upstream import (
    FakeHF,
    expected_chat,
    expected_embedding,
    expected_generation,
    expected_summarization,
    expected_text_classification,
    expected_translation,
    expected_zero_shot,
    token_texts,
)
from tests.upstream.fake_hf import STREAM_ERROR
from tests.upstream.shapes import (
    DEFAULT_TOKENS,
    ERROR_STYLES,
    SYSTEM_FINGERPRINT,
    WORDS,
    count_tokens,
    error_message,
    tgi_generate_response,
    tgi_stream_events,
    usage,
)

pytestmark = pytest.mark.socket

QUIRKS = [None, "transformers"]
"""Upstream flavours: HF/TGI style, and ``transformers serve`` (no ``[DONE]``, usage always last, ``<id>@main``)."""
TASK_KINDS = ("router", "serverless")
"""The upstream kinds that serve the HF task API."""
EMBEDDING_MODEL = "fake/feature-extraction"
TEXT = "The quick brown fox jumps over the lazy dog near the river bank"
CATALOG = """\
[[models]]
id = "org/summarizer"
task = "summarization"

[[models]]
id = "org/translator"
task = "translation"

[[models]]
id = "org/reader"
task = "question-answering"

[[models]]
id = "org/chat-writer"
task = "chat-completion"
"""
"""A catalog naming the task of models that an OpenAI-only upstream (a chat model) serves through chat."""


def only(kind: str, quirks: str | None = None, **extra: str) -> dict[str, str]:
    """Client headers: the fake serves only ``kind``'s routes (with ``transformers serve`` quirks if asked)."""
    headers = {"x-fake-only": kind, **extra}
    if quirks:
        headers["x-fake-quirks"] = quirks
    return headers


def sse_events(body: bytes) -> list[str]:
    """The payloads of an SSE body, framing and compact JSON checked (``clients.sse_payloads``)."""
    return sse_payloads(body, compact=True)


def float32(values: list[float]) -> list[float]:
    """``values`` as the float32 numbers a base64 embedding carries."""
    return array("f", values).tolist()


def unit(values: list[float]) -> list[float]:
    """``values`` divided by their L2 norm."""
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The models file of :data:`CATALOG`."""
    path = tmp_path_factory.mktemp("dialect-catalog") / "models.toml"
    path.write_text(CATALOG)
    return str(path)


# --- text_generation (TGI dialect) on an OpenAI-only upstream --------------------------------------------


@pytest.mark.parametrize("quirks", QUIRKS, ids=["hf", "transformers"])
def test_text_generation_over_openai_completions(gateway: Callable[..., str], fake: FakeHF, quirks: str | None) -> None:
    """``text_generation`` posts TGI's body to ``/``; the gateway asks ``/v1/completions`` and answers as TGI."""
    base = gateway("openai", default_model=DEFAULT_MODEL)
    with InferenceClient(base_url=base, headers=only("openai", quirks)) as client:
        plain = client.text_generation(PROMPT)
        sent_plain = fake.last()
        short = client.text_generation(PROMPT, max_new_tokens=3)
        full = client.text_generation(PROMPT, max_new_tokens=2, return_full_text=True)
        detailed = client.text_generation(PROMPT, max_new_tokens=4, details=True, seed=11)
        eos = client.text_generation(PROMPT, details=True)
    assert plain == expected_generation(PROMPT)
    assert sent_plain.method == "POST" and sent_plain.path == "/v1/completions"
    assert sent_plain.json["model"] == DEFAULT_MODEL and sent_plain.json["prompt"] == PROMPT
    assert sent_plain.json["stream"] is False and "inputs" not in sent_plain.json
    assert short == expected_generation(PROMPT, 3)
    assert full == PROMPT + expected_generation(PROMPT, 2)
    assert detailed.generated_text == expected_generation(PROMPT, 4)
    assert detailed.details is not None
    assert (detailed.details.finish_reason, detailed.details.generated_tokens, detailed.details.seed) == (
        "length",
        4,
        11,
    )
    assert eos.details is not None and (eos.details.finish_reason, eos.details.generated_tokens) == (
        "eos_token",
        DEFAULT_TOKENS,
    )
    assert [r.path for r in fake.requests] == ["/v1/completions"] * 5  # nothing went to a TGI route


@pytest.mark.parametrize("quirks", QUIRKS, ids=["hf", "transformers"])
def test_text_generation_stream_over_openai_completions(
    gateway: Callable[..., str], fake: FakeHF, quirks: str | None
) -> None:
    """``stream=True`` (with and without ``details``) is a TGI token stream made from completion chunks."""
    base = gateway("openai", default_model=DEFAULT_MODEL)
    with InferenceClient(base_url=base, headers=only("openai", quirks)) as client:
        whole = client.text_generation(PROMPT, max_new_tokens=5)
        texts = list(client.text_generation(PROMPT, max_new_tokens=5, stream=True))
        sent = fake.last()
        events = list(client.text_generation(PROMPT, max_new_tokens=5, stream=True, details=True, seed=3))
    assert texts == token_texts(PROMPT, 5) and "".join(texts) == whole == expected_generation(PROMPT, 5)
    assert sent.path == "/v1/completions" and sent.json["stream"] is True and sent.json["max_tokens"] == 5
    assert [e.index for e in events] == [1, 2, 3, 4, 5]
    assert [e.token.text for e in events] == token_texts(PROMPT, 5)
    assert [e.generated_text for e in events[:-1]] == [None] * 4 and [e.details for e in events[:-1]] == [None] * 4
    last = events[-1]
    assert last.generated_text == expected_generation(PROMPT, 5) and last.details is not None
    assert (last.details.finish_reason, last.details.generated_tokens, last.details.seed) == ("length", 5, 3)
    assert last.details.input_length == count_tokens(PROMPT)
    assert [r.path for r in fake.requests] == ["/v1/completions"] * 3


def test_text_generation_greedy_over_openai_completions(gateway: Callable[..., str], fake: FakeHF) -> None:
    """``do_sample=False`` (TGI's greedy decoding) reaches an OpenAI upstream as ``temperature: 0``."""
    base = gateway("openai", default_model=DEFAULT_MODEL)
    with InferenceClient(base_url=base, headers=only("openai")) as client:
        assert client.text_generation(PROMPT, max_new_tokens=2, do_sample=False) == expected_generation(PROMPT, 2)
    assert fake.last().json.get("temperature") == 0


@pytest.mark.anyio
async def test_async_text_generation_over_openai_completions(gateway: Callable[..., str], fake: FakeHF) -> None:
    """The async client gets the same translation."""
    base = gateway("openai", default_model=DEFAULT_MODEL)
    async with AsyncInferenceClient(base_url=base, headers=only("openai", "transformers")) as client:
        plain = await client.text_generation(PROMPT, max_new_tokens=3)
        stream = await client.text_generation(PROMPT, max_new_tokens=3, stream=True)
        texts = [text async for text in stream]
    assert plain == "".join(texts) == expected_generation(PROMPT, 3)
    assert texts == token_texts(PROMPT, 3) and fake.last().path == "/v1/completions"


@pytest.mark.parametrize("quirks", QUIRKS, ids=["hf", "transformers"])
def test_tgi_generate_routes_over_openai_completions(
    gateway: Callable[..., str], fake: FakeHF, quirks: str | None
) -> None:
    """``/generate`` answers one object (not a list), ``/generate_stream`` TGI events without ``[DONE]``."""
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 3, "details": True}}
    with httpx.Client(base_url=gateway("openai", default_model=DEFAULT_MODEL), headers=only("openai", quirks)) as http:
        generated = http.post("/generate", json=body)
        sent = fake.last()
        streamed = http.post("/generate_stream", json=body)
    assert generated.status_code == 200, generated.text
    answer = generated.json()
    assert isinstance(answer, dict) and answer["generated_text"] == expected_generation(PROMPT, 3)
    assert like(answer["details"], {"finish_reason": "length", "generated_tokens": 3, "seed": None}) == {
        "finish_reason": "length",
        "generated_tokens": 3,
        "seed": None,
    }
    assert sent.path == "/v1/completions" and sent.json["stream"] is False
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    payloads = sse_events(streamed.content)
    assert "[DONE]" not in payloads
    events = objects(payloads)
    shape = [{"index": i + 1, "token": {"text": t, "special": False}} for i, t in enumerate(token_texts(PROMPT, 3))]
    assert like(events, shape) == shape
    assert [e["generated_text"] for e in events] == [None, None, expected_generation(PROMPT, 3)]
    assert events[-1]["details"] == {
        "finish_reason": "length",
        "generated_tokens": 3,
        "seed": None,
        "input_length": count_tokens(PROMPT),
    }
    assert fake.last().path == "/v1/completions" and fake.last().json["stream"] is True


def test_parameters_an_openai_upstream_cannot_honour_are_named(gateway: Callable[..., str], fake: FakeHF) -> None:
    """TGI parameters with no OpenAI completions equivalent are left out and named in a response header."""
    body: dict[str, Any] = {
        "inputs": PROMPT,
        "parameters": {"top_k": 5, "watermark": True, "max_new_tokens": 2, "seed": 4},
    }
    with httpx.Client(base_url=gateway("openai", default_model=DEFAULT_MODEL), headers=only("openai")) as http:
        plain = http.post("/", json=body)
        sent = fake.last()
        streamed = http.post(
            "/generate_stream", json={**body, "parameters": {**body["parameters"], "return_full_text": True}}
        )
    assert plain.json() == [{"generated_text": expected_generation(PROMPT, 2)}]  # `/` answers a list, as TGI
    assert plain.headers["x-hfasgi-ignored-parameters"] == "top_k, watermark"
    assert sent.json == {"model": DEFAULT_MODEL, "prompt": PROMPT, "max_tokens": 2, "seed": 4, "stream": False}
    assert streamed.headers["x-hfasgi-ignored-parameters"] == "top_k, watermark"
    events = objects(sse_events(streamed.content))
    assert [e["token"]["text"] for e in events] == token_texts(PROMPT, 2)
    assert events[-1]["generated_text"] == PROMPT + expected_generation(PROMPT, 2)  # return_full_text


# --- text_generation (TGI dialect) on the HF task API -------------------------------------------------------


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_tgi_generate_routes_on_the_task_api(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """``/generate`` and ``/generate_stream`` reach the model's text-generation task route, TGI shapes kept."""
    task_path = {
        "router": f"/hf-inference/models/{DEFAULT_MODEL}",
        "serverless": f"/pipeline/text-generation/{DEFAULT_MODEL}",
    }
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 3, "details": True, "seed": 5}}
    with httpx.Client(base_url=gateway(kind, default_model=DEFAULT_MODEL), headers=only(kind)) as http:
        generated = http.post("/generate", json=body)
        sent = fake.last()
        streamed = http.post("/generate_stream", json=body)
    assert generated.status_code == 200, generated.text
    assert generated.json() == tgi_generate_response(PROMPT, 3, details=True, seed=5)
    assert sent.path == task_path[kind] and sent.json["inputs"] == PROMPT
    assert sent.json["parameters"]["return_full_text"] is False and sent.json.get("stream") is False
    payloads = sse_events(streamed.content)
    assert "[DONE]" not in payloads and objects(payloads) == tgi_stream_events(PROMPT, 3, details=True, seed=5)
    assert fake.last().path == task_path[kind] and fake.last().json["stream"] is True


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_inference_client_on_generate_routes_of_the_task_api(
    gateway: Callable[..., str], fake: FakeHF, kind: str
) -> None:
    """``InferenceClient(base_url=…/generate_stream)`` streams from a router or serverless upstream."""
    base = gateway(kind, default_model=DEFAULT_MODEL)
    with InferenceClient(base_url=base + "/generate", headers=only(kind)) as client:
        out = client.text_generation(PROMPT, max_new_tokens=4, details=True)
    with InferenceClient(base_url=base + "/generate_stream", headers=only(kind)) as client:
        texts = list(client.text_generation(PROMPT, max_new_tokens=4, stream=True))
    expected = tgi_generate_response(PROMPT, 4, details=True)
    assert like(out, expected) == expected
    assert texts == token_texts(PROMPT, 4)


# --- openai completions on every kind ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_openai_completions_on_the_task_api(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """``completions.create`` on router/serverless becomes TGI text generation on the task route."""
    task_path = {
        "router": f"/hf-inference/models/{DEFAULT_MODEL}",
        "serverless": f"/pipeline/text-generation/{DEFAULT_MODEL}",
    }
    base = gateway(kind, default_model=DEFAULT_MODEL) + "/v1"
    with openai.OpenAI(base_url=base, api_key="k", max_retries=0, default_headers=only(kind)) as client:
        out = client.completions.create(model=DEFAULT_MODEL, prompt=PROMPT, max_tokens=3)
        sent = fake.last()
        eos = client.completions.create(model=DEFAULT_MODEL, prompt=PROMPT)
    assert sent.path == task_path[kind] and sent.json["inputs"] == PROMPT
    assert sent.json["parameters"]["max_new_tokens"] == 3 and "prompt" not in sent.json
    assert out.object == "text_completion" and out.model == DEFAULT_MODEL and out.id
    assert out.system_fingerprint
    assert [(c.index, c.text, c.finish_reason) for c in out.choices] == [(0, expected_generation(PROMPT, 3), "length")]
    assert usage_of(out.usage) == usage(count_tokens(PROMPT), 3)
    assert [(c.text, c.finish_reason) for c in eos.choices] == [(expected_generation(PROMPT), "stop")]


@pytest.mark.parametrize("include_usage", [False, True], ids=["no-usage", "usage"])
@pytest.mark.parametrize("kind", TASK_KINDS)
def test_openai_completions_stream_on_the_task_api(
    gateway: Callable[..., str], fake: FakeHF, kind: str, include_usage: bool
) -> None:
    """A completions stream from TGI events: one chunk per token, usage-only chunk only when asked, ``[DONE]``."""
    base = gateway(kind, default_model=DEFAULT_MODEL)
    options: Any = {"include_usage": True} if include_usage else openai.NOT_GIVEN
    with openai.OpenAI(base_url=base + "/v1", api_key="k", max_retries=0, default_headers=only(kind)) as client:
        chunks = list(
            client.completions.create(
                model=DEFAULT_MODEL, prompt=PROMPT, max_tokens=4, stream=True, stream_options=options
            )
        )
    content = [c for c in chunks if c.choices]
    assert [c.choices[0].text for c in content] == token_texts(PROMPT, 4)
    assert [c.choices[0].finish_reason for c in content] == [None, None, None, "length"]
    assert all(c.model == DEFAULT_MODEL and c.object == "text_completion" for c in chunks)
    assert all(c.usage is None for c in content)
    if include_usage:
        assert len(chunks) == 5 and chunks[-1].choices == []
        assert usage_of(chunks[-1].usage) == usage(count_tokens(PROMPT), 4)
    else:
        assert len(chunks) == 4
    assert fake.last().json["stream"] is True
    body = {"model": DEFAULT_MODEL, "prompt": PROMPT, "max_tokens": 2, "stream": True}
    raw = httpx.post(base + "/v1/completions", json=body, headers=only(kind))
    payloads = sse_events(raw.content)
    assert payloads[-1] == "[DONE]" and payloads.count("[DONE]") == 1
    assert "".join(e["choices"][0]["text"] for e in objects(payloads)) == expected_generation(PROMPT, 2)


@pytest.mark.parametrize("include_usage", [False, True], ids=["no-usage", "usage"])
@pytest.mark.parametrize(
    ("kind", "quirks"), [("tgi", None), ("openai", None), ("openai", "transformers")], ids=["tgi", "openai", "tf"]
)
def test_openai_completions_native(
    gateway: Callable[..., str], fake: FakeHF, kind: str, quirks: str | None, include_usage: bool
) -> None:
    """TGI and OpenAI-compatible upstreams serve ``/v1/completions`` themselves; the answer is made uniform."""
    base = gateway(kind, default_model=DEFAULT_MODEL) + "/v1"
    options: Any = {"include_usage": True} if include_usage else openai.NOT_GIVEN
    with openai.OpenAI(base_url=base, api_key="k", max_retries=0, default_headers=only(kind, quirks)) as client:
        out = client.completions.create(model=CHAT_MODEL, prompt=PROMPT, max_tokens=3)
        chunks = list(
            client.completions.create(
                model=CHAT_MODEL, prompt=PROMPT, max_tokens=3, stream=True, stream_options=options
            )
        )
    assert out.model == CHAT_MODEL and out.system_fingerprint
    assert [(c.text, c.finish_reason) for c in out.choices] == [(expected_generation(PROMPT, 3), "length")]
    assert usage_of(out.usage) == usage(count_tokens(PROMPT), 3)
    content = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].text for c in content) == expected_generation(PROMPT, 3)
    assert all(c.model == CHAT_MODEL and c.system_fingerprint for c in chunks)
    assert all(c.usage is None for c in content)
    usage_chunks = [c for c in chunks if not c.choices]
    assert len(usage_chunks) == (1 if include_usage else 0)
    if include_usage:
        assert chunks[-1] is usage_chunks[0] and usage_of(chunks[-1].usage) == usage(count_tokens(PROMPT), 3)
    assert fake.last().path == "/v1/completions" and fake.last().json["model"] == CHAT_MODEL


@pytest.mark.anyio
async def test_async_openai_completions_stream_on_the_router(gateway: Callable[..., str], fake: FakeHF) -> None:
    """``AsyncOpenAI`` completions stream over TGI events."""
    base = gateway("router", default_model=DEFAULT_MODEL) + "/v1"
    async with openai.AsyncOpenAI(base_url=base, api_key="k", max_retries=0, default_headers=only("router")) as client:
        stream = await client.completions.create(model=DEFAULT_MODEL, prompt=PROMPT, max_tokens=3, stream=True)
        texts = [c.choices[0].text async for c in stream if c.choices]
    assert texts == token_texts(PROMPT, 3) and fake.last().path == f"/hf-inference/models/{DEFAULT_MODEL}"


# --- openai embeddings on HF feature-extraction upstreams ---------------------------------------------------


@pytest.fixture(scope="module")
def tei_gateway() -> Iterator[tuple[FakeHF, str]]:
    """A gateway (kind ``tgi``) in front of a TEI-style endpoint: ``POST /`` answers feature-extraction."""
    endpoint = FakeHF(model_id=EMBEDDING_MODEL)
    with serve(endpoint) as url:
        settings = Settings(upstream_url=url, upstream_kind="tgi", default_model=EMBEDDING_MODEL, no_auth=True)
        with serve(create_app(settings)) as gateway_url:
            yield endpoint, gateway_url


def embeddings_target(
    kind: str, gateway: Callable[..., str], fake: FakeHF, tei: tuple[FakeHF, str]
) -> tuple[str, FakeHF, str]:
    """(gateway base URL, the fake that answers, the feature-extraction path it should record)."""
    if kind == "tgi":
        tei[0].clear()
        return tei[1], tei[0], "/"
    path = {
        "router": f"/hf-inference/models/{EMBEDDING_MODEL}/pipeline/feature-extraction",
        "serverless": f"/pipeline/feature-extraction/{EMBEDDING_MODEL}",
    }[kind]
    return gateway(kind), fake, path


@pytest.mark.parametrize("kind", ["router", "serverless", "tgi"])
def test_openai_embeddings_on_feature_extraction(
    gateway: Callable[..., str], fake: FakeHF, tei_gateway: tuple[FakeHF, str], kind: str
) -> None:
    """``embeddings.create`` (base64 by default, float, a list, ``dimensions``): unit vectors, usage, index order.

    The gateway asks the upstream for normalised vectors (``"normalize": true``), so the fake's normalised
    embedding is exactly what the client gets (hfasgi/reformat/embeddings.py).
    """
    base, answering, path = embeddings_target(kind, gateway, fake, tei_gateway)
    headers = only(kind)
    with openai.OpenAI(base_url=base + "/v1", api_key="k", max_retries=0, default_headers=headers) as client:
        default = client.embeddings.create(model=EMBEDDING_MODEL, input="hello world")
        sent_default = answering.last()
        floats = client.embeddings.create(model=EMBEDDING_MODEL, input="hello world", encoding_format="float")
        batch = client.embeddings.create(
            model=EMBEDDING_MODEL, input=["one", "two words", "three"], encoding_format="float"
        )
        cut = client.embeddings.create(model=EMBEDDING_MODEL, input=["one", "two words"], dimensions=4)
        sent_cut = answering.last()
    expected = expected_embedding("hello world", normalize=True)
    assert sent_default.method == "POST" and sent_default.path == path
    assert sent_default.json == {"inputs": "hello world", "normalize": True}
    assert default.data[0].embedding == float32(expected)  # decoded by the client from base64 float32
    assert floats.data[0].embedding == expected
    assert default.model == floats.model == EMBEDDING_MODEL and default.object == "list"
    assert [(d.object, d.index) for d in batch.data] == [("embedding", 0), ("embedding", 1), ("embedding", 2)]
    assert [d.embedding for d in batch.data] == [
        expected_embedding(t, normalize=True) for t in ("one", "two words", "three")
    ]
    assert sent_cut.json == {"inputs": ["one", "two words"], "normalize": True, "dimensions": 4}
    assert [d.embedding for d in cut.data] == [
        float32(expected_embedding(t, 4, normalize=True)) for t in ("one", "two words")
    ]
    assert all(abs(math.hypot(*d.embedding) - 1.0) < 1e-5 for d in (*batch.data, *cut.data))
    assert default.usage.prompt_tokens == default.usage.total_tokens == estimate_text("hello world")
    assert batch.usage.prompt_tokens == sum(estimate_text(t) for t in ("one", "two words", "three"))
    assert {r.path for r in answering.requests} == {path}


def test_openai_embeddings_raw_base64(gateway: Callable[..., str], fake: FakeHF) -> None:
    """The base64 the gateway writes is little-endian float32 of the unit vector, as OpenAI's is."""
    body = {"model": EMBEDDING_MODEL, "input": "abc", "encoding_format": "base64"}
    answer = httpx.post(gateway("router") + "/v1/embeddings", json=body, headers=only("router")).json()
    raw = base64.b64decode(answer["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == float32(expected_embedding("abc", normalize=True))
    assert answer["usage"] == {"prompt_tokens": estimate_text("abc"), "total_tokens": estimate_text("abc")}


# --- HF feature-extraction and sentence-similarity on an OpenAI-only upstream --------------------------------


def test_feature_extraction_over_openai_embeddings(gateway: Callable[..., str], fake: FakeHF) -> None:
    """``feature_extraction`` becomes one ``/v1/embeddings`` call; vectors come back normalised (TEI's default)."""
    base = gateway("openai") + "/models/org/embedder/pipeline/feature-extraction"
    with InferenceClient(base_url=base, headers=only("openai", "transformers")) as client:
        one = client.feature_extraction("hello world")
        sent = fake.last()
        many = client.feature_extraction(["one", "two words"], dimensions=4)
        sent_many = fake.last()
        raw = client.feature_extraction("hello world", normalize=False)
    assert sent.method == "POST" and sent.path == "/v1/embeddings"
    assert sent.json == {"model": "org/embedder", "input": "hello world", "encoding_format": "float"}
    assert one.shape == (8,) and np.allclose(one, unit(expected_embedding("hello world")), rtol=1e-6, atol=1e-7)
    assert sent_many.json == {
        "model": "org/embedder",
        "input": ["one", "two words"],
        "encoding_format": "float",
        "dimensions": 4,
    }
    expected_many = [unit(expected_embedding(t, 4)) for t in ("one", "two words")]
    assert many.shape == (2, 4) and np.allclose(many, expected_many, rtol=1e-6, atol=1e-7)
    assert np.array_equal(raw, np.array(expected_embedding("hello world"), dtype="float32"))


def test_sentence_similarity_over_openai_embeddings(gateway: Callable[..., str], fake: FakeHF) -> None:
    """``sentence_similarity``: one embeddings call for the source and the sentences, cosines in order."""
    base = gateway("openai") + "/pipeline/sentence-similarity/org/embedder"
    sentences = ["a man eats", "the fox jumps", "hello"]
    with InferenceClient(base_url=base, headers=only("openai")) as client:
        scores = client.sentence_similarity("a man is eating", other_sentences=sentences)
    sent = fake.last()
    assert sent.path == "/v1/embeddings" and sent.json == {
        "model": "org/embedder",
        "input": ["a man is eating", *sentences],
        "encoding_format": "float",
    }
    source = expected_embedding("a man is eating")
    assert scores == pytest.approx([cosine(source, expected_embedding(s)) for s in sentences], abs=1e-9)


# --- chat on every kind -------------------------------------------------------------------------------------


def check_chunks(chunks: list[Any], model: str, n: int, include_usage: bool, tf: bool) -> None:
    """A chat stream as every client should get it, whatever the upstream's quirks."""
    content = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in content) == expected_chat(MESSAGES, n)
    assert [c.choices[0].finish_reason for c in content if c.choices[0].finish_reason] == ["length"]
    assert all(c.model == model for c in chunks), {c.model for c in chunks}
    assert all(c.system_fingerprint for c in chunks)  # the upstream's, or the gateway's when it sent none
    if not tf:
        assert all(c.system_fingerprint == SYSTEM_FINGERPRINT for c in chunks)
    assert all(c.usage is None for c in content)
    usage_only = [c for c in chunks if not c.choices]
    if include_usage:
        assert len(usage_only) == 1 and chunks[-1] is usage_only[0] and usage_of(chunks[-1].usage) == chat_usage(n)
    else:
        assert usage_only == []


@pytest.mark.parametrize("include_usage", [False, True], ids=["no-usage", "usage"])
@pytest.mark.parametrize("quirks", QUIRKS, ids=["hf", "transformers"])
@pytest.mark.parametrize("kind", KINDS)
def test_inference_client_chat_every_kind(
    gateway: Callable[..., str], fake: FakeHF, kind: str, quirks: str | None, include_usage: bool
) -> None:
    """``chat_completion``: the model the client named (``dummy`` → the default model), a fingerprint, usage rules."""
    base = gateway(kind, default_model=DEFAULT_MODEL)
    options = {"include_usage": True} if include_usage else None
    with InferenceClient(base_url=base, headers=only(kind, quirks)) as client:
        out = client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=3)
        chunks = list(
            client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=3, stream=True, stream_options=options)
        )
        sent = fake.last()
        dummy = client.chat_completion(MESSAGES, max_tokens=2)
        dummy_chunks = list(client.chat_completion(MESSAGES, max_tokens=2, stream=True, stream_options=options))
    assert out.model == CHAT_MODEL and out.system_fingerprint and out.object == "chat.completion"
    assert out.choices[0].message.content == expected_chat(MESSAGES, 3) and out.choices[0].finish_reason == "length"
    assert usage_of(out.usage) == chat_usage(3)
    if not quirks:
        assert out.system_fingerprint == SYSTEM_FINGERPRINT
    check_chunks(chunks, CHAT_MODEL, 3, include_usage, bool(quirks))
    assert sent.path == chat_path(kind, CHAT_MODEL) and sent.json["model"] == CHAT_MODEL
    assert dummy.model == DEFAULT_MODEL and dummy.choices[0].message.content == expected_chat(MESSAGES, 2)
    check_chunks(dummy_chunks, DEFAULT_MODEL, 2, include_usage, bool(quirks))
    assert fake.last().path == chat_path(kind, DEFAULT_MODEL) and fake.last().json["model"] == DEFAULT_MODEL


@pytest.mark.parametrize("include_usage", [False, True], ids=["no-usage", "usage"])
@pytest.mark.parametrize("quirks", QUIRKS, ids=["hf", "transformers"])
@pytest.mark.parametrize("kind", KINDS)
def test_openai_chat_every_kind(
    gateway: Callable[..., str], fake: FakeHF, kind: str, quirks: str | None, include_usage: bool
) -> None:
    """The openai client's chat, plain and streamed, gets the same uniform answer; the raw stream ends ``[DONE]``."""
    base = gateway(kind, default_model=DEFAULT_MODEL)
    options: Any = {"include_usage": True} if include_usage else openai.NOT_GIVEN
    headers = only(kind, quirks)
    with openai.OpenAI(base_url=base + "/v1", api_key="k", max_retries=0, default_headers=headers) as client:
        out = client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=4)
        stream = client.chat.completions.create(
            model=CHAT_MODEL, messages=MESSAGES, max_tokens=4, stream=True, stream_options=options
        )
        chunks = list(stream)
    assert out.model == CHAT_MODEL and out.system_fingerprint
    assert out.choices[0].message.content == expected_chat(MESSAGES, 4) and usage_of(out.usage) == chat_usage(4)
    check_chunks(chunks, CHAT_MODEL, 4, include_usage, bool(quirks))
    body: dict[str, Any] = {"model": CHAT_MODEL, "messages": MESSAGES, "max_tokens": 2, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    raw = httpx.post(base + "/v1/chat/completions", json=body, headers=headers)
    payloads = sse_events(raw.content)
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert payloads[-1] == "[DONE]" and payloads.count("[DONE]") == 1
    events = objects(payloads)
    assert all(e["model"] == CHAT_MODEL and e["system_fingerprint"] and "usage" in e for e in events)
    assert sum(1 for e in events if e["choices"] == []) == (1 if include_usage else 0)
    assert fake.last().path == chat_path(kind, CHAT_MODEL)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
async def test_async_chat_with_transformers_quirks(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """``AsyncInferenceClient`` and ``AsyncOpenAI`` streams over a transformers-serve-like upstream."""
    base = gateway(kind, default_model=DEFAULT_MODEL)
    headers = only(kind, "transformers")
    async with AsyncInferenceClient(base_url=base, headers=headers) as client:
        stream = await client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=3, stream=True)
        hf_chunks = [chunk async for chunk in stream]
    async with openai.AsyncOpenAI(base_url=base + "/v1", api_key="k", max_retries=0, default_headers=headers) as oai:
        ostream = await oai.chat.completions.create(
            model=CHAT_MODEL, messages=MESSAGES, max_tokens=3, stream=True, stream_options={"include_usage": True}
        )
        oai_chunks = [chunk async for chunk in ostream]
    check_chunks(hf_chunks, CHAT_MODEL, 3, False, True)
    check_chunks(oai_chunks, CHAT_MODEL, 3, True, True)


# --- HF task methods ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_task_methods_on_the_task_api(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """Task methods on ``…/models/fake/<task>`` get the wire shapes huggingface_hub parses (all labels, lists)."""
    base = gateway(kind)
    prefix = "/hf-inference/models/" if kind == "router" else "/models/"

    def client(task: str) -> InferenceClient:
        return InferenceClient(base_url=f"{base}/models/fake/{task}", headers=only(kind))

    with client("text-classification") as c:
        labels = c.text_classification(TEXT)
    assert fake.last().path == f"{prefix}fake/text-classification"
    expected_labels = expected_text_classification(TEXT)
    assert len(labels) == 2 and like(labels, expected_labels) == expected_labels
    with client("zero-shot-classification") as c:
        zero = c.zero_shot_classification(TEXT, candidate_labels=["animals", "finance", "sports"])
    assert fake.last().path == f"{prefix}fake/zero-shot-classification"
    expected_zero = expected_zero_shot(TEXT, ["animals", "finance", "sports"])
    assert like(zero, expected_zero) == expected_zero
    with client("summarization") as c:
        summary = c.summarization(TEXT)
    assert fake.last().path == f"{prefix}fake/summarization"
    assert summary.summary_text == expected_summarization(TEXT)[0]["summary_text"]
    with client("translation") as c:
        translated = c.translation(TEXT, src_lang="en", tgt_lang="fr")
    assert fake.last().path == f"{prefix}fake/translation"
    assert translated.translation_text == expected_translation(TEXT, "fr")[0]["translation_text"]


def test_tasks_via_chat_on_an_openai_upstream(gateway: Callable[..., str], fake: FakeHF, catalog_file: str) -> None:
    """A catalog names the models' tasks; an OpenAI-only upstream serves them through chat with a task prompt."""
    base = gateway("openai", models_file=catalog_file)
    headers = only("openai", "transformers")
    with InferenceClient(base_url=f"{base}/models/org/summarizer", headers=headers) as client:
        summary = client.summarization(TEXT)
    sent = fake.last()
    assert sent.method == "POST" and sent.path == "/v1/chat/completions" and sent.json["model"] == "org/summarizer"
    messages = sent.json["messages"]
    assert [m["role"] for m in messages] == ["system", "user"] and messages[1]["content"] == TEXT
    assert "summar" in messages[0]["content"].lower() and sent.json["stream"] is False
    assert summary.summary_text == expected_chat(messages)

    with InferenceClient(base_url=f"{base}/models/org/translator", headers=headers) as client:
        translated = client.translation(TEXT, src_lang="en", tgt_lang="fr")
    sent = fake.last()
    messages = sent.json["messages"]
    assert sent.path == "/v1/chat/completions" and sent.json["model"] == "org/translator"
    assert messages[-1] == {"role": "user", "content": TEXT} and "French" in messages[0]["content"]
    assert translated.translation_text == expected_chat(messages)

    context = "The fox lives in the forest near the river"
    with InferenceClient(base_url=f"{base}/models/org/reader", headers=headers) as client:
        answer = client.question_answering(question="Where does the fox live?", context=context)
    sent = fake.last()
    reply = expected_chat(sent.json["messages"])
    assert sent.path == "/v1/chat/completions" and context in sent.json["messages"][-1]["content"]
    assert reply not in context  # eight generated words: not a span of the context, so no score
    assert like(answer, {"answer": reply, "score": 0.0, "start": 0, "end": len(reply)}) == {
        "answer": reply,
        "score": 0.0,
        "start": 0,
        "end": len(reply),
    }


def test_question_answering_via_chat_finds_the_span(
    gateway: Callable[..., str], fake: FakeHF, catalog_file: str
) -> None:
    """A one-word reply (``chunks:1``) that is a word of the context is located there and scores 1.0."""
    context = " ".join(WORDS)  # every word the fake can generate
    headers = only("openai", **{"x-fake-scenario": "chunks:1"})
    with InferenceClient(
        base_url=gateway("openai", models_file=catalog_file) + "/models/org/reader", headers=headers
    ) as c:
        answer = c.question_answering(question="Which word?", context=context)
    word = expected_chat(fake.last().json["messages"], 1)
    start = context.index(word)
    assert like(answer, {"answer": word, "score": 1.0, "start": start, "end": start + len(word)}) == {
        "answer": word,
        "score": 1.0,
        "start": start,
        "end": start + len(word),
    }


# --- errors on translated routes ---------------------------------------------------------------------------


def check_http_error(error: HfHubHTTPError, status: int, style: str) -> None:
    """HFH's error carries the upstream status, the envelope and the upstream's message (or the reason phrase)."""
    assert error.response is not None and error.response.status_code == status
    body = error.response.json()
    assert isinstance(body, dict) and isinstance(body["error"], str) and isinstance(body["error_type"], str)
    if style in ("html", "empty"):
        assert error.server_message == HTTPStatus(status).phrase
    else:
        assert error.server_message is not None and error_message(status) in error.server_message


@pytest.mark.parametrize("style", ERROR_STYLES)
def test_upstream_errors_on_translated_text_generation(gateway: Callable[..., str], fake: FakeHF, style: str) -> None:
    """A 422 of any style from ``/v1/completions`` reaches ``text_generation`` as the envelope, status kept.

    HFH maps the envelope's ``error_type`` ``validation`` to its typed ``ValidationError`` (hf_api.md §5.6).
    """
    headers = only("openai", **{"x-fake-scenario": f"error:422:{style}"})
    with (
        InferenceClient(base_url=gateway("openai", default_model=DEFAULT_MODEL), headers=headers) as client,
        pytest.raises((HfHubHTTPError, TextGenerationError)) as err,
    ):
        client.text_generation(PROMPT, max_new_tokens=2)
    assert fake.last().path == "/v1/completions" and len(fake.requests) == 1
    error = err.value
    http_error = error.__cause__ if isinstance(error, TextGenerationError) else error
    assert isinstance(http_error, HfHubHTTPError)
    check_http_error(http_error, 422, style)
    assert http_error.response is not None
    if http_error.response.json()["error_type"] == "validation":
        assert type(error) is ValidationError


def test_requests_no_translation_can_serve_are_clear_400s(gateway: Callable[..., str], fake: FakeHF) -> None:
    """What the upstream's dialect cannot express is refused up front (400 ``unsupported_operation``), never sent."""
    with httpx.Client(base_url=gateway("router")) as http:
        two_prompts = http.post("/v1/completions", json={"model": DEFAULT_MODEL, "prompt": ["a", "b"]})
        token_ids = http.post("/v1/embeddings", json={"model": EMBEDDING_MODEL, "input": [1, 2, 3]})
    for response, needle in ((two_prompts, "one prompt per request"), (token_ids, "Token-id inputs")):
        assert response.status_code == 400 and response.json()["error_type"] == "unsupported_operation"
        assert needle in response.json()["error"]
    grammar = {"type": "json", "value": {"type": "object"}}
    with (
        InferenceClient(base_url=gateway("openai", default_model=DEFAULT_MODEL), headers=only("openai")) as client,
        pytest.raises(UnknownError) as refused,  # HFH's type for error_type "unsupported_operation"
    ):
        client.text_generation(PROMPT, grammar=grammar)
    cause = refused.value.__cause__
    assert isinstance(cause, HfHubHTTPError) and cause.response is not None and cause.response.status_code == 400
    assert "`grammar` parameter is not supported" in str(refused.value)
    base = gateway("openai") + "/models/org/embedder/pipeline/feature-extraction"
    with InferenceClient(base_url=base) as client, pytest.raises(HfHubHTTPError) as no_prompts:
        client.feature_extraction("x", prompt_name="query")
    assert no_prompts.value.server_message is not None and "prompt_name" in no_prompts.value.server_message
    assert fake.requests == []


def test_an_upstream_answer_that_cannot_be_translated_is_a_502(gateway: Callable[..., str], fake: FakeHF) -> None:
    """A ``tgi`` upstream that generates text where embeddings were asked: a 502 envelope naming the problem."""
    with (
        openai.OpenAI(
            base_url=gateway("tgi") + "/v1", api_key="k", max_retries=0, default_headers=only("tgi")
        ) as client,
        pytest.raises(openai.InternalServerError) as err,
    ):
        client.embeddings.create(model=EMBEDDING_MODEL, input="hello", encoding_format="float")
    assert err.value.status_code == 502 and fake.last().path == "/"
    assert isinstance(err.value.body, str) and err.value.body.startswith(
        "The upstream's answer could not be translated"
    )


@pytest.mark.parametrize("style", ["tgi", "detail", "detail-list", "list", "text", "openai"])
def test_upstream_422_is_a_validation_error_for_text_generation(
    gateway: Callable[..., str], fake: FakeHF, style: str
) -> None:
    """TGI semantics on a translated route: a 422 is ``ValidationError`` in ``text_generation`` (hf_api.md §8.4)."""
    headers = only("openai", **{"x-fake-scenario": f"error:422:{style}"})
    with (
        InferenceClient(base_url=gateway("openai", default_model=DEFAULT_MODEL), headers=headers) as client,
        pytest.raises(ValidationError) as err,
    ):
        client.text_generation(PROMPT)
    assert error_message(422) in str(err.value)


@pytest.mark.parametrize("style", ["tgi", "openai", "detail", "array", "html"])
def test_upstream_errors_on_translated_openai_routes(gateway: Callable[..., str], fake: FakeHF, style: str) -> None:
    """Completions on the router and embeddings on serverless: the openai client gets the status and message."""
    headers = only("router", **{"x-fake-scenario": f"error:400:{style}"})
    with (
        openai.OpenAI(base_url=gateway("router") + "/v1", api_key="k", max_retries=0, default_headers=headers) as c,
        pytest.raises(openai.BadRequestError) as err,
    ):
        c.completions.create(model=DEFAULT_MODEL, prompt=PROMPT, max_tokens=2)
    assert fake.last().path == f"/hf-inference/models/{DEFAULT_MODEL}"
    assert err.value.status_code == 400  # the openai client's `body` is the envelope's `error` string
    assert err.value.body == (HTTPStatus(400).phrase if style == "html" else error_message(400))
    headers = only("serverless", **{"x-fake-scenario": f"error:503:{style}"})
    base = gateway("serverless") + "/v1"
    with (
        openai.OpenAI(base_url=base, api_key="k", max_retries=0, default_headers=headers) as c,
        pytest.raises(openai.APIStatusError) as failed,
    ):
        c.embeddings.create(model=EMBEDDING_MODEL, input="x")
    assert failed.value.status_code == 503
    assert failed.value.body == (HTTPStatus(503).phrase if style == "html" else error_message(503))
    assert fake.last().path == f"/pipeline/feature-extraction/{EMBEDDING_MODEL}"


@pytest.mark.parametrize("style", ["tgi", "openai", "detail-list", "array", "empty"])
def test_upstream_errors_on_translated_hf_tasks(gateway: Callable[..., str], fake: FakeHF, style: str) -> None:
    """feature_extraction over ``/v1/embeddings``: HFH's error holds the status and upstream message."""
    headers = only("openai", **{"x-fake-scenario": f"error:400:{style}"})
    base = gateway("openai") + "/models/org/embedder/pipeline/feature-extraction"
    with InferenceClient(base_url=base, headers=headers) as client, pytest.raises(HfHubHTTPError) as err:
        client.feature_extraction("hello")
    check_http_error(err.value, 400, style)
    assert fake.last().path == "/v1/embeddings"


IN_STREAM_ERRORS = [("stream-error", GenerationError), ("stream-error-openai", ValidationError)]


@pytest.mark.parametrize(("name", "error"), IN_STREAM_ERRORS, ids=[n for n, _ in IN_STREAM_ERRORS])
@pytest.mark.parametrize("quirks", QUIRKS, ids=["hf", "transformers"])
def test_in_stream_error_on_translated_text_generation(
    gateway: Callable[..., str], fake: FakeHF, name: str, error: type[TextGenerationError], quirks: str | None
) -> None:
    """The upstream fails after two completion chunks: ``text_generation(stream=True)`` raises the typed error."""
    headers = only("openai", quirks, **{"x-fake-scenario": name})
    seen: list[str] = []
    with (
        InferenceClient(base_url=gateway("openai", default_model=DEFAULT_MODEL), headers=headers) as client,
        pytest.raises(error) as err,
    ):
        for text in client.text_generation(PROMPT, max_new_tokens=6, stream=True):
            seen.append(text)
    assert str(err.value) == STREAM_ERROR and fake.last().path == "/v1/completions"
    assert seen == token_texts(PROMPT, 2)  # both tokens the upstream sent, the held-back one too


@pytest.mark.parametrize(
    "via",
    [
        "completions",
        "chat",
    ],
)
def test_in_stream_error_keeps_every_token_the_upstream_sent(
    gateway: Callable[..., str], fake: FakeHF, catalog_file: str, via: str
) -> None:
    """Both tokens the upstream streamed before failing reach the client (the held one too), then the error."""
    if via == "completions":
        base, kind = gateway("openai", default_model=DEFAULT_MODEL), "openai"
    else:
        base, kind = (
            gateway("router", models_file=catalog_file) + "/models/org/chat-writer/pipeline/text-generation",
            "router",
        )
    seen: list[str] = []
    with (
        InferenceClient(base_url=base, headers=only(kind, **{"x-fake-scenario": "stream-error"})) as client,
        pytest.raises(GenerationError) as err,
    ):
        for text in client.text_generation(PROMPT, max_new_tokens=6, stream=True):
            seen.append(text)
    assert seen == token_texts(PROMPT, 2) and str(err.value) == STREAM_ERROR


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_in_stream_error_on_translated_completions(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """A completions stream over TGI events that fails: the tokens so far, then ``APIError`` with the message."""
    headers = only(kind, **{"x-fake-scenario": "stream-error"})
    seen: list[str] = []
    base = gateway(kind, default_model=DEFAULT_MODEL) + "/v1"
    with (
        openai.OpenAI(base_url=base, api_key="k", max_retries=0, default_headers=headers) as client,
        pytest.raises(openai.APIError) as err,
    ):
        for chunk in client.completions.create(model=DEFAULT_MODEL, prompt=PROMPT, max_tokens=6, stream=True):
            seen.append(chunk.choices[0].text)
    assert seen == token_texts(PROMPT, 2) and err.value.body == STREAM_ERROR
