"""Embeddings across dialects: OpenAI /v1/embeddings ⇄ HF feature-extraction, sentence-similarity via embeddings."""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hfasgi.catalog import ModelCatalog, ModelEntry
from hfasgi.context import RequestContext, encode_json
from hfasgi.errors import ErrorType, GatewayError
from hfasgi.forwarding.upstream import Upstream, UpstreamKind
from hfasgi.operations import Operation, Route
from hfasgi.reformat.base import Request, Translator, UpstreamShapeError
from hfasgi.reformat.embeddings import embeddings_to_features, features_to_embeddings, similarity_via_embeddings
from hfasgi.tokens import estimate_text
from tests.upstream import shapes

EMBEDDINGS = Operation(Route.EMBEDDINGS, "feature-extraction")
FEATURES = Operation(Route.TASK, "feature-extraction", path_model="embedder", task_forced=True)
SIMILARITY = Operation(Route.TASK, "sentence-similarity", path_model="embedder", task_forced=True)
URLS = {UpstreamKind.ROUTER: "https://router.example", UpstreamKind.SERVERLESS: "https://api.example"}


def request(op: Operation, document: Any, kind: UpstreamKind, model: str = "embedder") -> Request:
    upstream = Upstream(kind=kind, url=URLS.get(kind, "http://127.0.0.1:8080"))
    entry = ModelEntry(id="embedder", upstream_model="/srv/models/e5-small", task="feature-extraction")
    route = ModelCatalog([upstream], [entry]).resolve(model)
    return Request(op, route, op.task, document, RequestContext(op))


def to_features(document: Any, kind: UpstreamKind = UpstreamKind.ROUTER) -> Translator:
    return embeddings_to_features(request(EMBEDDINGS, document, kind))


def to_openai(document: Any) -> Translator:
    return features_to_embeddings(request(FEATURES, document, UpstreamKind.OPENAI))


def wire(document: Any) -> Any:
    """What the translator sees: the JSON as it comes off the wire."""
    return json.loads(encode_json(document))


def unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def float32(vector: list[float]) -> list[float]:
    return list(struct.unpack(f"<{len(vector)}f", struct.pack(f"<{len(vector)}f", *vector)))


