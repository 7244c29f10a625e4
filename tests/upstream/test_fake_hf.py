"""The fake HF upstream is faithful: real clients (huggingface_hub, openai, httpx) driven straight at it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from huggingface_hub import AsyncInferenceClient, InferenceClient
from huggingface_hub.errors import GenerationError, HfHubHTTPError, OverloadedError, UnknownError, ValidationError

from tests.servers import serve
from tests.upstream import (
    FakeHF,
    count_tokens,
    error_body,
    expected_chat,
    expected_embedding,
    expected_features,
    expected_fill_mask,
    expected_generation,
    expected_question_answering,
    expected_sentence_similarity,
    expected_summarization,
    expected_table_question_answering,
    expected_text_classification,
    expected_token_classification,
    expected_translation,
    expected_zero_shot,
    token_texts,
)
from tests.upstream.fake_hf import ONLY_KINDS, Scenario, dropping_server, resolve, serves
from tests.upstream.shapes import ERROR_STYLES, SYSTEM_FINGERPRINT, run_task

MESSAGES: list[Any] = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a story"}]


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[FakeHF, str]]:
    """One fake for the module (tests use distinct ``x-fake-key`` values)."""
    fake = FakeHF()
    with serve(fake) as url:
        yield fake, url


@pytest.fixture
def fake(served: tuple[FakeHF, str]) -> Iterator[FakeHF]:
    """The module's fake, cleared for each test; open gates are released afterwards."""
    served[0].clear()
    yield served[0]
    served[0].release_all()


@pytest.fixture
def url(served: tuple[FakeHF, str]) -> str:
    """The module's fake base URL."""
    return served[1]


def sse_data(text: str) -> list[str]:
    """The payloads of the ``data:`` lines of an SSE body (with or without the space)."""
    return [line[5:].lstrip(" ") for line in text.split("\n") if line.startswith("data:")]


def picked(outputs: list[Any], expected: list[dict[str, Any]]) -> bool:
    """Whether the client's parsed outputs carry exactly the expected fields (and as many items)."""
    return [{k: getattr(o, k) for k in e} for o, e in zip(outputs, expected, strict=True)] == expected


def scenario(value: str, key: str) -> dict[str, str]:
    """Headers selecting a scenario under an attempt-counting key."""
    return {"x-fake-scenario": value, "x-fake-key": key}


# --- pure parts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/", ("compat", None, None)),
        ("POST", "/generate_stream", ("stream", None, None)),
        ("POST", "/v1/chat/completions", ("chat", None, None)),
        ("POST", "/models/org/name/v1/chat/completions", ("chat", "org/name", None)),
        ("POST", "/hf-inference/models/org/name/v1/chat/completions", ("chat", "org/name", None)),
        ("POST", "/hf-inference/models/org/name", ("task", "org/name", None)),
        (
            "POST",
            "/hf-inference/models/org/name/pipeline/feature-extraction",
            ("task", "org/name", "feature-extraction"),
        ),
        ("POST", "/pipeline/sentence-similarity/org/name", ("task", "org/name", "sentence-similarity")),
        ("POST", "/models/org/name/v1/completions", ("completions", "org/name", None)),
        ("POST", "/v1/embeddings", ("embeddings", None, None)),
        ("GET", "/v1/models/org/name", ("model", "org/name", None)),
        ("GET", "/health", ("health", None, None)),
        ("DELETE", "/", ("method", None, None)),
        ("POST", "/elsewhere", ("not-found", None, None)),
    ],
)
def test_paths_resolve_with_slashes_in_model_ids(
    method: str, path: str, expected: tuple[str, str | None, str | None]
) -> None:
    assert resolve(method, path) == expected


def test_scenario_grammar() -> None:
    scen = Scenario.parse("loading:2:0.5, rate:1, drop:3, error:502:html:1, chunks:4, delay:0.01, gate, nospace")
    assert scen.loading == (2, 0.5) and scen.rate == (1, 1.0) and scen.drop == 3
    assert scen.error == (502, "html", 1) and scen.chunks == 4 and scen.delay == 0.01
    assert scen.gate and scen.nospace and not scen.stream_drop
    assert Scenario.parse("error:422").error == (422, "tgi", None)
    assert Scenario.parse("stream-error-openai").stream_error == "openai"
    for bad in ("explode", "error:500:yaml", "chunks", "gate:1"):
        with pytest.raises(ValueError):
            Scenario.parse(bad)


def test_outputs_are_deterministic_functions_of_the_input() -> None:
    assert expected_generation("a b", 3) == expected_generation("a b", 3) != expected_generation("a c", 3)
    assert len(expected_generation("x", 5).split()) == 5 and count_tokens(" a  b\nc ") == 3
    assert expected_embedding("abc") != expected_embedding("abd") and len(expected_embedding("abc", 3)) == 3
    assert run_task("summarization", "one two three") == [{"summary_text": "one two"}]  # raw body = inputs
    with pytest.raises(ValueError):
        run_task("image-to-video", {"inputs": "x"})


