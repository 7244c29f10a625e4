"""The provider-style task API (``/hf/tasks/…``, /work/shared/docs/provider_tasks_api.md) through ``httpx``.

Each endpoint becomes the gateway's canonical request (an HF task route, or chat for ``conversational``),
so it works on every upstream kind that can serve the task: the HF task API directly, an OpenAI-only
upstream through its completions, embeddings or chat (with a task prompt). The fake upstream serves only
the routes of the gateway's upstream kind (``x-fake-only``); answers are exact, computed with
``tests.upstream.shapes``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.clients import DEFAULT_MODEL, PROMPT
from tests.e2e.test_dialect_matrix import only, sse_events
from tests.upstream import (
    FakeHF,
    expected_chat,
    expected_embedding,
    expected_features,
    expected_generation,
    expected_question_answering,
    expected_summarization,
    expected_text_classification,
    expected_token_classification,
    expected_translation,
)
from tests.upstream.shapes import error_message, tgi_stream_events

pytestmark = pytest.mark.socket

TASKS = "/hf/tasks/"
TASK_KINDS = ("router", "serverless")
TEXT = "The quick brown fox jumps over the lazy dog near the river bank"
CONTEXT = "The fox lives in the forest near the river"
QUESTION = "Where does the fox live?"
CATALOG = """\
default_model = "fake/text-generation"

[[models]]
id = "acme/summarizer"
upstream_model = "fake/summarization"
task = "summarization"

[[models]]
id = "acme/embedder"
upstream_model = "fake/feature-extraction"
task = "feature-extraction"
"""


def task_path(kind: str, model: str, task: str | None = None) -> str:
    """Where the fake receives the HF task request for ``model`` (``task`` when the route names it)."""
    if kind == "router":
        if task in ("feature-extraction", "sentence-similarity"):
            return f"/hf-inference/models/{model}/pipeline/{task}"
        return f"/hf-inference/models/{model}"
    return f"/pipeline/{task}/{model}" if task else f"/models/{model}"


def call(base: str, endpoint: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    """``POST {prefix}{endpoint}`` on the gateway."""
    return httpx.post(f"{base}{TASKS}{endpoint}", json=body, headers=headers, timeout=30)


def check_envelope(response: httpx.Response, status: int, error_type: str, needle: str) -> None:
    """The gateway's error envelope: ``{"error": str, "error_type": str}`` with this status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "error_type"} and body["error_type"] == error_type, body
    assert isinstance(body["error"], str) and needle in body["error"], body
    assert response.headers["x-request-id"]


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("tasks-api") / "models.toml"
    path.write_text(CATALOG)
    return str(path)


