"""OpenAI-compatible bodies: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``.

Open objects throughout (vendor extensions pass), every known field typed and nullable when
optional. Unions are discriminated with ``if``/``then`` on ``role``/``type`` so an error lands on the
field at fault; the few ``anyOf`` left carry an ``x-error`` message.
"""

from __future__ import annotations

from typing import Any

from hfasgi.validation.schemas.common import (
    DRAFT,
    array,
    boolean,
    enum,
    integer,
    number,
    obj,
    string,
)

__all__ = ["chat_schema", "completions_schema", "embeddings_schema", "response_format", "stop"]

Schema = dict[str, Any]


def _when(field: str, value: str, then: Schema) -> Schema:
    """``if`` ``field`` is ``value`` ``then`` ...: a discriminated branch (absent field: not taken)."""
    return {"if": {"properties": {field: {"const": value}}, "required": [field]}, "then": then}


def _when_in(field: str, values: list[str], then: Schema) -> Schema:
    return {"if": {"properties": {field: {"enum": values}}, "required": [field]}, "then": then}


def stop() -> Schema:
    """``stop``: a string or at most 4 strings (OpenAI; TGI's ``max_stop_sequences`` default)."""
    return {"type": ["string", "array", "null"], "items": {"type": "string"}, "maxItems": 4}


def _penalty() -> Schema:
    return number(minimum=-2, maximum=2)


def _stream_options() -> Schema:
    return obj({"include_usage": boolean(), "include_obfuscation": boolean()}, null=True)


def _logit_bias() -> Schema:
    # OpenAI: {"<token id>": bias}; the HF spec (TGI, unused): a list of floats.
    return {
        "type": ["object", "array", "null"],
        "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100},
        "items": {"type": "number"},
    }


def _content_part() -> Schema:
    """One part of a message's ``content`` list, checked by its ``type`` (unknown types pass)."""
    return {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"type": "string"},
            "text": {"type": "string"},
            "image_url": obj({"url": {"type": "string"}, "detail": string()}, required=("url",)),
            "input_audio": obj({"data": {"type": "string"}, "format": {"type": "string"}}, required=("data",)),
            "file": obj({"file_data": string(), "file_id": string(), "filename": string()}),
            "refusal": {"type": "string"},
        },
        "allOf": [
            _when("type", "text", {"required": ["text"]}),
            _when("type", "image_url", {"required": ["image_url"]}),
            _when("type", "input_audio", {"required": ["input_audio"]}),
            _when("type", "file", {"required": ["file"]}),
            _when("type", "refusal", {"required": ["refusal"]}),
        ],
    }


def _content() -> Schema:
    return {"type": ["string", "array", "null"], "items": _content_part()}


def _function_call() -> Schema:
    """A call the assistant made: OpenAI sends ``arguments`` as a string, older TGI as an object."""
    return obj(
        {
            "name": {"type": "string"},
            "arguments": {"type": ["string", "object", "null"]},
            "parameters": {},
            "description": string(),
        },
        required=("name",),
    )


def _tool_call() -> Schema:
    return {
        "type": "object",
        "required": ["id", "type"],
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string"},
            "function": _function_call(),
            "custom": obj({"name": {"type": "string"}, "input": {"type": "string"}}, required=("name",)),
        },
        "allOf": [
            _when("type", "function", {"required": ["function"]}),
            _when("type", "custom", {"required": ["custom"]}),
        ],
    }


def _message() -> Schema:
    """A chat message. ``role`` is any string (vendors add roles); the OpenAI roles get their rules."""
    return {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {"type": "string"},
            "content": _content(),
            "name": string(),
            "tool_calls": array(_tool_call()),
            "tool_call_id": string(),
            "function_call": obj({"name": {"type": "string"}, "arguments": {"type": "string"}}, null=True),
            "refusal": string(),
            "audio": obj({"id": {"type": "string"}}, required=("id",), null=True),
        },
        "allOf": [
            _when_in(
                "role",
                ["system", "developer", "user", "tool"],
                {"required": ["content"], "properties": {"content": {"type": ["string", "array"]}}},
            ),
            _when("role", "function", {"required": ["name", "content"]}),
            _when(
                "role",
                "assistant",
                {
                    "anyOf": [
                        {"required": ["content"]},
                        {"required": ["tool_calls"]},
                        {"required": ["function_call"]},
                        {"required": ["audio"]},
                    ],
                    "x-error": "an assistant message needs `content` or `tool_calls`",
                },
            ),
        ],
    }