# --- huggingface_hub InferenceClient --------------------------------------------------------------


@pytest.mark.socket
def test_hfh_chat_completion(fake: FakeHF, url: str) -> None:
    with InferenceClient(base_url=url) as client:
        out = client.chat_completion(MESSAGES, model="org/chat-model", max_tokens=5)
        default = client.chat_completion(MESSAGES)
    assert out.choices[0].message.content == expected_chat(MESSAGES, 5)
    assert out.choices[0].finish_reason == "length" and out.model == "org/chat-model"
    assert out.object == "chat.completion" and out.id and out.created > 0
    assert out.system_fingerprint == SYSTEM_FINGERPRINT
    assert out.usage.prompt_tokens == 6 and out.usage.completion_tokens == 5 and out.usage.total_tokens == 11
    assert default.model == "dummy" and default.choices[0].finish_reason == "stop"
    assert default.choices[0].message.content == expected_chat(MESSAGES)
    sent = fake.last("/v1/chat/completions")
    assert sent.json["model"] == "dummy" and sent.json["messages"] == MESSAGES
    assert sent.headers["content-type"] == "application/json" and "hf_hub/" in sent.headers["user-agent"]


@pytest.mark.socket
def test_hfh_chat_stream_with_usage_chunk(fake: FakeHF, url: str) -> None:
    with InferenceClient(base_url=url + "/models/org/chat-model") as client:
        chunks = list(
            client.chat_completion(MESSAGES, stream=True, max_tokens=4, stream_options={"include_usage": True})
        )
    assert fake.last().path == "/models/org/chat-model/v1/chat/completions"
    content = [c.choices[0].delta.content for c in chunks if c.choices]
    assert "".join(str(c) for c in content) == expected_chat(MESSAGES, 4)
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[3].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert fake.streams["POST /models/org/chat-model/v1/chat/completions"].events_sent == 6  # 4 + usage + [DONE]


@pytest.mark.socket
def test_hfh_text_generation_details_on_tgi_root(fake: FakeHF, url: str) -> None:
    with InferenceClient(base_url=url) as client:
        out = client.text_generation("The prompt is here", details=True, max_new_tokens=4, seed=7)
        plain = client.text_generation("The prompt is here")
        full = client.text_generation("The prompt", return_full_text=True, max_new_tokens=2)
    assert out.generated_text == expected_generation("The prompt is here", 4)
    assert out.details is not None and out.details.finish_reason == "length" and out.details.generated_tokens == 4
    assert out.details.seed == 7 and out.details.prefill == []
    assert [t.text for t in out.details.tokens] == token_texts("The prompt is here", 4)
    assert plain == expected_generation("The prompt is here")
    assert full == "The prompt" + expected_generation("The prompt", 2)
    assert fake.last().path == "/" and fake.last().json == {
        "inputs": "The prompt",
        "parameters": {"max_new_tokens": 2, "return_full_text": True},
    }


@pytest.mark.socket
def test_hfh_text_generation_stream(fake: FakeHF, url: str) -> None:
    with InferenceClient(base_url=url) as client:
        texts = list(client.text_generation("Once upon", stream=True, max_new_tokens=3))
        events = list(client.text_generation("Once upon", stream=True, details=True, max_new_tokens=3))
    assert texts == token_texts("Once upon", 3)
    assert [e.index for e in events] == [1, 2, 3] and [e.token.text for e in events] == texts
    assert events[0].generated_text is None and events[0].details is None
    assert events[-1].generated_text == expected_generation("Once upon", 3)
    assert events[-1].details is not None and events[-1].details.finish_reason == "length"
    assert events[-1].details.generated_tokens == 3 and events[-1].details.input_length == 2


@pytest.mark.socket
def test_hfh_task_methods_get_the_wire_shapes(fake: FakeHF, url: str) -> None:
    def client(model: str) -> InferenceClient:
        return InferenceClient(base_url=f"{url}/models/fake/{model}")

    text = "Alice met Bob in Paris yesterday"
    masked = "Paris is the [MASK] of France"
    table = {"city": ["Paris", "Rome"], "country": ["France", "Italy"]}
    with client("text-classification") as c:
        labels = c.text_classification(text)
    assert picked(labels, expected_text_classification(text)) and len(labels) == 2  # all of [[...]]
    with client("summarization") as c:
        assert picked([c.summarization(text)], expected_summarization(text))
    with client("translation") as c:
        assert picked([c.translation(text, src_lang="en", tgt_lang="fr")], expected_translation(text, "fr"))
    with client("token-classification") as c:
        entities = c.token_classification(text)
    assert picked(entities, expected_token_classification(text))
    assert [e.word for e in entities] == ["Alice", "Bob", "Paris"]
    with client("question-answering") as c:
        answer = c.question_answering(question="Where did they meet?", context=text)
    assert picked([answer], [expected_question_answering("Where did they meet?", text)])
    with client("fill-mask") as c:
        assert picked(c.fill_mask(masked), expected_fill_mask(masked))
    with client("zero-shot-classification") as c:
        zero_shot = c.zero_shot_classification(text, ["travel", "cooking", "sport"])
    assert picked(zero_shot, expected_zero_shot(text, ["travel", "cooking", "sport"]))
    with client("table-question-answering") as c:
        assert picked(
            [c.table_question_answering(table, "Which city?")],
            [expected_table_question_answering("Which city?", table)],
        )
    assert fake.last().json == {"inputs": {"query": "Which city?", "table": table}, "parameters": {}}