# --- text generation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_text_generation(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """``{"output": [{"generated_text"}]}`` from the model's task route; ``max_tokens`` becomes ``max_new_tokens``."""
    base = gateway(kind, default_model=DEFAULT_MODEL)
    body = {"inputs": PROMPT, "parameters": {"max_tokens": 3, "model": DEFAULT_MODEL}}
    response = call(base, "text-generation", body, only(kind))
    assert response.status_code == 200, response.text
    assert response.json() == {"output": [{"generated_text": expected_generation(PROMPT, 3)}]}
    sent = fake.last()
    assert sent.path == task_path(kind, DEFAULT_MODEL, "text-generation")
    assert sent.json["inputs"] == PROMPT and sent.json["parameters"]["max_new_tokens"] == 3
    assert "model" not in sent.json["parameters"] and "max_tokens" not in sent.json["parameters"]
    default = call(base, "text-generation", {"inputs": PROMPT}, only(kind))  # the gateway's default model
    assert default.json() == {"output": [{"generated_text": expected_generation(PROMPT)}]}


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_text_generation_stream(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """``"stream": true``: TGI token events, one per ``data:`` line, no ``[DONE]``."""
    base = gateway(kind, default_model=DEFAULT_MODEL)
    body = {"inputs": PROMPT, "parameters": {"max_tokens": 4}, "stream": True}
    response = call(base, "text-generation", body, only(kind))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_events(response.content)
    assert "[DONE]" not in payloads
    assert [json.loads(p) for p in payloads] == tgi_stream_events(PROMPT, 4)
    assert fake.last().json["stream"] is True


def test_text_generation_on_an_openai_upstream(gateway: Callable[..., str], fake: FakeHF) -> None:
    """An OpenAI-only upstream generates through ``/v1/completions``, streamed or not."""
    base = gateway("openai", default_model=DEFAULT_MODEL)
    headers = only("openai", "transformers")
    plain = call(base, "text-generation", {"inputs": PROMPT, "parameters": {"max_tokens": 3}}, headers)
    assert plain.json() == {"output": [{"generated_text": expected_generation(PROMPT, 3)}]}
    assert fake.last().path == "/v1/completions" and fake.last().json["max_tokens"] == 3
    body = {"inputs": PROMPT, "parameters": {"max_tokens": 3}, "stream": True}
    events = [json.loads(p) for p in sse_events(call(base, "text-generation", body, headers).content)]
    assert [e["token"]["text"] for e in events] == [
        expected_generation(PROMPT, 3).split(" ")[0],
        *(" " + w for w in expected_generation(PROMPT, 3).split(" ")[1:]),
    ]
    assert events[-1]["generated_text"] == expected_generation(PROMPT, 3)


# --- conversational -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "quirks"), [("router", None), ("openai", "transformers"), ("tgi", None)])
def test_conversational(gateway: Callable[..., str], fake: FakeHF, kind: str, quirks: str | None) -> None:
    """The past turns alternate user and assistant in the chat request; the answer hands the conversation back."""
    base = gateway(kind, default_model=DEFAULT_MODEL)
    body = {
        "text": "What is AI?",
        "past_user_inputs": ["Hello"],
        "generated_responses": ["Hi there!"],
        "parameters": {"model": "org/chat-model", "max_tokens": 5},
    }
    response = call(base, "conversational", body, only(kind, quirks))
    assert response.status_code == 200, response.text
    sent = fake.last()
    messages = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there!"},
        {"role": "user", "content": "What is AI?"},
    ]
    assert sent.path == "/v1/chat/completions" and sent.json["messages"] == messages
    assert sent.json["model"] == "org/chat-model" and sent.json["max_tokens"] == 5
    reply = expected_chat(messages, 5)
    assert response.json() == {
        "generated_text": reply,
        "conversation": {"past_user_inputs": ["Hello", "What is AI?"], "generated_responses": ["Hi there!", reply]},
    }