def _function_definition() -> Schema:
    return obj(
        {
            "name": {"type": "string"},
            "description": string(),
            "parameters": {"type": ["object", "null"]},
            "strict": boolean(),
        },
        required=("name",),
    )


def _tool() -> Schema:
    return {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"type": "string"},
            "function": _function_definition(),
            "custom": obj({"name": {"type": "string"}, "description": string()}, required=("name",)),
        },
        "allOf": [
            _when("type", "function", {"required": ["function"]}),
            _when("type", "custom", {"required": ["custom"]}),
        ],
    }


def _tool_choice() -> Schema:
    """``"auto"|"none"|"required"``, OpenAI's ``{"type", "function": {"name"}}`` or HF's ``{"function"}``."""
    return {
        "type": ["string", "object", "null"],
        "properties": {
            "type": {"type": "string"},
            "function": obj({"name": {"type": "string"}}, required=("name",)),
            "custom": obj({"name": {"type": "string"}}, required=("name",)),
            "allowed_tools": obj(
                {"mode": enum("auto", "required", null=False), "tools": {"type": "array"}},
                required=("mode", "tools"),
            ),
        },
        "allOf": [
            {"if": {"type": "string"}, "then": {"enum": ["auto", "none", "required"]}},
            {
                "if": {"type": "object", "not": {"required": ["type"]}},
                "then": {"required": ["function"]},
            },
            _when("type", "function", {"required": ["function"]}),
            _when("type", "custom", {"required": ["custom"]}),
            _when("type", "allowed_tools", {"required": ["allowed_tools"]}),
        ],
    }


def _legacy_function_call() -> Schema:
    return {
        "type": ["string", "object", "null"],
        "properties": {"name": {"type": "string"}},
        "allOf": [
            {"if": {"type": "string"}, "then": {"enum": ["auto", "none"]}},
            {"if": {"type": "object"}, "then": {"required": ["name"]}},
        ],
    }


def _json_schema_config() -> Schema:
    return obj(
        {
            "name": {"type": "string"},
            "description": string(),
            "schema": {"type": ["object", "null"]},
            "strict": boolean(),
        },
        required=("name",),
    )


def response_format() -> Schema:
    """OpenAI ``text``/``json_object``/``json_schema`` and the TGI grammar ``{"type", "value"}`` forms (§8.9)."""
    return {
        "type": ["object", "null"],
        "required": ["type"],
        "properties": {
            "type": enum("text", "json_object", "json_schema", "json", "regex", null=False),
            "json_schema": _json_schema_config(),
            "value": {},
        },
        "allOf": [
            _when("type", "json", {"required": ["value"], "properties": {"value": {"type": ["object", "string"]}}}),
            _when("type", "json_object", {"properties": {"value": {"type": ["object", "string"]}}}),
            _when("type", "regex", {"required": ["value"], "properties": {"value": {"type": "string"}}}),
            _when(
                "type",
                "json_schema",
                {
                    "anyOf": [{"required": ["json_schema"]}, {"required": ["value"]}],
                    "x-error": "needs `json_schema` (the OpenAI form) or `value` (the TGI form)",
                    "properties": {"value": obj({"name": string(), "schema": {}}, required=("schema",))},
                },
            ),
        ],
    }