@pytest.mark.socket
def test_hfh_feature_extraction_and_similarity(fake: FakeHF, url: str) -> None:
    with InferenceClient(base_url=f"{url}/models/fake/feature-extraction") as client:
        batch = client.feature_extraction(["first text", "second"])
        single = client.feature_extraction("first text")
    assert isinstance(batch, np.ndarray) and batch.shape == (2, 8) and single.shape == (8,)
    assert np.allclose(batch, np.array(expected_features(["first text", "second"]), dtype=np.float32))
    router = f"{url}/hf-inference/models/fake/feature-extraction/pipeline/feature-extraction"
    with InferenceClient(base_url=router) as client:
        small = client.feature_extraction("abc", dimensions=3, normalize=True)
    assert np.allclose(small, expected_embedding("abc", 3, normalize=True))
    assert fake.last().json == {"inputs": "abc", "normalize": True, "dimensions": 3}  # root-level parameters
    with InferenceClient(base_url=f"{url}/pipeline/sentence-similarity/fake/feature-extraction") as client:
        scores = client.sentence_similarity("a cat", ["a cat", "the dog"])
    assert scores == expected_sentence_similarity("a cat", ["a cat", "the dog"]) and scores[0] == 1.0


@pytest.mark.socket
def test_hfh_info_and_health_need_the_hf_inference_provider(fake: FakeHF, url: str) -> None:
    with InferenceClient(base_url=url, provider="hf-inference") as client:
        assert client.health_check() is True
        info = client.get_endpoint_info()
    assert info["model_id"] == fake.model_id and info["router"] == "text-generation-router"
    with InferenceClient(base_url=url) as client, pytest.raises(ValueError, match="not supported"):
        client.health_check()


@pytest.mark.socket
@pytest.mark.anyio
async def test_async_client_chat_stream(fake: FakeHF, url: str) -> None:
    async with AsyncInferenceClient(base_url=url) as client:
        stream = await client.chat_completion(MESSAGES, stream=True, max_tokens=3)
        parts = [c.choices[0].delta.content async for c in stream]
    assert "".join(str(p) for p in parts) == expected_chat(MESSAGES, 3)
    await fake.await_for(lambda: "POST /v1/chat/completions" in fake.streams)
    state = fake.streams["POST /v1/chat/completions"]
    assert state.finished and state.events_sent == 4


# --- openai client --------------------------------------------------------------------------------


@pytest.mark.socket
def test_openai_chat_embeddings_completions(fake: FakeHF, url: str) -> None:
    with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
        chat = client.chat.completions.create(model="org/m", messages=MESSAGES, max_tokens=3)
        stream = client.chat.completions.create(model="org/m", messages=MESSAGES, stream=True)
        streamed = "".join(c.choices[0].delta.content or "" for c in stream)
        emb = client.embeddings.create(model="org/e", input=["one", "two words"], dimensions=4)
        floats = client.embeddings.create(model="org/e", input="one", encoding_format="float")
        comp = client.completions.create(model="org/m", prompt=["a b", "c"], max_tokens=2)
    assert chat.choices[0].message.content == expected_chat(MESSAGES, 3) and chat.model == "org/m"
    assert chat.usage is not None and chat.usage.prompt_tokens == 6
    assert streamed == expected_chat(MESSAGES)
    assert [d.index for d in emb.data] == [0, 1] and emb.model == "org/e"
    assert np.allclose(emb.data[1].embedding, expected_embedding("two words", 4))  # decoded from base64
    assert emb.usage.prompt_tokens == 3 and emb.usage.total_tokens == 3
    assert floats.data[0].embedding == expected_embedding("one")
    assert [c.text for c in comp.choices] == [expected_generation("a b", 2), expected_generation("c", 2)]
    assert comp.usage is not None and comp.usage.completion_tokens == 4
    assert fake.last("/v1/embeddings").json == {"input": "one", "model": "org/e", "encoding_format": "float"}


