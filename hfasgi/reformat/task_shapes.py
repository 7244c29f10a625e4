"""The wire shapes HF clients require for task answers (docs/hf_api.md §8.6 and §5.4).

Upstreams disagree on wrapping (a TGI server answers ``[{"generated_text"}]`` where a summarizer should
say ``[{"summary_text"}]``, older pipelines send zero-shot as ``{"sequence", "labels", "scores"}``, some
send a bare object for a one-item list), and ``huggingface_hub`` is strict: a flat text-classification
list silently yields one label, a summarization object raises. :func:`task_shapes` puts each answer into
the shape clients parse:

==============================================================  ====================================
task                                                            client shape
==============================================================  ====================================
text-classification                                             ``[[{label, score}, ...]]``
summarization / translation                                     ``[{summary_text}]`` / ``[{translation_text}]``
zero-shot-classification                                        ``[{label, score}, ...]``
token-classification, fill-mask, image-, audio-classification,  a flat list
object-detection, text-generation
question-answering, table-question-answering,                   an object
automatic-speech-recognition
sentence-similarity                                             ``[float, ...]``
==============================================================  ====================================

An answer already in shape is returned as it is (same object, no copy; only the outer levels are looked
at). Other tasks, feature-extraction included, pass unchanged: see :data:`TASKS_WITH_SHAPES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hfasgi.operations import Operation
from hfasgi.reformat.base import Request, Translator, bad_upstream

__all__ = ["TASKS_WITH_SHAPES", "task_shapes"]

_WRONG: Any = object()
"""What a shape fixer returns for an answer it cannot bring into shape."""

_Fix = Callable[[Any, int], Any]
"""``fix(answer, batch)``: ``batch`` is how many answers the client asked for (list inputs; ``top_k > 1`` for
question-answering), else 0."""


def task_shapes(request: Request) -> Translator:
    """A translator that fixes the wrapping of ``request.task``'s answer; the request goes upstream unchanged."""
    entry = _SHAPES.get(request.task) if request.task is not None else None
    if entry is None:
        return Translator(request.op)
    fix, expected = entry
    task = request.task or ""
    batch = _batch(request.document, count_top_k=task == "question-answering")
    return _TaskShape(request.op, task, fix, expected, batch)


class _TaskShape(Translator):
    __slots__ = ("_batch", "_expected", "_fix", "_task")

    def __init__(self, upstream_op: Operation, task: str, fix: _Fix, expected: str, batch: int) -> None:
        super().__init__(upstream_op)
        self._task = task
        self._fix = fix
        self._expected = expected
        self._batch = batch

    def response(self, document: Any) -> Any:
        fixed = self._fix(document, self._batch)
        if fixed is _WRONG:
            raise bad_upstream(f"a {self._task} answer must be {self._expected}, got {_kind(document)}")
        return fixed


def _batch(document: Any, *, count_top_k: bool) -> int:
    """How many inputs a list ``inputs`` holds (else 0); with ``count_top_k``, ``parameters.top_k`` above 1."""
    if not isinstance(document, dict):
        return 0
    inputs = document.get("inputs")
    if isinstance(inputs, list):
        return len(inputs)
    if not count_top_k:
        return 0
    params = document.get("parameters")
    top_k = params.get("top_k") if isinstance(params, dict) else None
    return top_k if type(top_k) is int and top_k > 1 else 0


def _label_lists(document: Any, batch: int) -> Any:
    """text-classification: ``[[{label, score}]]``, from a flat list (one list per input for a batch) or an object."""
    if isinstance(document, list):
        if document and isinstance(document[0], list):
            return document
        if not document or isinstance(document[0], dict):
            if batch > 1 and len(document) == batch:
                return [[item] for item in document]
            return [document]
        return _WRONG
    return [[document]] if isinstance(document, dict) else _WRONG