def unpack(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def openai_answer(texts: list[str], vectors: list[Any] | None = None) -> dict[str, Any]:
    """An OpenAI embeddings answer, as the fake upstream builds it."""
    vectors = vectors if vectors is not None else [shapes.expected_embedding(t) for t in texts]
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    tokens = sum(shapes.count_tokens(t) for t in texts)
    return {"object": "list", "data": data, "model": "e5", "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def assert_client_error(exc: pytest.ExceptionInfo[GatewayError], error_type: str, *words: str) -> None:
    assert exc.value.status == 400
    assert exc.value.error_type == error_type
    for word in words:
        assert word in str(exc.value)


# --- OpenAI client → HF feature-extraction ----------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "url"),
    [
        (UpstreamKind.ROUTER, "https://router.example/hf-inference/models/e5-small/pipeline/feature-extraction"),
        (UpstreamKind.SERVERLESS, "https://api.example/pipeline/feature-extraction/e5-small"),
        (UpstreamKind.TGI, "http://127.0.0.1:8080/"),
    ],
)
def test_embeddings_go_to_the_feature_extraction_route_of_each_hf_upstream(kind: UpstreamKind, url: str) -> None:
    translator = embeddings_to_features(request(EMBEDDINGS, {"model": "e5", "input": "hi"}, kind, model="e5-small"))
    op = translator.upstream_op
    assert op == Operation(Route.TASK, "feature-extraction", path_model="e5-small", task_forced=True)
    upstream = request(EMBEDDINGS, None, kind).route.upstream
    assert upstream.call(op, "e5-small", op.task).url == url
    assert translator.client_done is True


def test_the_feature_extraction_body_keeps_only_hf_fields_at_the_root() -> None:
    document = {"model": "embedder", "input": ["a", "b"], "dimensions": 4, "encoding_format": "base64", "user": "u1"}
    assert to_features(document).body == {"inputs": ["a", "b"], "normalize": True, "dimensions": 4}
    assert to_features({"model": "embedder", "input": "a"}).body == {"inputs": "a", "normalize": True}


@pytest.mark.parametrize("normalized", [True, False])
def test_one_string_gets_one_unit_vector_with_the_asked_model_and_estimated_usage(normalized: bool) -> None:
    text = "The quick brown fox"
    answer = shapes.expected_features(text, normalize=normalized)
    out = to_features({"model": "embedder", "input": text}).response(wire(answer))
    assert out["object"] == "list"
    assert out["model"] == "embedder"
    assert out["usage"] == {"prompt_tokens": estimate_text(text), "total_tokens": estimate_text(text)}
    [item] = out["data"]
    assert item["object"] == "embedding"
    assert item["index"] == 0
    assert item["embedding"] == pytest.approx(unit(shapes.expected_embedding(text)), abs=1e-5)
    assert norm(item["embedding"]) == pytest.approx(1.0, abs=1e-4)


def test_an_already_normalised_answer_is_not_recomputed() -> None:
    answer = wire(shapes.expected_features("hello", normalize=True))
    out = to_features({"model": "embedder", "input": "hello"}).response(answer)
    assert out["data"][0]["embedding"] is answer


def test_a_list_gets_one_vector_per_input_in_order_and_summed_usage() -> None:
    texts = ["first input", "second", "ünïcødé text"]
    out = to_features({"model": "embedder", "input": texts}).response(wire(shapes.expected_features(texts)))
    assert [item["index"] for item in out["data"]] == [0, 1, 2]
    for item, text in zip(out["data"], texts, strict=True):
        assert item["embedding"] == pytest.approx(unit(shapes.expected_embedding(text)), abs=1e-6)
    total = sum(estimate_text(t) for t in texts)
    assert out["usage"] == {"prompt_tokens": total, "total_tokens": total}


def test_a_tei_style_batch_of_one_for_a_string_is_unwrapped() -> None:
    answer = [shapes.expected_embedding("hi", normalize=True)]  # TEI answers [[float]] even for one string
    out = to_features({"model": "embedder", "input": "hi"}, UpstreamKind.TGI).response(wire(answer))
    assert out["data"][0]["embedding"] == answer[0]


def test_a_bare_vector_for_a_one_item_list_is_that_item() -> None:
    vector = shapes.expected_embedding("hi", normalize=True)
    out = to_features({"model": "embedder", "input": ["hi"]}).response(wire(vector))
    assert [item["embedding"] for item in out["data"]] == [vector]


def mean(rows: list[list[float]]) -> list[float]:
    return [sum(row[j] for row in rows) / len(rows) for j in range(len(rows[0]))]


def token_vectors(text: str) -> list[list[float]]:
    """Token-level features: one vector per word."""
    return [shapes.expected_embedding(word, 6) for word in text.split()]


@pytest.mark.parametrize("wrapped", [False, True], ids=["tokens x hidden", "1 x tokens x hidden"])
def test_token_level_features_of_a_string_are_mean_pooled(wrapped: bool) -> None:
    text = "mean pool these four"
    rows = token_vectors(text)
    answer = [rows] if wrapped else rows
    out = to_features({"model": "embedder", "input": text}).response(wire(answer))
    assert out["data"][0]["embedding"] == pytest.approx(unit(mean(rows)))


@pytest.mark.parametrize("wrapped", [False, True], ids=["n x tokens x hidden", "n x 1 x tokens x hidden"])
def test_token_level_features_of_a_list_are_mean_pooled_per_input(wrapped: bool) -> None:
    texts = ["two words", "now three words", "one"]
    answer = [[token_vectors(t)] if wrapped else token_vectors(t) for t in texts]
    out = to_features({"model": "embedder", "input": texts}).response(wire(answer))
    for item, text in zip(out["data"], texts, strict=True):
        assert item["embedding"] == pytest.approx(unit(mean(token_vectors(text))))


def test_dimensions_truncates_a_longer_vector_and_normalises_it_again() -> None:
    full = shapes.expected_embedding("matryoshka", 8, normalize=True)
    out = to_features({"model": "embedder", "input": "matryoshka", "dimensions": 3}).response(wire(full))
    vector = out["data"][0]["embedding"]
    assert len(vector) == 3
    assert vector == pytest.approx(unit(full[:3]))
    assert norm(vector) == pytest.approx(1.0)


def test_dimensions_honoured_upstream_leaves_the_vector_as_sent() -> None:
    answer = wire(shapes.expected_features(["a", "bc"], 4, normalize=True))
    out = to_features({"model": "embedder", "input": ["a", "bc"], "dimensions": 4}).response(answer)
    assert [item["embedding"] for item in out["data"]] == answer


def test_base64_is_little_endian_float32_of_the_unit_vector() -> None:
    texts = ["base", "sixty four"]
    translator = to_features({"model": "embedder", "input": texts, "encoding_format": "base64"})
    out = translator.response(wire(shapes.expected_features(texts)))
    for item, text in zip(out["data"], texts, strict=True):
        assert isinstance(item["embedding"], str)
        expected = float32(unit(shapes.expected_embedding(text)))
        assert unpack(item["embedding"]) == pytest.approx(expected, abs=1e-7)


@given(
    st.lists(st.floats(min_value=-1e3, max_value=1e3, allow_nan=False), min_size=1, max_size=64).filter(
        lambda v: norm(v) > 1e-3
    ),
    st.sampled_from([None, 1, 5, 64]),
)
def test_base64_round_trips_through_struct(vector: list[float], dimensions: int | None) -> None:
    document: dict[str, Any] = {"model": "embedder", "input": "x"}
    if dimensions is not None:
        document["dimensions"] = dimensions
    floats = to_features(document).response(wire(vector))["data"][0]["embedding"]
    encoded = to_features({**document, "encoding_format": "base64"}).response(wire(vector))["data"][0]["embedding"]
    assert unpack(encoded) == float32(floats)  # exactly the float answer, as little-endian float32
    kept = vector[:dimensions] if dimensions is not None else vector
    assert len(floats) == len(kept)
    if norm(kept) > 1e-3:
        assert floats == pytest.approx(unit(kept), abs=2e-4)
        assert norm(floats) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize(
    ("document", "error_type", "words"),
    [
        ("just a string", ErrorType.INVALID_REQUEST, ["input"]),
        ({"model": "embedder"}, ErrorType.INVALID_REQUEST, ["input"]),
        ({"model": "embedder", "input": 3}, ErrorType.INVALID_REQUEST, ["input"]),
        ({"model": "embedder", "input": []}, ErrorType.INVALID_REQUEST, ["non-empty"]),
        ({"model": "embedder", "input": ["a", None]}, ErrorType.INVALID_REQUEST, ["input"]),
        ({"model": "embedder", "input": [1, 2, 3]}, ErrorType.UNSUPPORTED_OPERATION, ["Token-id", "string"]),
        ({"model": "embedder", "input": [[1, 2], [3]]}, ErrorType.UNSUPPORTED_OPERATION, ["Token-id"]),
        ({"model": "embedder", "input": "a", "dimensions": 0}, ErrorType.INVALID_REQUEST, ["dimensions"]),
        ({"model": "embedder", "input": "a", "dimensions": "4"}, ErrorType.INVALID_REQUEST, ["dimensions"]),
        ({"model": "embedder", "input": "a", "dimensions": True}, ErrorType.INVALID_REQUEST, ["dimensions"]),
        ({"model": "embedder", "input": "a", "encoding_format": "hex"}, ErrorType.INVALID_REQUEST, ["encoding_format"]),
    ],
)
def test_bad_embeddings_requests_are_400s(document: Any, error_type: str, words: list[str]) -> None:
    with pytest.raises(GatewayError) as exc:
        to_features(document)
    assert_client_error(exc, error_type, *words)


@pytest.mark.parametrize(
    ("inputs", "answer"),
    [
        ("a", {"data": [[0.1, 0.2]]}),
        ("a", []),
        ("a", [None, 0.5]),
        ("a", ["0.1", "0.2"]),
        ("a", [[0.1, 0.2], [0.3]]),  # ragged token vectors
        ("a", [[[0.1, 0.2]], 0.5]),
        ("a", [0.0, float("inf")]),
        ("a", [[]]),
        (["a", "b"], [[0.1, 0.2]]),  # one vector for two inputs
        (["a", "b"], [[0.1, 0.2], [0.3]]),  # ragged across inputs
        (["a", "b"], [[0.1, 0.2], "x"]),
        (["a", "b"], {"embeddings": [[0.1], [0.2]]}),
        (["a"], "nope"),
    ],
)
def test_answers_that_are_not_numeric_rectangles_are_upstream_errors(inputs: Any, answer: Any) -> None:
    translator = to_features({"model": "embedder", "input": inputs})
    with pytest.raises(UpstreamShapeError):
        translator.response(answer)


# --- HF feature-extraction client → OpenAI upstream -------------------------------------------


def test_feature_extraction_goes_to_openai_embeddings_with_the_upstream_model() -> None:
    document = {"inputs": ["a", "b"], "dimensions": 4, "truncate": True, "truncation_direction": "left"}
    translator = to_openai(document)
    assert translator.body == {
        "model": "/srv/models/e5-small",
        "input": ["a", "b"],
        "encoding_format": "float",
        "dimensions": 4,
    }
    op = translator.upstream_op
    assert op == Operation(Route.EMBEDDINGS, "feature-extraction", path_model="embedder")
    upstream = request(FEATURES, None, UpstreamKind.OPENAI).route.upstream
    assert upstream.call(op, "/srv/models/e5-small", op.task).url == "http://127.0.0.1:8080/v1/embeddings"
    assert translator.client_done is False


@pytest.mark.parametrize("normalize", [None, True])
def test_a_string_gets_one_normalised_vector(normalize: bool | None) -> None:
    document: dict[str, Any] = {"inputs": "Hello world"}
    if normalize is not None:
        document["normalize"] = normalize
    out = to_openai(document).response(wire(openai_answer(["Hello world"])))
    assert out == pytest.approx(unit(shapes.expected_embedding("Hello world")))


def test_normalize_false_returns_the_upstream_vectors_as_sent() -> None:
    texts = ["one", "two"]
    answer = wire(openai_answer(texts))
    out = to_openai({"inputs": texts, "normalize": False}).response(answer)
    assert out == shapes.expected_features(texts)
    assert out[0] is answer["data"][0]["embedding"]


def test_a_list_answer_is_put_back_in_index_order() -> None:
    texts = ["zero", "one", "two", "three"]
    answer = openai_answer(texts)
    answer["data"].reverse()
    out = to_openai({"inputs": texts, "normalize": False}).response(wire(answer))
    assert out == shapes.expected_features(texts)


def test_base64_embeddings_from_the_upstream_are_decoded() -> None:
    texts = ["b64", "sixty-four"]
    vectors = [base64.b64encode(struct.pack("<8f", *shapes.expected_embedding(t))).decode() for t in texts]
    out = to_openai({"inputs": texts, "normalize": False}).response(wire(openai_answer(texts, vectors)))
    assert out == [float32(shapes.expected_embedding(t)) for t in texts]


def test_feature_dimensions_truncate_a_longer_vector() -> None:
    text = "truncate me"
    answer = wire(openai_answer([text]))
    assert to_openai({"inputs": text, "dimensions": 5}).response(answer) == pytest.approx(
        unit(shapes.expected_embedding(text)[:5])
    )
    raw = to_openai({"inputs": text, "dimensions": 5, "normalize": False}).response(answer)
    assert raw == shapes.expected_embedding(text)[:5]


@pytest.mark.parametrize("body", ["legacy string", ["legacy", "list"]])
def test_a_bare_json_body_is_the_inputs(body: Any) -> None:
    translator = to_openai(body)
    assert translator.body["input"] == body
    texts = [body] if isinstance(body, str) else body
    out = translator.response(wire(openai_answer(texts)))
    vectors = [out] if isinstance(body, str) else out
    assert len(vectors) == len(texts)
    for vector, text in zip(vectors, texts, strict=True):
        assert vector == pytest.approx(unit(shapes.expected_embedding(text)))


@pytest.mark.parametrize(
    ("document", "error_type", "words"),
    [
        ({"inputs": "a", "prompt_name": "query"}, ErrorType.UNSUPPORTED_OPERATION, ["prompt_name"]),
        ({"inputs": "a", "encoding_format": "base64"}, ErrorType.UNSUPPORTED_OPERATION, ["encoding_format"]),
        ({"inputs": "a", "normalize": "yes"}, ErrorType.INVALID_REQUEST, ["normalize"]),
        ({"inputs": "a", "dimensions": -1}, ErrorType.INVALID_REQUEST, ["dimensions"]),
        ({"text": "a"}, ErrorType.INVALID_REQUEST, ["inputs"]),
        ({"inputs": [1, 2]}, ErrorType.INVALID_REQUEST, ["inputs"]),
        ({"inputs": []}, ErrorType.INVALID_REQUEST, ["inputs"]),
        (None, ErrorType.INVALID_REQUEST, ["inputs"]),
        (42, ErrorType.INVALID_REQUEST, ["inputs"]),
    ],
)
def test_bad_feature_extraction_requests_are_400s(document: Any, error_type: str, words: list[str]) -> None:
    with pytest.raises(GatewayError) as exc:
        to_openai(document)
    assert_client_error(exc, error_type, *words)


def item(index: Any, embedding: Any) -> dict[str, Any]:
    return {"object": "embedding", "index": index, "embedding": embedding}


@pytest.mark.parametrize(
    "answer",
    [
        [[0.1, 0.2], [0.3, 0.4]],  # HF-style, not OpenAI
        {"data": "nope"},
        {"data": [item(0, [0.1, 0.2])]},  # one for two
        {"data": [item(0, [0.1, 0.2]), item(0, [0.3, 0.4])]},  # repeated index
        {"data": [item(0, [0.1, 0.2]), item(2, [0.3, 0.4])]},  # out of range
        {"data": [item(0, [0.1, 0.2]), item("1", [0.3, 0.4])]},
        {"data": [item(0, [0.1, 0.2]), item(1, 0.3)]},
        {"data": [item(0, [0.1, 0.2]), item(1, [])]},
        {"data": [item(0, [0.1, 0.2]), item(1, ["a", "b"])]},
        {"data": [item(0, [0.1, 0.2]), item(1, [0.3])]},  # ragged
        {"data": [item(0, [0.1, 0.2]), item(1, "!!not base64!!")]},
        {"data": [item(0, [0.1, 0.2]), item(1, base64.b64encode(b"abc").decode())]},
        {"data": [item(0, [0.1, 0.2]), "x"]},
    ],
)
def test_bad_openai_answers_are_upstream_errors(answer: Any) -> None:
    for normalize in (True, False):
        translator = to_openai({"inputs": ["a", "b"], "normalize": normalize})
        with pytest.raises(UpstreamShapeError):
            translator.response(answer)


# --- sentence-similarity via embeddings ---------------------------------------------------------


def similarity(document: Any) -> Translator:
    return similarity_via_embeddings(request(SIMILARITY, document, UpstreamKind.OPENAI))


def test_similarity_sends_the_source_and_the_sentences_in_one_call() -> None:
    document = {"inputs": {"source_sentence": "a cat", "sentences": ["a dog", "a car"]}, "parameters": {}}
    translator = similarity(document)
    assert translator.body == {
        "model": "/srv/models/e5-small",
        "input": ["a cat", "a dog", "a car"],
        "encoding_format": "float",
    }
    assert translator.upstream_op == Operation(Route.EMBEDDINGS, "feature-extraction", path_model="embedder")


def test_similarity_answers_cosines_in_sentence_order() -> None:
    source, sentences = "That is a happy person", ["That is a happy dog", "Today is a sunny day", "x"]
    answer = openai_answer([source, *sentences])
    answer["data"] = answer["data"][::-1]  # any order; index decides
    out = similarity({"inputs": {"source_sentence": source, "sentences": sentences}}).response(wire(answer))
    assert out == pytest.approx(shapes.expected_sentence_similarity(source, sentences), abs=1e-6)


def test_similarity_against_a_zero_vector_is_zero_and_no_sentences_is_empty() -> None:
    answer = {"data": [item(0, [1.0, 0.0]), item(1, [0.0, 0.0]), item(2, [-2.0, 0.0])]}
    assert similarity({"inputs": {"source_sentence": "a", "sentences": ["b", "c"]}}).response(answer) == [0.0, -1.0]
    alone = {"data": [item(0, [1.0, 0.0])]}
    assert similarity({"inputs": {"source_sentence": "a", "sentences": []}}).response(alone) == []


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"inputs": "a cat"}, ["source_sentence"]),
        ({"inputs": {"sentences": ["b"]}}, ["source_sentence"]),
        ({"inputs": {"source_sentence": "a"}}, ["sentences"]),
        ({"inputs": {"source_sentence": "a", "sentences": "b"}}, ["sentences"]),
        ({"inputs": {"source_sentence": "a", "sentences": ["b", 2]}}, ["sentences"]),
        ({"inputs": {"source_sentence": 1, "sentences": ["b"]}}, ["source_sentence"]),
        ([1, 2], ["inputs"]),
    ],
)
def test_bad_similarity_requests_are_400s(document: Any, words: list[str]) -> None:
    with pytest.raises(GatewayError) as exc:
        similarity(document)
    assert_client_error(exc, ErrorType.INVALID_REQUEST, *words)


@pytest.mark.parametrize(
    "answer",
    [
        {"data": [item(0, [1.0, 0.0])]},  # one for two
        {"data": [item(0, [1.0, 0.0]), item(1, [1.0])]},  # ragged
        {"data": [item(0, [1.0, 0.0]), item(1, [None, 1.0])]},
        [[1.0, 0.0], [0.0, 1.0]],
    ],
)
def test_bad_similarity_answers_are_upstream_errors(answer: Any) -> None:
    with pytest.raises(UpstreamShapeError):
        similarity({"inputs": {"source_sentence": "a", "sentences": ["b"]}}).response(answer)