@pytest.mark.socket
def test_openai_honours_retry_after(fake: FakeHF, url: str) -> None:
    headers = scenario("rate:1:0.05", "openai-retry")
    with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=1, default_headers=headers) as client:
        chat = client.chat.completions.create(model="m", messages=MESSAGES)
    assert chat.choices[0].message.content == expected_chat(MESSAGES)
    assert fake.attempts["openai-retry"] == 2


@pytest.mark.socket
def test_models_info_health_raw(fake: FakeHF, url: str) -> None:
    with httpx.Client(base_url=url) as client:
        models = client.get("/v1/models").json()
        health = client.get("/health")
        one = client.get("/v1/models/fake/summarization").json()
        missing = client.post("/models/nobody/nothing", json={"inputs": "x"})
        nowhere = client.post("/nowhere", json={})
    assert models["object"] == "list" and models["data"][0] == {
        "id": "fake/text-generation",
        "object": "model",
        "created": 0,
        "owned_by": "fake",
    }
    assert {"fake/summarization", "fake/feature-extraction"} <= {m["id"] for m in models["data"]}
    assert health.status_code == 200 and health.content == b""
    assert one["id"] == "fake/summarization"
    assert missing.status_code == 404 and missing.json() == {"error": "Model nobody/nothing does not exist"}
    assert nowhere.status_code == 404


@pytest.mark.socket
def test_wire_wrapping_of_tgi_routes(fake: FakeHF, url: str) -> None:
    body = {"inputs": "Hi there", "parameters": {"max_new_tokens": 2}}
    with httpx.Client(base_url=url) as client:
        compat = client.post("/", json=body)
        generate = client.post("/generate", json=body)
        classified = client.post("/models/fake/text-classification", json={"inputs": "abc"})
        invalid = client.post("/generate", json={"inputs": ""})
    assert compat.json() == [{"generated_text": expected_generation("Hi there", 2)}]
    assert generate.json() == {"generated_text": expected_generation("Hi there", 2)}
    assert generate.headers["x-generated-tokens"] == "2" and generate.headers["x-prompt-tokens"] == "2"
    assert classified.json() == [expected_text_classification("abc")]
    assert invalid.status_code == 422 and invalid.json()["error_type"] == "validation"


# --- SSE framing ----------------------------------------------------------------------------------


@pytest.mark.socket
def test_done_only_on_openai_routes(fake: FakeHF, url: str) -> None:
    with httpx.Client(base_url=url) as client:
        tgi = client.post("/generate_stream", json={"inputs": "x y", "parameters": {"max_new_tokens": 2}})
        compat = client.post("/", json={"inputs": "x y", "stream": True})
        chat = client.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True})
        comp = client.post("/v1/completions", json={"model": "m", "prompt": "p", "stream": True})
    assert tgi.headers["content-type"] == "text/event-stream" and tgi.headers["x-accel-buffering"] == "no"
    assert tgi.headers["cache-control"] == "no-cache"
    assert "[DONE]" not in tgi.text and "[DONE]" not in compat.text and len(sse_data(compat.text)) == 8
    assert tgi.text.startswith("data: {") and tgi.text.endswith("}\n\n")
    assert json.loads(sse_data(tgi.text)[-1])["generated_text"] == expected_generation("x y", 2)
    for stream in (chat, comp):
        assert stream.text.endswith("\n\ndata: [DONE]\n\n")
        assert all(json.loads(d)["usage"] is None for d in sse_data(chat.text)[:-1])


@pytest.mark.socket
def test_nospace_framing(fake: FakeHF, url: str) -> None:
    headers = {"x-fake-scenario": "nospace,chunks:2"}
    with httpx.Client(base_url=url, headers=headers) as client:
        chat = client.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True})
    assert chat.text.startswith("data:{") and chat.text.endswith("\n\ndata:[DONE]\n\n") and "data: " not in chat.text
    with InferenceClient(base_url=url, headers=headers) as hf:
        assert list(hf.text_generation("a b", stream=True)) == token_texts("a b", 2)  # HFH tolerates it on TGI


@pytest.mark.socket
def test_chunks_and_delay(fake: FakeHF, url: str) -> None:
    headers = scenario("chunks:3,delay:0.05", "paced")
    started = time.monotonic()
    with InferenceClient(base_url=url, headers=headers) as client:
        texts = list(client.text_generation("go", stream=True, max_new_tokens=20))
    assert texts == token_texts("go", 3) and time.monotonic() - started >= 0.1


# --- behaviours on demand ---------------------------------------------------------------------------


