"""HF task answers put into the wire shapes clients parse (hf_api.md §8.6, §5.4)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from hfasgi.catalog import ModelCatalog
from hfasgi.context import RequestContext, encode_json
from hfasgi.forwarding.upstream import Upstream, UpstreamKind
from hfasgi.operations import Operation, Route
from hfasgi.reformat.base import UNCHANGED, Request, Translator, UpstreamShapeError
from hfasgi.reformat.task_shapes import TASKS_WITH_SHAPES, task_shapes
from tests.upstream import shapes

TEXT = "Hugging Face is based in New York City and Paris"
TABLE = {"city": ["Paris", "Rome"], "country": ["France", "Italy"]}
LABELS = ["travel", "cooking", "dancing"]


def build(task: str, document: Any = None, kind: UpstreamKind = UpstreamKind.ROUTER) -> Translator:
    op = Operation(Route.TASK, task, path_model="org/model", task_forced=True)
    route = ModelCatalog.single(Upstream(kind=kind, url="http://127.0.0.1:8080")).resolve("org/model")
    return task_shapes(
        Request(op, route, task, document if document is not None else {"inputs": TEXT}, RequestContext(op))
    )


def wire(document: Any) -> Any:
    return json.loads(encode_json(document))


def legacy_zero_shot(text: str) -> dict[str, Any]:
    """The old pipeline's zero-shot answer: ``{sequence, labels, scores}``."""
    pairs = shapes.expected_zero_shot(text, LABELS)
    return {"sequence": text, "labels": [p["label"] for p in pairs], "scores": [p["score"] for p in pairs]}


# Answers already in the shape clients need, per task (from the fake upstream's own functions).
RIGHT: dict[str, Callable[[], Any]] = {
    "text-classification": lambda: [shapes.expected_text_classification(TEXT)],
    "summarization": lambda: shapes.expected_summarization(TEXT),
    "translation": lambda: shapes.expected_translation(TEXT, "fr"),
    "zero-shot-classification": lambda: shapes.expected_zero_shot(TEXT, LABELS),
    "token-classification": lambda: shapes.expected_token_classification(TEXT),
    "fill-mask": lambda: shapes.expected_fill_mask("Paris is the [MASK] of France"),
    "image-classification": lambda: [{"label": "cat", "score": 0.9}, {"label": "dog", "score": 0.1}],
    "audio-classification": lambda: [{"label": "speech", "score": 0.8}],
    "object-detection": lambda: [{"label": "cat", "score": 0.9, "box": {"xmin": 1, "ymin": 2, "xmax": 3, "ymax": 4}}],
    "question-answering": lambda: shapes.expected_question_answering("Where?", TEXT),
    "table-question-answering": lambda: shapes.expected_table_question_answering("Which city?", TABLE),
    "automatic-speech-recognition": lambda: {"text": "hello world", "chunks": []},
    "text-generation": lambda: [shapes.tgi_generate_response(TEXT, 4)],
    "sentence-similarity": lambda: shapes.expected_sentence_similarity(TEXT, ["a", "b"]),
}


def test_every_task_with_a_shape_is_covered_here() -> None:
    assert set(RIGHT) == TASKS_WITH_SHAPES


@pytest.mark.parametrize("task", sorted(RIGHT))
def test_an_answer_in_shape_is_returned_as_the_same_object(task: str) -> None:
    translator = build(task)
    answer = wire(RIGHT[task]())
    assert translator.response(answer) is answer
    assert translator.upstream_op == Operation(Route.TASK, task, path_model="org/model", task_forced=True)
    assert translator.body is UNCHANGED
    assert translator.client_done is False


@pytest.mark.parametrize("task", ["feature-extraction", "text-to-image", "chat-completion", "image-segmentation"])
def test_other_tasks_pass_unchanged(task: str) -> None:
    assert task not in TASKS_WITH_SHAPES
    translator = build(task)
    assert type(translator) is Translator
    answer = wire(shapes.expected_features(["a", "b"]))
    assert translator.response(answer) is answer
    assert translator.body is UNCHANGED


def test_text_classification_flat_list_or_object_is_wrapped_in_one_list() -> None:
    inner = wire(shapes.expected_text_classification(TEXT))
    assert build("text-classification").response(inner) == [inner]
    assert build("text-classification").response(inner[0]) == [[inner[0]]]
    assert build("text-classification").response([]) == [[]]


def test_text_classification_of_a_batch_gets_one_list_per_input() -> None:
    texts = ["good", "bad", "ugly"]
    tops = [shapes.expected_text_classification(t, top_k=1)[0] for t in texts]
    assert build("text-classification", {"inputs": texts}).response(wire(tops)) == [[top] for top in tops]
    nested = wire([shapes.expected_text_classification(t) for t in texts])
    assert build("text-classification", {"inputs": texts}).response(nested) is nested