def _zero_shot(document: Any, batch: int) -> Any:
    """zero-shot-classification: ``[{label, score}]``; legacy ``{sequence, labels, scores}`` objects converted.

    A list of results (one per input) is flattened only when the client sent one input.
    """
    if isinstance(document, dict):
        return _label_scores(document) if "labels" in document else [document]
    if not isinstance(document, list):
        return _WRONG
    if not document:
        return document
    first = document[0]
    if isinstance(first, dict):
        if "labels" not in first:
            return document
        converted = [_label_scores(item) for item in document]
        if any(item is _WRONG for item in converted):
            return _WRONG
        return converted[0] if len(converted) == 1 and not batch else converted
    if isinstance(first, list):
        return first if len(document) == 1 and not batch else document
    return _WRONG


def _label_scores(legacy: Any) -> Any:
    labels = legacy.get("labels") if isinstance(legacy, dict) else None
    scores = legacy.get("scores") if isinstance(legacy, dict) else None
    if not isinstance(labels, list) or not isinstance(scores, list) or len(labels) != len(scores):
        return _WRONG
    return [{"label": label, "score": score} for label, score in zip(labels, scores, strict=True)]


def _text_items(key: str) -> _Fix:
    """summarization / translation: ``[{key: str}]``, from an object, or from TGI's ``generated_text``."""

    def fix(document: Any, batch: int) -> Any:
        if isinstance(document, dict):
            document = [document]
        elif not isinstance(document, list):
            return _WRONG
        if not document:
            return document
        first = document[0]
        if isinstance(first, list) or (isinstance(first, dict) and key in first):
            return document
        items = []
        for item in document:
            if not isinstance(item, dict):
                return _WRONG
            if key in item:
                items.append(item)
            elif isinstance(item.get("generated_text"), str):
                items.append({key: item["generated_text"]})
            else:
                return _WRONG
        return items

    return fix


def _flat_list(document: Any, batch: int) -> Any:
    """A list; a bare object becomes a one-item list."""
    if isinstance(document, list):
        return document
    return [document] if isinstance(document, dict) else _WRONG


def _single_object(document: Any, batch: int) -> Any:
    """An object; a one-item list becomes its item unless the client asked for several answers."""
    if isinstance(document, dict):
        return document
    if isinstance(document, list):
        if len(document) == 1 and not batch and isinstance(document[0], dict):
            return document[0]
        return document
    return _WRONG


def _scores(document: Any, batch: int) -> Any:
    """sentence-similarity: ``[float]``; a bare number becomes a one-item list."""
    if isinstance(document, list):
        return document
    if isinstance(document, int | float) and not isinstance(document, bool):
        return [document]
    return _WRONG


_LIST = "a list"
_OBJECT = "an object"
_SHAPES: dict[str, tuple[_Fix, str]] = {
    "text-classification": (_label_lists, "a list of lists of {label, score}"),
    "summarization": (_text_items("summary_text"), "a list of {summary_text}"),
    "translation": (_text_items("translation_text"), "a list of {translation_text}"),
    "zero-shot-classification": (_zero_shot, "a list of {label, score}"),
    "token-classification": (_flat_list, _LIST),
    "fill-mask": (_flat_list, _LIST),
    "image-classification": (_flat_list, _LIST),
    "audio-classification": (_flat_list, _LIST),
    "object-detection": (_flat_list, _LIST),
    "text-generation": (_flat_list, "a list of {generated_text}"),
    "question-answering": (_single_object, _OBJECT),
    "table-question-answering": (_single_object, _OBJECT),
    "automatic-speech-recognition": (_single_object, "an object with text"),
    "sentence-similarity": (_scores, "a list of numbers"),
}

TASKS_WITH_SHAPES = frozenset(_SHAPES)
"""The tasks :func:`task_shapes` rewrites; for any other task it returns a translator that changes nothing."""


def _kind(document: Any) -> str:
    if document is None:
        return "null"
    if isinstance(document, bool):
        return "a boolean"
    if isinstance(document, str):
        return "a string"
    if isinstance(document, int | float):
        return "a number"
    return "a list of other values" if isinstance(document, list) else "an object"