@pytest.mark.socket
def test_loading_counts_attempts_per_key(fake: FakeHF, url: str) -> None:
    path = "/models/fake/summarization"
    with httpx.Client(base_url=url) as client:
        codes = [client.post(path, json={"inputs": "a b"}, headers=scenario("loading:2:1.5", "A")) for _ in range(3)]
        other = client.post(path, json={"inputs": "a b"}, headers=scenario("loading:2:1.5", "B"))
        waited = client.post(
            path, json={"inputs": "a b"}, headers={**scenario("loading:1:0.01", "C"), "x-wait-for-model": "true"}
        )
    assert [r.status_code for r in codes] == [503, 503, 200]
    assert codes[0].json() == {"error": "Model fake/summarization is currently loading", "estimated_time": 1.5}
    assert codes[2].json() == expected_summarization("a b")
    assert other.status_code == 503 and fake.attempts == {"A": 3, "B": 1, "C": 1}
    assert waited.status_code == 200  # x-wait-for-model blocks instead of answering 503
    with InferenceClient(base_url=url + path, headers=scenario("loading:1", "D")) as hf:
        with pytest.raises(HfHubHTTPError, match="currently loading") as err:
            hf.summarization("a b")
        assert err.value.response.status_code == 503
        assert hf.summarization("a b").summary_text == "a"


@pytest.mark.socket
def test_rate_limit(fake: FakeHF, url: str) -> None:
    with httpx.Client(base_url=url) as client:
        limited = client.post("/generate", json={"inputs": "x"}, headers=scenario("rate:1:2", "R"))
        passed = client.post("/generate", json={"inputs": "x"}, headers=scenario("rate:1:2", "R"))
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert limited.json() == {"error": "Rate limit reached", "error_type": "overloaded"}
    assert passed.status_code == 200
    with InferenceClient(base_url=url, headers=scenario("rate:1", "R2")) as hf, pytest.raises(OverloadedError):
        hf.text_generation("x")


@pytest.mark.socket
@pytest.mark.parametrize("style", ERROR_STYLES)
def test_error_styles_exact_bodies(fake: FakeHF, url: str, style: str) -> None:
    with httpx.Client(base_url=url) as client:
        response = client.post("/v1/chat/completions", json={}, headers={"x-fake-scenario": f"error:502:{style}"})
    body, content_type = error_body(502, style)
    assert response.status_code == 502 and response.content == body
    assert response.headers.get("content-type") == content_type


@pytest.mark.socket
def test_error_bodies_seen_by_hfh(fake: FakeHF, url: str) -> None:
    with InferenceClient(base_url=url, headers={"x-fake-scenario": "error:422"}) as hf, pytest.raises(ValidationError):
        hf.text_generation("x")
    assert json.loads(error_body(422, "tgi")[0]) == {"error": "Fake upstream error 422", "error_type": "validation"}
    assert json.loads(error_body(400, "openai")[0])["error"]["type"] == "invalid_request_error"
    headers = scenario("error:500:text:1", "once")
    with httpx.Client(base_url=url, headers=headers) as client:
        assert [client.post("/generate", json={"inputs": "x"}).status_code for _ in range(2)] == [500, 200]


@pytest.mark.socket
def test_bad_scenario_header_is_a_400(fake: FakeHF, url: str) -> None:
    response = httpx.post(url + "/generate", json={"inputs": "x"}, headers={"x-fake-scenario": "explode"})
    assert response.status_code == 400 and "explode" in response.json()["error"]


@pytest.mark.socket
def test_in_stream_errors(fake: FakeHF, url: str) -> None:
    seen: list[str] = []
    with (
        InferenceClient(base_url=url, headers={"x-fake-scenario": "stream-error"}) as hf,
        pytest.raises(GenerationError, match="fake stream error"),
    ):
        for text in hf.text_generation("a", stream=True):
            seen.append(text)
    assert seen == token_texts("a", 2)
    with (
        InferenceClient(base_url=url, headers={"x-fake-scenario": "stream-error-openai"}) as hf,
        pytest.raises(UnknownError, match="http_status_code"),
    ):
        list(hf.chat_completion(MESSAGES, stream=True))
    raw = httpx.post(
        url + "/v1/chat/completions",
        json={"messages": MESSAGES, "stream": True},
        headers={"x-fake-scenario": "stream-error-openai"},
    )
    last = json.loads(sse_data(raw.text)[-1])
    assert last == {
        "error": {"message": "Request failed during generation: fake stream error", "http_status_code": 422}
    }
    assert "[DONE]" not in raw.text and len(sse_data(raw.text)) == 3


@pytest.mark.socket
def test_drops(fake: FakeHF, url: str) -> None:
    with httpx.Client(base_url=url) as client:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            client.post("/generate", json={"inputs": "x"}, headers=scenario("drop:1", "drop"))
        assert client.post("/generate", json={"inputs": "x"}, headers=scenario("drop:1", "drop")).status_code == 200
        lines: list[str] = []
        dropping = scenario("stream-drop", "sd")
        with (
            pytest.raises(httpx.RemoteProtocolError, match="incomplete"),
            client.stream("POST", "/generate_stream", json={"inputs": "x"}, headers=dropping) as r,
        ):
            lines.extend(r.iter_lines())
    assert len([line for line in lines if line.startswith("data: ")]) == 2
    state = fake.streams["sd"]
    assert state.aborted and not state.finished and state.events_sent == 2
    with dropping_server() as dead, httpx.Client() as client, pytest.raises(httpx.TransportError):
        client.post(dead + "/generate", json={"inputs": "x"})