def test_text_classification_top_k_flat_list_stays_one_input() -> None:
    inner = wire(shapes.expected_text_classification(TEXT, top_k=2))
    translator = build("text-classification", {"inputs": TEXT, "parameters": {"top_k": 2}})
    assert translator.response(inner) == [inner]


@pytest.mark.parametrize(
    ("task", "key", "expected"),
    [
        ("summarization", "summary_text", shapes.expected_summarization(TEXT)),
        ("translation", "translation_text", shapes.expected_translation(TEXT, "de")),
    ],
)
def test_text_tasks_wrap_an_object_and_rename_tgi_generated_text(task: str, key: str, expected: Any) -> None:
    assert build(task).response(wire(expected[0])) == expected
    tgi = [{"generated_text": expected[0][key]}]  # a TGI server running the seq2seq model
    assert build(task, kind=UpstreamKind.TGI).response(wire(tgi)) == expected
    assert build(task).response({"generated_text": expected[0][key], "details": None}) == expected
    assert build(task).response([]) == []


def test_zero_shot_legacy_object_becomes_label_score_pairs() -> None:
    expected = shapes.expected_zero_shot(TEXT, LABELS)
    assert build("zero-shot-classification").response(wire(legacy_zero_shot(TEXT))) == expected
    assert build("zero-shot-classification").response(wire([legacy_zero_shot(TEXT)])) == expected
    assert build("zero-shot-classification").response(wire([expected])) == expected


def test_zero_shot_batch_keeps_one_list_per_input() -> None:
    texts = ["short", "a longer text here"]
    answer = wire([legacy_zero_shot(t) for t in texts])
    expected = [shapes.expected_zero_shot(t, LABELS) for t in texts]
    assert build("zero-shot-classification", {"inputs": texts}).response(answer) == expected
    one = build("zero-shot-classification", {"inputs": ["short"]}).response(wire([legacy_zero_shot("short")]))
    assert one == [shapes.expected_zero_shot("short", LABELS)]


@pytest.mark.parametrize(
    "task", ["token-classification", "fill-mask", "image-classification", "audio-classification", "object-detection"]
)
def test_flat_list_tasks_wrap_a_bare_object(task: str) -> None:
    first = wire(RIGHT[task]())[0]
    assert build(task).response(first) == [first]


def test_text_generation_wraps_the_generate_object() -> None:
    answer = wire(shapes.tgi_generate_response(TEXT, 3, details=True))
    assert build("text-generation").response(answer) == [answer]


@pytest.mark.parametrize("task", ["question-answering", "table-question-answering", "automatic-speech-recognition"])
def test_object_tasks_unwrap_a_one_item_list(task: str) -> None:
    answer = wire(RIGHT[task]())
    assert build(task).response([answer]) == answer


def test_question_answering_with_top_k_keeps_its_list() -> None:
    answers = wire(shapes.expected_question_answering("Where?", "one", top_k=2))  # one word: a one-item list
    assert len(answers) == 1
    translator = build(
        "question-answering", {"inputs": {"question": "Where?", "context": "one"}, "parameters": {"top_k": 2}}
    )
    assert translator.response(answers) is answers
    several = wire(shapes.expected_question_answering("Where?", TEXT, top_k=3))
    assert build("question-answering").response(several) is several


def test_sentence_similarity_wraps_a_bare_number() -> None:
    [score] = shapes.expected_sentence_similarity("a", ["b"])
    assert build("sentence-similarity").response(score) == [score]


@pytest.mark.parametrize(
    ("task", "answer"),
    [
        ("text-classification", "POSITIVE"),
        ("text-classification", ["POSITIVE"]),
        ("text-classification", None),
        ("summarization", "a summary"),
        ("summarization", [{"text": "no key"}]),
        ("summarization", [{"summary_text": "ok"}, "x"][::-1]),
        ("translation", 3),
        ("zero-shot-classification", {"labels": ["a", "b"], "scores": [0.5]}),
        ("zero-shot-classification", [{"labels": ["a"], "scores": [1.0]}, {"labels": "a", "scores": 1.0}]),
        ("zero-shot-classification", ["a"]),
        ("zero-shot-classification", 0.5),
        ("token-classification", "Bob"),
        ("fill-mask", None),
        ("text-generation", "text"),
        ("question-answering", "Paris"),
        ("automatic-speech-recognition", "hello"),
        ("sentence-similarity", {"scores": [0.5]}),
        ("sentence-similarity", True),
    ],
)
def test_answers_that_cannot_be_shaped_are_upstream_errors(task: str, answer: Any) -> None:
    with pytest.raises(UpstreamShapeError, match=task):
        build(task).response(answer)
