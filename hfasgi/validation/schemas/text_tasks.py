"""Task API bodies of the text (NLP) tasks, after ``@huggingface/tasks`` and the real clients.

Ranges are the pipelines' own (``top_k >= 1`` as in api-inference-community); the spec gives none.
"""

from __future__ import annotations

from typing import Any

from hfasgi.validation.schemas.common import (
    DRAFT,
    TRUNCATION,
    body,
    boolean,
    enum,
    generation_parameters,
    integer,
    number,
    obj,
    options,
    string,
    strings,
)

__all__ = ["TEXT_TASKS"]

Schema = dict[str, Any]

_TEXT: Schema = {"type": "string"}


def _classification() -> Schema:
    return {"function_to_apply": enum("sigmoid", "softmax", "none"), "top_k": integer(minimum=1)}


def _legacy_generation() -> Schema:
    """The legacy serverless summarization knobs (hf_api.md §2.4; SummarizationParamsCheck)."""
    return {
        "min_length": integer(minimum=1),
        "max_length": integer(minimum=1),
        "top_k": integer(minimum=1),
        "top_p": number(minimum=0, maximum=1),
        "temperature": number(minimum=0, maximum=100),
        "repetition_penalty": number(minimum=0, maximum=100),
        "max_time": number(minimum=0, maximum=120),
        "num_return_sequences": integer(minimum=1, maximum=10),
    }


def feature_extraction() -> Schema:
    """``{"inputs": str | [str], normalize, prompt_name, truncate, ...}``: TEI options at the ROOT (§8.11)."""
    return {
        "$schema": DRAFT,
        "title": "FeatureExtractionRequest",
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": {"type": ["string", "array"], "minItems": 1, "items": {"type": "string"}},
            "normalize": boolean(),
            "prompt_name": string(),
            "truncate": boolean(),
            "truncation_direction": enum("left", "right"),
            "dimensions": integer(minimum=1),
            "encoding_format": enum("float", "base64"),
            "options": options(),
        },
    }


def sentence_similarity() -> Schema:
    sentences = strings(null=False)
    inputs = obj({"source_sentence": _TEXT, "sentences": sentences}, required=("source_sentence", "sentences"))
    return body("SentenceSimilarityRequest", inputs, {})


def question_answering() -> Schema:
    inputs = obj({"question": _TEXT, "context": _TEXT}, required=("question", "context"))
    parameters = {
        "top_k": integer(minimum=1),
        "doc_stride": integer(minimum=0),
        "max_answer_len": integer(minimum=1),
        "max_seq_len": integer(minimum=1),
        "max_question_len": integer(minimum=1),
        "handle_impossible_answer": boolean(),
        "align_to_words": boolean(),
    }
    return body("QuestionAnsweringRequest", inputs, parameters)


def table_question_answering() -> Schema:
    """``inputs.table`` + the question: ``query`` (huggingface_hub, legacy) or ``question`` (spec, JS)."""
    table = {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}}
    inputs = obj(
        {"table": table, "query": _TEXT, "question": _TEXT},
        required=("table",),
        anyOf=[{"required": ["query"]}, {"required": ["question"]}],
    )
    inputs["x-error"] = "needs the question, as `query` or `question`"
    parameters = {
        "padding": enum("do_not_pad", "longest", "max_length"),
        "sequential": boolean(),
        "truncation": boolean(),
        # huggingface_hub puts its ``model`` argument here (table_question_answering(model=...)).
        "model": string(),
    }
    return body("TableQuestionAnsweringRequest", inputs, parameters)


def _tabular(title: str) -> Schema:
    """``tabular-*``: huggingface_hub sends ``{"table": {...}, "parameters": {}}``; legacy ``{"inputs": {"data"}}``."""
    columns = {"type": "object", "additionalProperties": {"type": "array"}}
    return body(
        title,
        obj({"data": columns}, required=("data",)),
        {},
        required=(),
        root={"table": columns},
        one_of_fields=("inputs", "table"),
        error="needs the table, as `table` or `inputs.data`",
    )


def _generated_text(title: str, extra: Schema | None = None) -> Schema:
    parameters = {
        "clean_up_tokenization_spaces": boolean(),
        "truncation": enum(*TRUNCATION),
        "generate_parameters": generation_parameters(),
        **(extra or {}),
    }
    return body(title, _TEXT, parameters)


def translation() -> Schema:
    schema = _generated_text("TranslationRequest", {"src_lang": string(), "tgt_lang": string()})
    # huggingface_hub refuses one language without the other
    schema["properties"]["parameters"]["dependentRequired"] = {"src_lang": ["tgt_lang"], "tgt_lang": ["src_lang"]}
    return schema


def zero_shot_classification() -> Schema:
    parameters = {
        # a list (spec); the legacy API also took a comma-separated string
        "candidate_labels": {"type": ["array", "string"], "minItems": 1, "minLength": 1, "items": _TEXT},
        "hypothesis_template": string(),
        "multi_label": boolean(),
    }
    return body("ZeroShotClassificationRequest", _TEXT, parameters, parameters_required=("candidate_labels",))


TEXT_TASKS: dict[str, Schema] = {
    "feature-extraction": feature_extraction(),
    "sentence-similarity": sentence_similarity(),
    "text-classification": body("TextClassificationRequest", _TEXT, _classification()),
    "token-classification": body(
        "TokenClassificationRequest",
        _TEXT,
        {
            "aggregation_strategy": enum("none", "simple", "first", "average", "max"),
            "ignore_labels": strings(),
            "stride": integer(minimum=0),
        },
    ),
    "fill-mask": body(
        "FillMaskRequest",
        _TEXT,
        {"top_k": integer(minimum=1), "targets": {"type": ["array", "string", "null"], "items": _TEXT}},
    ),
    "question-answering": question_answering(),
    "table-question-answering": table_question_answering(),
    "zero-shot-classification": zero_shot_classification(),
    "summarization": _generated_text("SummarizationRequest", _legacy_generation()),
    "translation": translation(),
    "tabular-classification": _tabular("TabularClassificationRequest"),
    "tabular-regression": _tabular("TabularRegressionRequest"),
}