@pytest.mark.socket
def test_slow_and_stall(fake: FakeHF, url: str) -> None:
    started = time.monotonic()
    slow = httpx.post(url + "/generate", json={"inputs": "x"}, headers={"x-fake-scenario": "slow:0.2"})
    assert slow.status_code == 200 and time.monotonic() - started >= 0.2
    timeout = httpx.Timeout(5.0, read=0.2)
    with httpx.Client(base_url=url, timeout=timeout) as client:
        with client.stream("POST", "/generate_stream", json={"inputs": "x"}, headers=scenario("stall:10", "st")) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("data: {")
            with pytest.raises(httpx.ReadTimeout):
                list(lines)
        with pytest.raises(httpx.ReadTimeout):
            client.post("/generate", json={"inputs": "x"}, headers={"x-fake-scenario": "slow:10"})
    fake.wait_for(lambda: fake.streams["st"].cancelled)
    state = fake.streams["st"]
    assert state.events_sent == 1 and not state.finished


@pytest.mark.socket
def test_gate_and_release(fake: FakeHF, url: str) -> None:
    with InferenceClient(base_url=url, headers=scenario("gate", "g")) as hf:
        stream = hf.text_generation("go now", stream=True, max_new_tokens=3)
        first = next(iter(stream))
        fake.wait_for(lambda: fake.gated("g"))
        assert first == token_texts("go now", 3)[0] and fake.streams["g"].events_sent == 1
        fake.release("g")
        rest = list(stream)
    assert [first, *rest] == token_texts("go now", 3) and fake.streams["g"].finished
    fake.release("early")  # a release before the gate is reached lets the next gated stream through
    response = httpx.post(url + "/generate_stream", json={"inputs": "x"}, headers=scenario("gate", "early"))
    assert len(sse_data(response.text)) == 8


@pytest.mark.socket
@pytest.mark.anyio
async def test_cancellation_recorded_when_client_leaves(fake: FakeHF, url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=scenario("gate", "c")) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    break
            await fake.await_for(lambda: fake.gated("c"))
    await fake.await_for(lambda: fake.streams["c"].cancelled)
    state = fake.streams["c"]
    assert state.events_sent == 1 and not state.finished and not fake.gated("c")


@pytest.mark.socket
def test_gate_after_n_events(fake: FakeHF, url: str) -> None:
    with InferenceClient(base_url=url, headers=scenario("gate-after:2", "g2")) as hf:
        stream = iter(hf.text_generation("go now", stream=True, max_new_tokens=4))
        first, second = next(stream), next(stream)
        fake.wait_for(lambda: fake.gated("g2"))
        assert fake.streams["g2"].events_sent == 2
        fake.release("g2")
        rest = list(stream)
    assert [first, second, *rest] == token_texts("go now", 4) and fake.streams["g2"].finished
    assert Scenario.parse("gate-after:3").gate_after == 3 and not Scenario.parse("gate-after:3").gate
    for bad in ("gate-after", "gate-after:0", "gate-after:x"):
        with pytest.raises(ValueError):
            Scenario.parse(bad)


@pytest.mark.socket
def test_root_of_an_endpoint_serves_its_models_task() -> None:
    """A fake whose ``model_id`` is not a generator answers its task on ``POST /`` (a TEI-style endpoint)."""
    fake = FakeHF(model_id="fake/feature-extraction")
    with serve(fake) as url, httpx.Client(base_url=url) as client:
        one = client.post("/", json={"inputs": "hello", "normalize": True})
        many = client.post("/", json={"inputs": ["a", "bc"], "dimensions": 3})
        generated = client.post("/generate", json={"inputs": "a b", "parameters": {"max_new_tokens": 2}})
    assert one.json() == expected_embedding("hello", normalize=True)
    assert many.json() == [expected_embedding("a", 3), expected_embedding("bc", 3)]
    assert generated.json()["generated_text"] == expected_generation("a b", 2)


# --- transformers serve quirks ------------------------------------------------------------------------


