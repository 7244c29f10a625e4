"""Text generation: TGI's ``/generate`` body and the task API ``text-generation`` / ``text2text-generation``.

Two sets of ranges, on purpose:

* ``generate_schema`` (TGI ``/``, ``/generate``, ``/generate_stream``) applies TGI's own checks
  (``router/src/validation.rs``, hf_api.md §3.2): ``temperature > 0``, ``0 < top_p < 1``,
  ``0 < typical_p < 1``, ``top_k >= 1``, ``max_new_tokens >= 1``, ``truncate >= 1``, ``stop`` at most 4,
  ``frequency_penalty`` in [-2, 2]; the fields TGI types as non-optional (``do_sample``, ``stop``,
  ``details``...) refuse ``null`` as TGI does.
* the task API text-generation may reach TGI or the legacy pipelines (api-inference-community), so
  it takes the spec's ranges relaxed to what either accepts (``temperature``/``top_p`` may be 0), plus
  the legacy parameters ``max_time``, ``num_return_sequences``, ``min_length``, ``max_length``.
"""

from __future__ import annotations

from typing import Any

from hfasgi.validation.schemas.common import (
    DRAFT,
    TRUNCATION,
    body,
    boolean,
    closed,
    enum,
    generation_parameters,
    integer,
    number,
    string,
    strings,
)

__all__ = ["generate_schema", "grammar", "text2text_generation_schema", "text_generation_schema"]

Schema = dict[str, Any]


def _when(value: str, then: Schema) -> Schema:
    return {"if": {"properties": {"type": {"const": value}}, "required": ["type"]}, "then": then}


def grammar() -> Schema:
    """TGI ``GrammarType``: ``{"type": "json"|"json_object"|"regex"|"json_schema", "value": ...}``."""
    return {
        "type": ["object", "null"],
        "required": ["type", "value"],
        "additionalProperties": False,
        "properties": {
            "type": enum("json", "json_object", "regex", "json_schema", null=False),
            "value": {},
        },
        "allOf": [
            _when("json", {"properties": {"value": {"type": ["object", "string"]}}}),
            _when("json_object", {"properties": {"value": {"type": ["object", "string"]}}}),
            _when("regex", {"properties": {"value": {"type": "string"}}}),
            _when(
                "json_schema",
                {
                    "properties": {
                        "value": {
                            "type": "object",
                            "required": ["schema"],
                            "properties": {"name": string(), "schema": {}},
                        }
                    }
                },
            ),
        ],
    }


def _tgi_parameters() -> Schema:
    """``GenerateParameters`` with TGI's validation ranges (``/generate``)."""
    return {
        "adapter_id": string(),
        "best_of": integer(minimum=1),
        "decoder_input_details": boolean(null=False),
        "details": boolean(null=False),
        "do_sample": boolean(null=False),
        "frequency_penalty": number(minimum=-2, maximum=2),
        "grammar": grammar(),
        "max_new_tokens": integer(minimum=1),
        "repetition_penalty": number(exclusiveMinimum=0),
        "return_full_text": boolean(),
        "seed": integer(minimum=0),
        "stop": strings(null=False, maxItems=4),
        "temperature": number(exclusiveMinimum=0),
        "top_k": integer(minimum=1),
        "top_n_tokens": integer(minimum=0),
        "top_p": number(exclusiveMinimum=0, exclusiveMaximum=1),
        "truncate": integer(minimum=1),
        "typical_p": number(exclusiveMinimum=0, exclusiveMaximum=1),
        "watermark": boolean(null=False),
    }


def generate_schema() -> Schema:
    """TGI ``POST /generate``, ``/generate_stream`` and ``/`` (``stream`` is read by ``/`` only)."""
    return {
        "$schema": DRAFT,
        "title": "GenerateRequest",
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "inputs": {"type": "string", "minLength": 1},
            "parameters": closed(_tgi_parameters()),
            "stream": {"type": "boolean"},
            "add_special_tokens": {"type": "boolean"},
        },
    }


def _task_parameters() -> Schema:
    """The task API's text-generation parameters: TGI's (spec ranges, relaxed) and the legacy ones."""
    return {
        "adapter_id": string(),
        "best_of": integer(minimum=1),
        "decoder_input_details": boolean(),
        "details": boolean(),
        "do_sample": boolean(),
        "frequency_penalty": number(minimum=-2, maximum=2),
        "grammar": grammar(),
        "max_new_tokens": integer(minimum=0),
        "repetition_penalty": number(minimum=0),
        "return_full_text": boolean(),
        "seed": integer(minimum=0),
        "stop": strings(maxItems=4),
        "temperature": number(minimum=0),
        "top_k": integer(minimum=1),
        "top_n_tokens": integer(minimum=0),
        "top_p": number(minimum=0, maximum=1),
        "truncate": integer(minimum=0),
        "typical_p": number(exclusiveMinimum=0, maximum=1),
        "watermark": boolean(),
        # legacy serverless (hf_api.md §2.4; api-inference-community TextGenerationParamsCheck)
        "max_time": number(minimum=0, maximum=120),
        "num_return_sequences": integer(minimum=1, maximum=10),
        "min_length": integer(minimum=1),
        "max_length": integer(minimum=1),
    }


def text_generation_schema() -> Schema:
    """Task API ``text-generation``: ``{"inputs": str, "parameters", "stream"?, "options"?}``."""
    return body(
        "TextGenerationTaskRequest",
        {"type": "string"},
        _task_parameters(),
        root={"stream": boolean()},
    )


def text2text_generation_schema() -> Schema:
    """Task API ``text2text-generation``: its spec parameters, and text-generation's.

    ``huggingface_hub`` serves text2text models through ``text_generation`` (TGI parameters).
    """
    parameters = {
        **_task_parameters(),
        "clean_up_tokenization_spaces": boolean(),
        "truncation": enum(*TRUNCATION),
        "generate_parameters": generation_parameters(),
    }
    return body("Text2TextGenerationRequest", {"type": "string"}, parameters, root={"stream": boolean()})