def chat_schema() -> Schema:
    """``POST /v1/chat/completions`` (OpenAI, TGI, HF router and ``huggingface_hub`` bodies)."""
    properties: Schema = {
        "model": {"type": "string"},
        "messages": {"type": "array", "minItems": 1, "items": _message()},
        "stream": boolean(),
        "stream_options": _stream_options(),
        "frequency_penalty": _penalty(),
        "presence_penalty": _penalty(),
        "logit_bias": _logit_bias(),
        "logprobs": boolean(),
        "top_logprobs": integer(minimum=0, maximum=20),
        "max_tokens": integer(minimum=0),
        "max_completion_tokens": integer(minimum=0),
        "n": integer(minimum=1, maximum=128),  # OpenAI's own bound: more choices is a denial of service
        "seed": integer(minimum=0),
        "stop": stop(),
        # TGI chat treats 0 as greedy (the spec's text-generation ``exclusiveMinimum: 0`` does not apply).
        "temperature": number(minimum=0),
        "top_p": number(minimum=0, maximum=1),
        "response_format": response_format(),
        "tools": array(_tool()),
        "tool_choice": _tool_choice(),
        "tool_prompt": string(),
        "parallel_tool_calls": boolean(),
        "functions": array(_function_definition()),
        "function_call": _legacy_function_call(),
        "user": string(),
        "metadata": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
        "store": boolean(),
        "modalities": array(enum("text", "audio", null=False)),
        "audio": obj({"format": {"type": "string"}, "voice": {"type": ["string", "object"]}}, null=True),
        "prediction": obj({"type": {"type": "string"}, "content": _content()}, required=("content",), null=True),
        "reasoning_effort": string(),
        "verbosity": enum("low", "medium", "high"),
        "service_tier": string(),
        "web_search_options": obj({}, null=True),
        "prompt_cache_key": string(),
        "prompt_cache_retention": string(),
        "safety_identifier": string(),
        "chat_template_kwargs": obj({}, null=True),
    }
    return {
        "$schema": DRAFT,
        "title": "ChatCompletionRequest",
        "type": "object",
        "required": ["messages"],
        "properties": properties,
    }


def _tokens_or_text() -> Schema:
    return {
        "anyOf": [
            {"type": "string"},
            {"type": "array", "minItems": 1, "items": {"type": "string"}},
            {"type": "array", "minItems": 1, "items": {"type": "integer"}},
            {"type": "array", "minItems": 1, "items": {"type": "array", "minItems": 1, "items": {"type": "integer"}}},
        ],
        "x-error": "must be a string, a list of strings, a list of token ids or a list of lists of token ids",
    }


def completions_schema() -> Schema:
    """``POST /v1/completions`` (OpenAI legacy completions; TGI and the JS client's text-generation)."""
    properties: Schema = {
        "model": {"type": "string"},
        "prompt": _tokens_or_text(),
        "best_of": integer(minimum=0, maximum=20),
        "echo": boolean(),
        "frequency_penalty": _penalty(),
        "presence_penalty": _penalty(),
        "logit_bias": _logit_bias(),
        "logprobs": integer(minimum=0),
        "max_tokens": integer(minimum=0),
        "n": integer(minimum=1, maximum=128),  # OpenAI's own bound: more choices is a denial of service
        "seed": integer(minimum=0),
        "stop": stop(),
        "stream": boolean(),
        "stream_options": _stream_options(),
        "suffix": string(),
        "temperature": number(minimum=0),
        "top_p": number(minimum=0, maximum=1),
        "user": string(),
        # TGI / @huggingface/inference extras sent at the root
        "repetition_penalty": number(exclusiveMinimum=0),
        "top_k": integer(minimum=1),
    }
    return {
        "$schema": DRAFT,
        "title": "CompletionRequest",
        "type": "object",
        "required": ["prompt"],
        "properties": properties,
    }


def embeddings_schema() -> Schema:
    """``POST /v1/embeddings``."""
    properties: Schema = {
        "model": {"type": "string"},
        "input": _tokens_or_text(),
        "encoding_format": enum("float", "base64"),
        "dimensions": integer(minimum=1),
        "user": string(),
    }
    return {
        "$schema": DRAFT,
        "title": "EmbeddingRequest",
        "type": "object",
        "required": ["input"],
        "properties": properties,
    }