# --- text-to-text tasks and question answering ------------------------------------------------------------------


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_summarization_translation_question_answering(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """Task models answer on their task routes; the provider shape takes the first item as ``output``."""
    base = gateway(kind)
    headers = only(kind)
    summary = call(base, "summarization", {"inputs": TEXT, "parameters": {"model": "fake/summarization"}}, headers)
    assert summary.json() == {"output": expected_summarization(TEXT)[0]}
    assert fake.last().path == task_path(kind, "fake/summarization", "summarization")
    body = {"inputs": "hello world", "parameters": {"src_lang": "en", "tgt_lang": "fr", "model": "fake/translation"}}
    translated = call(base, "translation", body, headers)
    assert translated.json() == {"output": expected_translation("hello world", "fr")[0]}
    assert fake.last().json["parameters"] == {"src_lang": "en", "tgt_lang": "fr"}
    body = {"inputs": {"question": QUESTION, "context": CONTEXT}, "parameters": {"model": "fake/question-answering"}}
    answer = call(base, "question-answering", body, headers)
    assert answer.json() == {"output": expected_question_answering(QUESTION, CONTEXT)}
    assert fake.last().path == task_path(kind, "fake/question-answering", "question-answering")


def test_text_tasks_via_chat_on_an_openai_upstream(gateway: Callable[..., str], fake: FakeHF) -> None:
    """With a chat model, summarization and translation are chat requests with a task prompt."""
    base = gateway("openai")
    headers = only("openai", "transformers")
    summary = call(base, "summarization", {"inputs": TEXT, "parameters": {"model": "org/chat"}}, headers)
    sent = fake.last()
    assert sent.path == "/v1/chat/completions" and sent.json["model"] == "org/chat"
    assert sent.json["messages"][-1] == {"role": "user", "content": TEXT}
    assert summary.json() == {"output": {"summary_text": expected_chat(sent.json["messages"])}}
    body = {
        "inputs": TEXT,
        "parameters": {
            "model": "org/chat",
            "src_lang": "en",
            "tgt_lang": "de",
            "generate_parameters": {"max_new_tokens": 3},
        },
    }
    translated = call(base, "translation", body, headers)
    sent = fake.last()
    assert "German" in sent.json["messages"][0]["content"] and sent.json["max_tokens"] == 3
    assert translated.json() == {"output": {"translation_text": expected_chat(sent.json["messages"], 3)}}


# --- classification and embeddings ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_classification(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """``{"output": <the HF task output>}``: text-classification ``[[…]]``, token-classification a flat list."""
    base = gateway(kind)
    body = {"inputs": TEXT, "parameters": {"model": "fake/text-classification", "top_k": 1}}
    labels = call(base, "text-classification", body, only(kind))
    assert labels.json() == {"output": [expected_text_classification(TEXT, 1)]}
    assert fake.last().json == {"inputs": TEXT, "parameters": {"top_k": 1}}
    body = {"inputs": "Alice met Bob in Paris", "parameters": {"model": "fake/token-classification"}}
    entities = call(base, "token-classification", body, only(kind))
    assert entities.json() == {"output": expected_token_classification("Alice met Bob in Paris")}


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_embedding(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """``embedding`` is feature-extraction: its options go at the root of the HF body."""
    base = gateway(kind)
    body = {"inputs": ["one", "two words"], "parameters": {"model": "fake/feature-extraction", "normalize": True}}
    vectors = call(base, "embedding", body, only(kind))
    assert vectors.json() == {"output": expected_features(["one", "two words"], normalize=True)}
    sent = fake.last()
    assert sent.path == task_path(kind, "fake/feature-extraction", "feature-extraction")
    assert sent.json == {"inputs": ["one", "two words"], "normalize": True}
    one = call(base, "embedding", {"inputs": "one", "parameters": {"model": "fake/feature-extraction"}}, only(kind))
    assert one.json() == {"output": expected_embedding("one")}


def test_embedding_on_an_openai_upstream(gateway: Callable[..., str], fake: FakeHF) -> None:
    """On an OpenAI-only upstream, ``embedding`` is one ``/v1/embeddings`` call; vectors are unit length."""
    base = gateway("openai")
    body = {"inputs": ["one", "two words"], "parameters": {"model": "org/embedder", "dimensions": 4}}
    answer = call(base, "embedding", body, only("openai")).json()
    assert fake.last().path == "/v1/embeddings" and fake.last().json["input"] == ["one", "two words"]
    for vector, text in zip(answer["output"], ["one", "two words"], strict=True):
        raw = expected_embedding(text, 4)
        norm = math.sqrt(sum(v * v for v in raw))
        assert vector == pytest.approx([v / norm for v in raw], rel=1e-9)


# --- run ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_run(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """``POST run`` names the task and the model at the root, and answers as that task's endpoint does."""
    base = gateway(kind, default_model=DEFAULT_MODEL)
    body = {"task": "summarization", "model": "fake/summarization", "inputs": TEXT, "parameters": {}}
    assert call(base, "run", body, only(kind)).json() == {"output": expected_summarization(TEXT)[0]}
    assert fake.last().path == task_path(kind, "fake/summarization", "summarization")
    body = {"task": "text-generation", "inputs": PROMPT, "parameters": {"max_tokens": 2}}
    assert call(base, "run", body, only(kind)).json() == {
        "output": [{"generated_text": expected_generation(PROMPT, 2)}]
    }
    body = {"task": "conversational", "model": "org/chat", "inputs": "Hi"}
    chat = call(base, "run", body, only(kind)).json()
    assert chat["generated_text"] == expected_chat([{"role": "user", "content": "Hi"}])
    assert chat["conversation"] == {"past_user_inputs": ["Hi"], "generated_responses": [chat["generated_text"]]}


# --- models ------------------------------------------------------------------------------------------------------


def test_models_listing(gateway: Callable[..., str], fake: FakeHF, catalog_file: str) -> None:
    """``GET models`` lists the catalog (ids, hub ids, tasks), filtered by ``task_type``; nothing goes upstream."""
    base = gateway("router", models_file=catalog_file)
    listed = httpx.get(f"{base}{TASKS}models").json()
    assert listed == {
        "models": [
            {"model_id": "fake/text-generation", "hub_model_id": "fake/text-generation", "task_type": None},
            {"model_id": "acme/summarizer", "hub_model_id": "fake/summarization", "task_type": "summarization"},
            {"model_id": "acme/embedder", "hub_model_id": "fake/feature-extraction", "task_type": "feature-extraction"},
        ],
        "count": 3,
        "task_types": ["feature-extraction", "summarization"],
    }
    embedding = httpx.get(f"{base}{TASKS}models", params={"task_type": "embedding"}).json()
    assert [m["model_id"] for m in embedding["models"]] == ["acme/embedder"] and embedding["count"] == 1
    assert fake.requests == []
    summary = call(base, "summarization", {"inputs": TEXT, "parameters": {"model": "acme/summarizer"}}, only("router"))
    assert summary.json() == {"output": expected_summarization(TEXT)[0]}
    assert fake.last().path == "/hf-inference/models/fake/summarization"


def test_models_map_joins_the_catalog(gateway: Callable[..., str], fake: FakeHF, tmp_path: Path) -> None:
    """``POST models/map`` (open to anyone without auth) adds a model: listed, served, written to the file."""
    catalog = tmp_path / "models.toml"
    catalog.write_text('default_model = "fake/text-generation"\n')
    base = gateway("serverless", models_file=str(catalog))
    mapping = {
        "provider_model_id": "acme/translator",
        "hub_model_id": "fake/translation",
        "task_type": "translation",
        "parameters": {"src_lang": "en", "tgt_lang": "fr"},
    }
    mapped = httpx.post(f"{base}{TASKS}models/map", json=mapping)
    assert mapped.status_code == 200, mapped.text
    answer = mapped.json()
    assert answer["success"] is True and isinstance(answer["message"], str) and answer["message"]
    assert (answer["provider_model_id"], answer["hub_model_id"]) == ("acme/translator", "fake/translation")
    listed = httpx.get(f"{base}{TASKS}models", params={"task_type": "translation"}).json()
    assert listed["models"] == [
        {"model_id": "acme/translator", "hub_model_id": "fake/translation", "task_type": "translation"}
    ]
    body = {"inputs": "hello world", "parameters": {"model": "acme/translator"}}
    translated = call(base, "translation", body, only("serverless"))
    assert translated.json() == {"output": expected_translation("hello world", "fr")[0]}  # the mapped default
    assert fake.last().path == "/pipeline/translation/fake/translation"
    assert "acme/translator" in catalog.read_text()


def test_models_map_with_the_documented_parameters(gateway: Callable[..., str], fake: FakeHF, tmp_path: Path) -> None:
    """A summarization model mapped with ``{"temperature": 0.7, "max_tokens": 2048}`` still answers."""
    catalog = tmp_path / "models.toml"
    catalog.write_text("")
    base = gateway("router", models_file=str(catalog))
    mapping = {
        "provider_model_id": "acme/summarizer-2",
        "hub_model_id": "fake/summarization",
        "task_type": "summarization",
        "parameters": {"temperature": 0.7, "max_tokens": 2048},
    }
    assert httpx.post(f"{base}{TASKS}models/map", json=mapping).status_code == 200
    summary = call(base, "summarization", {"inputs": TEXT, "parameters": {"model": "acme/summarizer-2"}}, {})
    assert summary.status_code == 200, summary.text
    assert summary.json() == {"output": expected_summarization(TEXT)[0]}


# --- errors ------------------------------------------------------------------------------------------------------


def test_client_errors_are_the_envelope(gateway: Callable[..., str], fake: FakeHF) -> None:
    """Bad provider requests get a clear 4xx in the envelope, and never reach the upstream."""
    base = gateway("router")
    check_envelope(call(base, "nope", {"inputs": "x"}, {}), 400, "invalid_request", "Unknown task 'nope'")
    check_envelope(call(base, "summarization", ["x"], {}), 400, "invalid_request", "JSON object")
    body: dict[str, Any] = {"parameters": {"model": "fake/summarization"}}
    check_envelope(call(base, "summarization", body, {}), 400, "invalid_request", "'inputs' is required")
    body = {"inputs": TEXT, "stream": True, "parameters": {"model": "fake/summarization"}}
    check_envelope(call(base, "summarization", body, {}), 400, "invalid_request", "does not stream")
    body = {"text": "hi", "past_user_inputs": ["a", "b"], "generated_responses": ["c"], "parameters": {"model": "m"}}
    check_envelope(call(base, "conversational", body, {}), 400, "invalid_request", "same length")
    body = {"inputs": PROMPT, "parameters": {"max_tokens": -1, "model": DEFAULT_MODEL}}
    check_envelope(call(base, "text-generation", body, {}), 400, "invalid_request", "max_tokens")
    check_envelope(call(base, "text-generation", {"inputs": PROMPT}, {}), 400, "model_required", "default model")
    check_envelope(call(base, "run", {"inputs": "x"}, {}), 400, "invalid_request", "'task' is required")
    wrong_method = httpx.get(f"{base}{TASKS}summarization")
    check_envelope(wrong_method, 405, "method_not_allowed", "use POST")
    assert wrong_method.headers["allow"] == "POST"
    check_envelope(httpx.post(f"{base}{TASKS}models/map", json={"hub_model_id": "x"}), 400, "invalid_request", "")
    assert fake.requests == []


@pytest.mark.parametrize("style", ["tgi", "detail", "openai", "array", "text"])
@pytest.mark.parametrize("kind", TASK_KINDS)
def test_upstream_errors_are_the_envelope(gateway: Callable[..., str], fake: FakeHF, kind: str, style: str) -> None:
    """An upstream error of any style keeps its status; the body is the envelope, never the provider shape."""
    headers = only(kind, **{"x-fake-scenario": f"error:422:{style}"})
    response = call(
        gateway(kind), "summarization", {"inputs": TEXT, "parameters": {"model": "fake/summarization"}}, headers
    )
    error_type = "invalid_request_error" if style == "openai" else "validation"
    check_envelope(response, 422, error_type, error_message(422))
    assert "output" not in response.json() and fake.last().path == task_path(
        kind, "fake/summarization", "summarization"
    )


def test_rate_limit_headers_on_task_answers(gateway: Callable[..., str], fake: FakeHF) -> None:
    """With a rate limit configured, task answers carry the ``X-RateLimit-*`` headers (and are counted)."""
    base = gateway("router", rate_limit="1000/minute")
    body = {"inputs": TEXT, "parameters": {"model": "fake/summarization"}}
    first, second = (call(base, "summarization", body, only("router")) for _ in range(2))
    for response in (first, second):
        assert response.json() == {"output": expected_summarization(TEXT)[0]}
        assert response.headers["x-ratelimit-limit"] == "1000" and int(response.headers["x-ratelimit-reset"]) > 0
    assert int(second.headers["x-ratelimit-remaining"]) < int(first.headers["x-ratelimit-remaining"]) < 1000


def test_rate_limit_headers_on_task_api_errors(gateway: Callable[..., str], fake: FakeHF) -> None:
    """A provider request refused by the task API itself still carries the rate-limit headers."""
    base = gateway("router", rate_limit="1000/minute")
    refused = call(base, "summarization", {"parameters": {"model": "fake/summarization"}}, only("router"))
    assert refused.status_code == 400
    assert refused.headers["x-ratelimit-limit"] == "1000"