@pytest.mark.socket
def test_transformers_quirks_per_request(fake: FakeHF, url: str) -> None:
    headers = {"x-fake-quirks": "transformers"}
    with httpx.Client(base_url=url, headers=headers) as client:
        body = {"model": "org/m", "messages": MESSAGES}
        plain = client.post("/v1/chat/completions", json=body).json()
        stream = client.post("/v1/chat/completions", json={**body, "stream": True})
        missing = client.post("/models/nobody/nothing", json={"inputs": "x"})
    assert plain["model"] == "org/m@main" and "system_fingerprint" not in plain
    assert "logprobs" not in plain["choices"][0] and plain["choices"][0]["message"]["content"] == expected_chat(
        MESSAGES
    )
    chunks = [json.loads(d) for d in sse_data(stream.text)]
    assert "[DONE]" not in stream.text and chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[-1]["usage"] == {"prompt_tokens": 6, "completion_tokens": 8, "total_tokens": 14}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c and "system_fingerprint" not in c for c in chunks[:-1])
    assert missing.status_code == 404 and missing.json() == {"detail": "Model nobody/nothing does not exist"}


@pytest.mark.socket
def test_transformers_quirks_with_real_clients() -> None:
    fake = FakeHF(quirks="transformers")
    with serve(fake) as url:
        with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
            stream = client.chat.completions.create(model="org/m", messages=MESSAGES, stream=True)
            chunks = list(stream)
        with InferenceClient(base_url=url) as hf:
            hf_chunks = list(hf.chat_completion(MESSAGES, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected_chat(MESSAGES) and chunks[-1].usage is not None and chunks[-1].model == "org/m@main"
    assert "".join(c.choices[0].delta.content or "" for c in hf_chunks) == expected_chat(MESSAGES)
    assert fake.lifespan_events == ["lifespan.startup", "lifespan.shutdown"]


# --- only one upstream kind's routes (x-fake-only) ---------------------------------------------------

#: (method, path, JSON body) of one request per route family the fake answers.
ONLY_PROBES: dict[str, tuple[str, str, Any]] = {
    "chat": ("POST", "/v1/chat/completions", {"model": "m", "messages": MESSAGES}),
    "completions": ("POST", "/v1/completions", {"model": "m", "prompt": "a b"}),
    "embeddings": ("POST", "/v1/embeddings", {"model": "m", "input": "a"}),
    "models": ("GET", "/v1/models", None),
    "model": ("GET", "/v1/models/fake/summarization", None),
    "health": ("GET", "/health", None),
    "info": ("GET", "/info", None),
    "compat": ("POST", "/", {"inputs": "a b"}),
    "generate": ("POST", "/generate", {"inputs": "a b"}),
    "generate_stream": ("POST", "/generate_stream", {"inputs": "a b"}),
    "router-task": ("POST", "/hf-inference/models/fake/summarization", {"inputs": "a b c"}),
    "router-pipeline": (
        "POST",
        "/hf-inference/models/fake/feature-extraction/pipeline/feature-extraction",
        {"inputs": "a"},
    ),
    "router-chat": ("POST", "/hf-inference/models/org/m/v1/chat/completions", {"messages": MESSAGES}),
    "serverless-task": ("POST", "/models/fake/summarization", {"inputs": "a b c"}),
    "serverless-pipeline": ("POST", "/pipeline/feature-extraction/fake/feature-extraction", {"inputs": "a"}),
    "serverless-chat": ("POST", "/models/org/m/v1/chat/completions", {"messages": MESSAGES}),
}
#: Which probes each kind answers (the others get 404 ``{"detail": "Not Found"}``).
ONLY_SERVED: dict[str, set[str]] = {
    "openai": {"chat", "completions", "embeddings", "models", "health"},
    "tgi": {"chat", "completions", "models", "health", "info", "compat", "generate", "generate_stream"},
    "router": {"chat", "models", "model", "router-task", "router-pipeline", "router-chat"},
    "serverless": {"serverless-task", "serverless-pipeline", "serverless-chat"},
}


def test_only_kinds_route_table() -> None:
    assert set(ONLY_SERVED) == set(ONLY_KINDS)
    for only, served in ONLY_SERVED.items():
        assert {name for name, (_, path, _) in ONLY_PROBES.items() if serves(only, path)} == served, only
    assert serves("openai", "/v1/chat/completions/") and not serves("openai", "/v1/models/org/m")
    assert serves("router", "/hf-inference/models/a/b") and not serves("router", "/models/a/b")
    assert serves("serverless", "/models/a/b/pipeline/x") and not serves("serverless", "/v1/chat/completions")
    with pytest.raises(ValueError, match="unknown upstream kind"):
        FakeHF(only="vllm")


@pytest.mark.socket
@pytest.mark.parametrize("only", ONLY_KINDS)
def test_only_header_serves_one_kinds_routes(fake: FakeHF, url: str, only: str) -> None:
    """Every route of the kind answers as without the header; every other route is FastAPI's plain 404."""
    with httpx.Client(base_url=url, headers={"x-fake-only": only}) as client:
        answers = {name: client.request(m, path, json=body) for name, (m, path, body) in ONLY_PROBES.items()}
    with httpx.Client(base_url=url) as client:
        free = {name: client.request(m, path, json=body) for name, (m, path, body) in ONLY_PROBES.items()}
    for name, response in answers.items():
        if name in ONLY_SERVED[only]:
            assert response.status_code == 200 == free[name].status_code, (name, response.text)
            if name not in ("chat", "router-chat", "serverless-chat", "completions"):  # ids and times differ
                assert response.content == free[name].content, name
        else:
            assert response.status_code == 404, name
            assert response.json() == {"detail": "Not Found"}, name
    assert len(fake.requests) == 2 * len(ONLY_PROBES)  # refused requests are recorded too


@pytest.mark.socket
def test_only_is_checked_before_scenarios_and_combines_with_quirks(fake: FakeHF, url: str) -> None:
    headers = {"x-fake-only": "openai", "x-fake-quirks": "transformers"}
    with httpx.Client(base_url=url, headers=headers) as client:
        refused = client.post("/generate", json={"inputs": "a"}, headers={"x-fake-scenario": "error:500"})
        failed = client.post("/v1/completions", json={"prompt": "a"}, headers={"x-fake-scenario": "error:500"})
        stream = client.post("/v1/chat/completions", json={"model": "org/m", "messages": MESSAGES, "stream": True})
        bad = client.get("/health", headers={"x-fake-only": "vllm"})
    assert refused.status_code == 404 and refused.json() == {"detail": "Not Found"}
    assert failed.status_code == 500 and failed.json() == {
        "error": "Fake upstream error 500",
        "error_type": "incomplete_generation",
    }
    chunks = [json.loads(d) for d in sse_data(stream.text)]
    assert "[DONE]" not in stream.text and chunks[-1]["usage"] is not None and chunks[0]["model"] == "org/m@main"
    assert bad.status_code == 400 and "x-fake-only" in bad.json()["error"]


@pytest.mark.socket
def test_only_with_real_clients(fake: FakeHF, url: str) -> None:
    """The clients send it with ``headers=`` / ``default_headers=``; a TGI call to an OpenAI-only server fails."""
    only = {"x-fake-only": "openai"}
    with InferenceClient(base_url=url, headers=only) as client:
        chat = client.chat_completion(MESSAGES, model="org/m", max_tokens=2)
        with pytest.raises(HfHubHTTPError) as refused:
            client.text_generation("a b", max_new_tokens=2)
    assert chat.choices[0].message.content == expected_chat(MESSAGES, 2)
    assert refused.value.response is not None and refused.value.response.status_code == 404
    assert fake.last().path == "/" and fake.last().headers["x-fake-only"] == "openai"
    with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, default_headers=only) as oai:
        comp = oai.completions.create(model="org/m", prompt="a b", max_tokens=2)
        with pytest.raises(openai.NotFoundError):
            oai.models.retrieve("fake/summarization")
    assert comp.choices[0].text == expected_generation("a b", 2)


@pytest.mark.socket
def test_only_for_a_whole_fake() -> None:
    fake = FakeHF(only="serverless")
    with serve(fake) as url, httpx.Client(base_url=url) as client:
        task = client.post("/models/fake/summarization", json={"inputs": "one two three"})
        chat = client.post("/v1/chat/completions", json={"messages": MESSAGES})
        overridden = client.post("/v1/chat/completions", json={"messages": MESSAGES}, headers={"x-fake-only": "tgi"})
    assert task.json() == expected_summarization("one two three")
    assert chat.status_code == 404 and chat.json() == {"detail": "Not Found"}
    assert overridden.status_code == 200


# --- recording ----------------------------------------------------------------------------------------


@pytest.mark.socket
def test_recording(fake: FakeHF, url: str) -> None:
    with httpx.Client(base_url=url) as client:
        client.post("/models/fake/summarization?x=1", json={"inputs": "a"}, headers={"X-Custom": "Yes"})
        client.post("/generate", content=b"not json", headers={"content-type": "text/plain"})
    first, second = fake.requests
    assert (first.method, first.path, first.query) == ("POST", "/models/fake/summarization", "x=1")
    assert first.headers["x-custom"] == "Yes" and first.json == {"inputs": "a"} and first.body == b'{"inputs":"a"}'
    assert second.json is None and second.body == b"not json" and fake.last() is second
    assert fake.last("/models/") is first
    fake.clear()
    assert fake.requests == [] and fake.attempts == {}
    with pytest.raises(LookupError):
        fake.last()
    with pytest.raises(TimeoutError):
        fake.wait_for(lambda: fake.requests, timeout=0.05)


def test_exports_match_the_shapes() -> None:
    assert isinstance(run_task("feature-extraction", {"inputs": ["a", "b"]}), list)
    payload: Any = run_task("text-classification", {"inputs": "xyz", "parameters": {"top_k": 1}})
    assert payload == [[{"label": "POSITIVE", "score": 0.675}]]
