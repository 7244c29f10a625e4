"""The request schemas: valid draft 2020-12, accept what the real clients send, refuse the rest precisely.

Checked with ``jsonschema_rs`` (the engine's validator) and the pure-Python ``jsonschema`` as a second
opinion. "Real bodies" are the exact bodies of hf_api.md §5.2 and bodies captured from the installed
``huggingface_hub`` and ``openai`` clients (their transport stubbed, nothing leaves the process).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import jsonschema
import jsonschema_rs
import openai
import pytest
from huggingface_hub import InferenceClient

from hfasgi.validation.schemas import BINARY_TASKS, ROUTE_SCHEMAS, TASK_SCHEMAS

Body = dict[str, Any]
SCHEMAS: dict[str, dict[str, Any]] = {f"route:{k}": v for k, v in ROUTE_SCHEMAS.items()} | {
    f"task:{k}": v for k, v in TASK_SCHEMAS.items()
}
RS = {name: jsonschema_rs.validator_for(schema) for name, schema in SCHEMAS.items()}
PY = {name: jsonschema.Draft202012Validator(schema) for name, schema in SCHEMAS.items()}

# Tasks whose huggingface_hub method merges provider extras (extra_body=/**kwargs) into the `parameters`
# it can post to a URL; every other task refuses an unknown parameter.
OPEN_PARAMETERS = {"automatic-speech-recognition", "image-to-image", "text-to-image", "text-to-speech"}
B64 = "iVBORw0KGgo="
USER = {"role": "user", "content": "Hi"}


def minimal(name: str) -> Body:
    """The smallest valid body of a schema."""
    route: dict[str, Body] = {
        "route:chat": {"messages": [USER]},
        "route:completions": {"prompt": "Hello"},
        "route:embeddings": {"input": "Hello"},
        "route:generate": {"inputs": "Hello"},
        "task:chat-completion": {"messages": [USER]},
        "task:question-answering": {"inputs": {"question": "q?", "context": "ctx"}},
        "task:sentence-similarity": {"inputs": {"source_sentence": "a", "sentences": ["b"]}},
        "task:table-question-answering": {"inputs": {"query": "q", "table": {"a": ["1"]}}},
        "task:visual-question-answering": {"inputs": {"image": B64, "question": "q?"}},
        "task:document-question-answering": {"inputs": {"image": B64, "question": "q?"}},
        "task:zero-shot-classification": {"inputs": "x", "parameters": {"candidate_labels": ["a"]}},
        "task:zero-shot-image-classification": {"inputs": B64, "parameters": {"candidate_labels": ["a"]}},
        "task:zero-shot-object-detection": {"inputs": B64, "parameters": {"candidate_labels": ["a"]}},
        "task:tabular-classification": {"table": {"a": ["1"]}},
        "task:tabular-regression": {"table": {"a": ["1"]}},
    }
    if name in route:
        return copy.deepcopy(route[name])
    return {"inputs": B64 if name.removeprefix("task:") in BINARY_TASKS else "Hello"}


def errors(name: str, body: Any) -> list[str]:
    return [f"{list(e.instance_path)} {e.kind.name}: {e.message}" for e in RS[name].iter_errors(body)]


def assert_valid(name: str, body: Any) -> None:
    assert RS[name].is_valid(body), f"{name} refused {json.dumps(body)[:300]}: {errors(name, body)}"
    assert PY[name].is_valid(body), f"{name} (python jsonschema) refused {json.dumps(body)[:300]}"


# jsonschema_rs names a few error kinds after the check rather than the keyword.
RS_KIND = {"dependentRequired": "required"}


def _parts(path: Any) -> list[str]:
    # jsonschema_rs turns numeric object keys ("50256" in logit_bias) into integers: compare as text
    return [str(part) for part in path]


def assert_invalid(name: str, body: Any, path: list[Any], keyword: str) -> None:
    assert not RS[name].is_valid(body), f"{name} accepted {json.dumps(body)[:300]}"
    found = [(_parts(e.instance_path), e.kind.name) for e in RS[name].iter_errors(body)]
    assert (_parts(path), RS_KIND.get(keyword, keyword)) in found, f"expected {keyword} at {path}, got {found}"
    py = [(_parts(e.absolute_path), e.validator) for e in PY[name].iter_errors(body)]
    assert (_parts(path), keyword) in py, f"python jsonschema: expected {keyword} at {path}, got {py}"


def _nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


# --- the schemas themselves ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = SCHEMAS[name]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert jsonschema_rs.meta.is_valid(schema)
    assert isinstance(RS[name], jsonschema_rs.Draft202012Validator)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_union_explains_itself_and_nothing_is_a_ref(name: str) -> None:
    for node in _nodes(SCHEMAS[name]):
        assert "$ref" not in node, "schemas are inlined: the engine finds x-error by walking the schema path"
        if "anyOf" in node or "oneOf" in node:
            assert isinstance(node.get("x-error"), str), f"anyOf/oneOf without x-error: {json.dumps(node)[:200]}"


def test_the_exported_tables() -> None:
    assert set(ROUTE_SCHEMAS) == {"chat", "completions", "embeddings", "generate"}
    assert TASK_SCHEMAS["chat-completion"] is ROUTE_SCHEMAS["chat"]
    assert set(BINARY_TASKS) <= set(TASK_SCHEMAS)
    assert set(BINARY_TASKS.values()) <= {"image", "audio", "video"}
    assert OPEN_PARAMETERS.issubset(TASK_SCHEMAS)


def test_no_two_schemas_share_a_node() -> None:
    """A schema can be edited (or annotated by the engine) without changing another one."""
    owner: dict[int, str] = {}
    for name, schema in SCHEMAS.items():
        if name == "task:chat-completion":  # the same object as route:chat, on purpose
            continue
        for node in _nodes(schema):
            assert owner.setdefault(id(node), name) == name, f"{name} shares a node with {owner[id(node)]}: {node}"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_minimal_body_and_unknown_root_fields_pass(name: str) -> None:
    assert_valid(name, minimal(name))
    assert_valid(name, {**minimal(name), "x_vendor_extension": {"any": [1, None]}})


@pytest.mark.parametrize("task", sorted(t for t, s in TASK_SCHEMAS.items() if "parameters" in s["properties"]))
def test_unknown_parameters_are_refused_unless_the_client_sends_extras(task: str) -> None:
    name = f"task:{task}"
    body = minimal(name)
    body["parameters"] = {**body.get("parameters", {}), "no_such_parameter": 1}
    if task in OPEN_PARAMETERS:
        assert_valid(name, body)
    else:
        assert_invalid(name, body, ["parameters"], "additionalProperties")
    assert_valid(name, {**minimal(name), "options": {"use_cache": False, "wait_for_model": True, "use_gpu": None}})
    assert_invalid(name, {**minimal(name), "options": {"wait_for_modle": True}}, ["options"], "additionalProperties")


@pytest.mark.parametrize("route", ["chat", "completions", "embeddings"])
def test_optional_openai_fields_accept_null(route: str) -> None:
    schema = ROUTE_SCHEMAS[route]
    for field in sorted(set(schema["properties"]) - set(schema["required"]) - {"model"}):
        assert_valid(f"route:{route}", {**minimal(f"route:{route}"), field: None})
    assert_invalid(f"route:{route}", {**minimal(f"route:{route}"), "model": None}, ["model"], "type")


# --- the real bodies ------------------------------------------------------------------------------

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
JSON_SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}

# hf_api.md §5.2 (exact bodies huggingface_hub sends), then TGI and openai-style bodies.
VALID: list[tuple[str, Body]] = [
    ("route:chat", {"model": "dummy", "messages": [USER], "stream": False}),
    (
        "route:chat",
        {"model": "dummy", "messages": [USER], "response_format": {"type": "json_object", "value": JSON_SCHEMA}},
    ),
    ("route:chat", {"model": "tgi", "messages": [USER], "response_format": {"type": "json", "value": JSON_SCHEMA}}),
    ("route:chat", {"messages": [USER], "response_format": {"type": "json_schema", "value": {"schema": JSON_SCHEMA}}}),
    ("route:chat", {"messages": [USER], "response_format": {"type": "regex", "value": "[0-9]+"}}),
    ("route:chat", {"messages": [USER], "response_format": {"type": "text"}}),
    ("route:chat", {"messages": [USER], "response_format": {"type": "json_object"}}),
    (
        "route:chat",
        {
            "model": "dummy",
            "messages": [{"role": "system", "content": "Be brief."}, USER],
            "tools": [TOOL],
            "tool_choice": {"function": {"name": "get_weather"}},
            "tool_prompt": "Use a tool",
            "logit_bias": [0.5],
            "stop": ["\n"],
            "temperature": 0,
            "seed": 0,
            "n": 1,
            "max_tokens": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ),
    (
        "route:chat",
        {
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "content": "Let me check.",
                    "tool_calls": [
                        {"id": "0", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "P"}}}
                    ],
                },
                {"role": "tool", "content": "sunny", "tool_call_id": "0", "name": "get_weather"},
            ],
        },
    ),
    ("route:generate", {"inputs": "Hello", "parameters": {}}),
    ("route:generate", {"inputs": "x", "parameters": {"max_new_tokens": 2}, "stream": True}),
    (
        "route:generate",
        {
            "inputs": "x",
            "parameters": {
                "best_of": 2,
                "do_sample": True,
                "temperature": 0.5,
                "top_p": 0.95,
                "typical_p": 0.95,
                "top_k": 10,
                "repetition_penalty": 1.03,
                "frequency_penalty": -2,
                "stop": ["a", "b", "c", "d"],
                "details": True,
                "decoder_input_details": True,
                "seed": 0,
                "top_n_tokens": 5,
                "truncate": 100,
                "watermark": False,
                "return_full_text": None,
                "adapter_id": None,
                "grammar": {"type": "json_schema", "value": {"name": None, "schema": JSON_SCHEMA}},
            },
        },
    ),
    ("task:text-generation", {"inputs": "Hello", "parameters": {}}),
    ("task:text-generation", {"inputs": "x", "parameters": {"max_new_tokens": 2}, "stream": True}),
    (
        "task:text-generation",
        {
            "inputs": "x",
            "parameters": {"temperature": 0, "max_time": 30, "num_return_sequences": 2, "return_full_text": False},
            "options": {"wait_for_model": True, "use_gpu": False},
        },
    ),
    ("task:feature-extraction", {"inputs": "Hello"}),
    ("task:feature-extraction", {"inputs": ["a", "b"], "normalize": True, "prompt_name": None, "truncate": True}),
    (
        "task:feature-extraction",
        {"inputs": "a", "truncation_direction": "left", "dimensions": 8, "encoding_format": "float"},
    ),
    ("task:text-classification", {"inputs": "I like you", "parameters": {"top_k": 2}}),
    ("task:token-classification", {"inputs": "Bob", "parameters": {"aggregation_strategy": "simple"}}),
    ("task:summarization", {"inputs": "A long text", "parameters": {}}),
    (
        "task:summarization",
        {"inputs": "A", "parameters": {"min_length": 5, "max_length": 20, "generate_parameters": {"num_beams": 2}}},
    ),
    ("task:translation", {"inputs": "hello", "parameters": {"src_lang": "en", "tgt_lang": "fr"}}),
    ("task:question-answering", {"inputs": {"question": "q?", "context": "ctx"}, "parameters": {}}),
    ("task:fill-mask", {"inputs": "a [MASK]", "parameters": {}}),
    (
        "task:zero-shot-classification",
        {"inputs": "text", "parameters": {"candidate_labels": ["a", "b"], "multi_label": False}},
    ),
    ("task:zero-shot-classification", {"inputs": "text", "parameters": {"candidate_labels": "a, b"}}),
    ("task:sentence-similarity", {"inputs": {"source_sentence": "a", "sentences": ["b", "c"]}, "parameters": {}}),
    ("task:table-question-answering", {"inputs": {"query": "q", "table": {"a": ["1"]}}, "parameters": {}}),
    ("task:table-question-answering", {"inputs": {"question": "q", "table": {"a": ["1"]}}}),
    ("task:text-to-image", {"inputs": "a cat", "parameters": {"height": 64, "width": 64}}),
    ("task:text-to-speech", {"inputs": "Hello", "parameters": {}}),
    ("task:image-classification", {"inputs": B64, "parameters": {"top_k": 1}}),
    ("task:image-classification", {"image": B64}),
    ("task:automatic-speech-recognition", {"inputs": B64, "parameters": {"return_timestamps": True}}),
    ("task:audio-classification", {"inputs": B64, "parameters": {"top_k": 1}}),
    ("task:visual-question-answering", {"inputs": B64, "parameters": {}, "question": "q?", "image": B64}),
    (
        "task:document-question-answering",
        {"inputs": {"image": B64, "question": "q?"}, "parameters": {"word_boxes": ["w", [0, 0, 1, 1]]}},
    ),
    ("task:tabular-classification", {"inputs": {"data": {"a": ["1"], "b": ["2"]}}}),
    ("task:text2text-generation", {"inputs": "x", "parameters": {"max_new_tokens": 5, "truncation": "only_first"}}),
    # OpenAI-style bodies
    ("route:completions", {"model": "m", "prompt": ["a", "b"], "max_tokens": 5, "logprobs": 2, "echo": True}),
    ("route:completions", {"model": "m", "prompt": [[1, 2], [3]], "stop": "\n", "suffix": None, "best_of": 1}),
    (
        "route:completions",
        {"model": "m", "prompt": "x", "max_tokens": 20, "top_k": 10, "repetition_penalty": 1.1, "details": True},
    ),
    (
        "route:embeddings",
        {"model": "m", "input": [1, 2, 3], "encoding_format": "base64", "dimensions": 256, "user": "u"},
    ),
]


@pytest.mark.parametrize(("name", "body"), VALID, ids=[f"{n}-{i}" for i, (n, _) in enumerate(VALID)])
def test_documented_bodies_are_valid(name: str, body: Body) -> None:
    assert_valid(name, body)


# --- refused, at the right place --------------------------------------------------------------------

ASSISTANT_BARE = {"role": "assistant"}
INVALID: list[tuple[str, Body, list[Any], str]] = [
    # chat
    ("route:chat", {"messages": []}, ["messages"], "minItems"),
    ("route:chat", {"model": "m"}, [], "required"),
    ("route:chat", {"messages": [{"content": "Hi"}]}, ["messages", 0], "required"),
    ("route:chat", {"messages": [{"role": "user"}]}, ["messages", 0], "required"),
    ("route:chat", {"messages": [{"role": "user", "content": None}]}, ["messages", 0, "content"], "type"),
    ("route:chat", {"messages": [USER, ASSISTANT_BARE]}, ["messages", 1], "anyOf"),
    ("route:chat", {"messages": [{"role": "tool", "tool_call_id": "0"}]}, ["messages", 0], "required"),
    (
        "route:chat",
        {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
        ["messages", 0, "content", 0],
        "required",
    ),
    (
        "route:chat",
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"detail": "low"}}]}]},
        ["messages", 0, "content", 0, "image_url"],
        "required",
    ),
    (
        "route:chat",
        {"messages": [USER, {"role": "assistant", "tool_calls": [{"id": "0", "type": "function"}]}]},
        ["messages", 1, "tool_calls", 0],
        "required",
    ),
    ("route:chat", {"messages": [USER], "model": 5}, ["model"], "type"),
    ("route:chat", {"messages": [USER], "response_format": {"type": "bogus"}}, ["response_format", "type"], "enum"),
    ("route:chat", {"messages": [USER], "response_format": {"type": "json_schema"}}, ["response_format"], "anyOf"),
    (
        "route:chat",
        {"messages": [USER], "response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
        ["response_format", "json_schema"],
        "required",
    ),
    (
        "route:chat",
        {"messages": [USER], "response_format": {"type": "regex", "value": 5}},
        ["response_format", "value"],
        "type",
    ),
    ("route:chat", {"messages": [USER], "stop": ["a", "b", "c", "d", "e"]}, ["stop"], "maxItems"),
    (
        "route:chat",
        {"messages": [USER], "tools": [{"type": "function", "function": {}}]},
        ["tools", 0, "function"],
        "required",
    ),
    ("route:chat", {"messages": [USER], "tools": [{"type": "function"}]}, ["tools", 0], "required"),
    ("route:chat", {"messages": [USER], "tool_choice": "sometimes"}, ["tool_choice"], "enum"),
    ("route:chat", {"messages": [USER], "tool_choice": {"type": "function"}}, ["tool_choice"], "required"),
    ("route:chat", {"messages": [USER], "temperature": -0.5}, ["temperature"], "minimum"),
    ("route:chat", {"messages": [USER], "top_p": 1.5}, ["top_p"], "maximum"),
    ("route:chat", {"messages": [USER], "frequency_penalty": 3}, ["frequency_penalty"], "maximum"),
    ("route:chat", {"messages": [USER], "n": 0}, ["n"], "minimum"),
    ("route:chat", {"messages": [USER], "logit_bias": {"50256": 200}}, ["logit_bias", "50256"], "maximum"),
    (
        "route:chat",
        {"messages": [USER], "stream_options": {"include_usage": "yes"}},
        ["stream_options", "include_usage"],
        "type",
    ),
    ("route:chat", {"messages": [USER], "modalities": ["smell"]}, ["modalities", 0], "enum"),
    # completions, embeddings
    ("route:completions", {"model": "m"}, [], "required"),
    ("route:completions", {"prompt": 5}, ["prompt"], "anyOf"),
    ("route:completions", {"prompt": "x", "max_tokens": -1}, ["max_tokens"], "minimum"),
    ("route:embeddings", {"model": "m"}, [], "required"),
    ("route:embeddings", {"input": []}, ["input"], "anyOf"),
    ("route:embeddings", {"input": "x", "encoding_format": "hex"}, ["encoding_format"], "enum"),
    ("route:embeddings", {"input": "x", "dimensions": 0}, ["dimensions"], "minimum"),
    # TGI /generate
    ("route:generate", {"inputs": ""}, ["inputs"], "minLength"),
    ("route:generate", {"parameters": {}}, [], "required"),
    ("route:generate", {"inputs": "x", "parameters": {"top_p": 1.5}}, ["parameters", "top_p"], "exclusiveMaximum"),
    ("route:generate", {"inputs": "x", "parameters": {"top_p": 1.0}}, ["parameters", "top_p"], "exclusiveMaximum"),
    (
        "route:generate",
        {"inputs": "x", "parameters": {"temperature": 0}},
        ["parameters", "temperature"],
        "exclusiveMinimum",
    ),
    ("route:generate", {"inputs": "x", "parameters": {"temprature": 0.5}}, ["parameters"], "additionalProperties"),
    (
        "route:generate",
        {"inputs": "x", "parameters": {"max_new_tokens": 0}},
        ["parameters", "max_new_tokens"],
        "minimum",
    ),
    ("route:generate", {"inputs": "x", "parameters": {"top_k": 0}}, ["parameters", "top_k"], "minimum"),
    ("route:generate", {"inputs": "x", "parameters": {"stop": list("abcde")}}, ["parameters", "stop"], "maxItems"),
    ("route:generate", {"inputs": "x", "parameters": {"do_sample": None}}, ["parameters", "do_sample"], "type"),
    (
        "route:generate",
        {"inputs": "x", "parameters": {"grammar": {"type": "json"}}},
        ["parameters", "grammar"],
        "required",
    ),
    (
        "route:generate",
        {"inputs": "x", "parameters": {"grammar": {"type": "regex", "value": 5}}},
        ["parameters", "grammar", "value"],
        "type",
    ),
    ("route:generate", {"inputs": "x", "parameters": None}, ["parameters"], "type"),
    # task API
    (
        "task:text-generation",
        {"inputs": "x", "parameters": {"temprature": 0.5}},
        ["parameters"],
        "additionalProperties",
    ),
    (
        "task:text-generation",
        {"inputs": "x", "parameters": {"temperature": -1}},
        ["parameters", "temperature"],
        "minimum",
    ),
    ("task:text-generation", {"inputs": "x", "parameters": {"top_p": 1.5}}, ["parameters", "top_p"], "maximum"),
    ("task:text-generation", {"inputs": "x", "parameters": {"max_time": 500}}, ["parameters", "max_time"], "maximum"),
    ("task:text-generation", {"inputs": "x", "stream": "yes"}, ["stream"], "type"),
    ("task:text-generation", {"parameters": {}}, [], "required"),
    ("task:text-classification", {"inputs": "x", "parameters": {"top_k": -1}}, ["parameters", "top_k"], "minimum"),
    (
        "task:text-classification",
        {"inputs": "x", "parameters": {"function_to_apply": "relu"}},
        ["parameters", "function_to_apply"],
        "enum",
    ),
    ("task:text-classification", {"inputs": 5}, ["inputs"], "type"),
    (
        "task:token-classification",
        {"inputs": "x", "parameters": {"aggregation_strategy": "mean"}},
        ["parameters", "aggregation_strategy"],
        "enum",
    ),
    ("task:zero-shot-classification", {"inputs": "x", "parameters": {}}, ["parameters"], "required"),
    ("task:zero-shot-classification", {"inputs": "x"}, [], "required"),
    (
        "task:zero-shot-classification",
        {"inputs": "x", "parameters": {"candidate_labels": []}},
        ["parameters", "candidate_labels"],
        "minItems",
    ),
    ("task:question-answering", {"inputs": {"question": "q?"}}, ["inputs"], "required"),
    ("task:question-answering", {"inputs": "q?"}, ["inputs"], "type"),
    (
        "task:sentence-similarity",
        {"inputs": {"source_sentence": "a", "sentences": "b"}},
        ["inputs", "sentences"],
        "type",
    ),
    (
        "task:sentence-similarity",
        {"inputs": {"source_sentence": "a", "sentences": ["b"]}, "parameters": {"x": 1}},
        ["parameters"],
        "additionalProperties",
    ),
    ("task:table-question-answering", {"inputs": {"query": "q", "table": ["a"]}}, ["inputs", "table"], "type"),
    ("task:table-question-answering", {"inputs": {"table": {"a": ["1"]}}}, ["inputs"], "anyOf"),
    (
        "task:table-question-answering",
        {"inputs": {"query": "q", "table": {"a": [1]}}},
        ["inputs", "table", "a", 0],
        "type",
    ),
    ("task:feature-extraction", {"inputs": "x", "truncation_direction": "up"}, ["truncation_direction"], "enum"),
    ("task:feature-extraction", {"inputs": []}, ["inputs"], "minItems"),
    ("task:translation", {"inputs": "x", "parameters": {"src_lang": "en"}}, ["parameters"], "dependentRequired"),
    (
        "task:summarization",
        {"inputs": "x", "parameters": {"generate_parameters": {"temprature": 1}}},
        ["parameters", "generate_parameters"],
        "additionalProperties",
    ),
    ("task:summarization", {"inputs": "x", "parameters": {"truncation": "all"}}, ["parameters", "truncation"], "enum"),
    ("task:fill-mask", {"inputs": "x", "parameters": {"top_k": 0}}, ["parameters", "top_k"], "minimum"),
    ("task:image-classification", {"parameters": {"top_k": 1}}, [], "anyOf"),
    ("task:image-classification", {"inputs": B64, "parameters": {"top_k": 0}}, ["parameters", "top_k"], "minimum"),
    ("task:object-detection", {"inputs": B64, "parameters": {"threshold": 2}}, ["parameters", "threshold"], "maximum"),
    ("task:image-segmentation", {"inputs": B64, "parameters": {"subtask": "all"}}, ["parameters", "subtask"], "enum"),
    (
        "task:image-to-image",
        {"inputs": B64, "parameters": {"target_size": {"width": 64}}},
        ["parameters", "target_size"],
        "required",
    ),
    ("task:visual-question-answering", {"inputs": B64}, [], "required"),
    ("task:visual-question-answering", {"inputs": {"image": B64}}, ["inputs"], "required"),
    (
        "task:document-question-answering",
        {"inputs": {"image": B64, "question": "q"}, "parameters": {"word_boxes": [[1, 2, 3]]}},
        ["parameters", "word_boxes", 0],
        "minItems",
    ),
    (
        "task:automatic-speech-recognition",
        {"inputs": B64, "parameters": {"return_timestamps": "yes"}},
        ["parameters", "return_timestamps"],
        "enum",
    ),
    ("task:text-to-image", {"inputs": "a cat", "parameters": {"width": 0}}, ["parameters", "width"], "minimum"),
    (
        "task:text-to-speech",
        {"inputs": "x", "parameters": {"temperature": -1}},
        ["parameters", "temperature"],
        "minimum",
    ),
    ("task:zero-shot-image-classification", {"inputs": B64}, [], "required"),
    ("task:tabular-classification", {"parameters": {}}, [], "anyOf"),
]


@pytest.mark.parametrize(
    ("name", "body", "path", "keyword"), INVALID, ids=[f"{n}-{i}-{k}" for i, (n, _, _, k) in enumerate(INVALID)]
)
def test_invalid_bodies_fail_at_the_field(name: str, body: Body, path: list[Any], keyword: str) -> None:
    assert_invalid(name, body, path, keyword)


# --- bodies built by the real clients ---------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + bytes(24)
FLAC = b"fLaC" + bytes(24)


class _Sent(Exception):
    """Raised by the stubbed transport once the request is built."""

    def __init__(self, request: Any) -> None:
        super().__init__("captured")
        self.request = request


def _hub_post(self: Any, request_parameters: Any, *, stream: bool = False) -> Any:
    raise _Sent(request_parameters)


HUB_CALLS: dict[str, Callable[[Any], Any]] = {
    "chat": lambda c: c.chat_completion(
        [{"role": "system", "content": "Be brief."}, USER],
        tools=[TOOL],
        tool_choice="auto",
        tool_prompt="Use a tool",
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": JSON_SCHEMA}},
        stream=True,
        stream_options={"include_usage": True},
        temperature=0,
        logit_bias=[0.5],
        stop=["\n"],
        seed=0,
        max_tokens=10,
        logprobs=True,
        top_logprobs=1,
        n=1,
        presence_penalty=0.1,
        frequency_penalty=0.1,
        top_p=0.9,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    ),
    "chat-named-tool": lambda c: c.chat_completion(
        [USER], model="org/model", tools=[TOOL], tool_choice={"function": {"name": "get_weather"}}
    ),
    "text-generation": lambda c: c.text_generation("Hello"),
    "text-generation-all": lambda c: c.text_generation(
        "x",
        max_new_tokens=2,
        stream=True,
        details=True,
        decoder_input_details=True,
        grammar={"type": "json", "value": JSON_SCHEMA},
        stop=["a"],
        seed=1,
        temperature=0.5,
        top_k=10,
        top_p=0.9,
        typical_p=0.9,
        repetition_penalty=1.1,
        frequency_penalty=0.1,
        best_of=1,
        do_sample=True,
        return_full_text=False,
        truncate=10,
        watermark=True,
        top_n_tokens=2,
        adapter_id="a",
    ),
    "feature-extraction": lambda c: c.feature_extraction(
        "Hello", normalize=True, prompt_name="query", truncate=True, truncation_direction="left", dimensions=8
    ),
    "text-classification": lambda c: c.text_classification("x", top_k=2, function_to_apply="softmax"),
    "token-classification": lambda c: c.token_classification(
        "Bob", aggregation_strategy="simple", ignore_labels=["O"], stride=2
    ),
    "summarization": lambda c: c.summarization(
        "x", clean_up_tokenization_spaces=True, truncation="longest_first", generate_parameters={"num_beams": 2}
    ),
    "translation": lambda c: c.translation("hello", src_lang="en", tgt_lang="fr", truncation="only_first"),
    "question-answering": lambda c: c.question_answering(
        question="q?", context="ctx", top_k=1, doc_stride=128, max_answer_len=15, align_to_words=True
    ),
    "fill-mask": lambda c: c.fill_mask("a [MASK]", targets=["b"], top_k=2),
    "zero-shot-classification": lambda c: c.zero_shot_classification("t", ["a", "b"], hypothesis_template="{}."),
    "sentence-similarity": lambda c: c.sentence_similarity("a", ["b", "c"]),
    "table-question-answering": lambda c: c.table_question_answering({"a": ["1"]}, "q", padding="longest"),
    "table-question-answering-model": lambda c: c.table_question_answering({"a": ["1"]}, "q", model="http://gw/x"),
    "tabular-classification": lambda c: c.tabular_classification({"a": ["1"], "b": ["2"]}),
    "text-to-image": lambda c: c.text_to_image(
        "a cat",
        height=64,
        width=64,
        negative_prompt="dog",
        num_inference_steps=2,
        guidance_scale=7.5,
        seed=1,
        scheduler="DDIM",
        extra_body={"output_quality": 100},
    ),
    "text-to-speech": lambda c: c.text_to_speech(
        "Hello", do_sample=True, max_new_tokens=10, temperature=0.7, early_stopping="never", extra_body={"voice": "a"}
    ),
    "automatic-speech-recognition-raw": lambda c: c.automatic_speech_recognition(FLAC),
    "automatic-speech-recognition": lambda c: c.automatic_speech_recognition(
        FLAC, extra_body={"return_timestamps": True}
    ),
    "audio-classification": lambda c: c.audio_classification(FLAC, top_k=1, function_to_apply="softmax"),
    "audio-to-audio-raw": lambda c: c.audio_to_audio(FLAC),
    "image-classification-raw": lambda c: c.image_classification(PNG),
    "image-classification": lambda c: c.image_classification(PNG, top_k=1),
    "image-segmentation": lambda c: c.image_segmentation(PNG, threshold=0.5, subtask="semantic", mask_threshold=0.5),
    "object-detection": lambda c: c.object_detection(PNG, threshold=0.9),
    "image-to-text-raw": lambda c: c.image_to_text(PNG),
    "image-to-image": lambda c: c.image_to_image(
        PNG, prompt="x", negative_prompt="y", target_size={"width": 64, "height": 64}, guidance_scale=1, strength=0.5
    ),
    "zero-shot-image-classification": lambda c: c.zero_shot_image_classification(PNG, ["a", "b"]),
    "visual-question-answering": lambda c: c.visual_question_answering(PNG, "q?", top_k=1),
    "document-question-answering": lambda c: c.document_question_answering(
        PNG, "q?", lang="en", top_k=1, word_boxes=["w", [0, 0, 1, 1]]
    ),
}


def _hub_body(call: Callable[[Any], Any], monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    """(task, JSON body or the raw bytes) that huggingface_hub builds for ``call``."""
    monkeypatch.setattr(InferenceClient, "_inner_post", _hub_post)
    client = InferenceClient(base_url="http://gateway.invalid/models/org/model", token="hf_test")
    with pytest.raises(_Sent) as sent:
        call(client)
    request = sent.value.request
    if request.json is not None:
        return request.task, request.json
    if getattr(request.data, "mime_type", None) == "application/json":
        return request.task, json.loads(request.data)
    return request.task, bytes(request.data)


@pytest.mark.parametrize("label", sorted(HUB_CALLS))
def test_huggingface_hub_bodies_are_valid(label: str, monkeypatch: pytest.MonkeyPatch) -> None:
    task, body = _hub_body(HUB_CALLS[label], monkeypatch)
    if isinstance(body, bytes):
        assert label.endswith("-raw") and task in BINARY_TASKS, f"{task} sent raw bytes"
        return
    assert not label.endswith("-raw"), f"{label}: expected raw bytes, got {body}"
    if task == "conversational":
        assert_valid("route:chat", body)
        return
    assert_valid(f"task:{task}", body)
    if task == "text-generation":
        assert_valid("route:generate", body)  # the same body goes to a TGI server's `/`


OPENAI_MESSAGES = [
    {"role": "developer", "content": "Be brief."},
    {"role": "system", "content": [{"type": "text", "text": "Really."}]},
    {
        "role": "user",
        "name": "ann",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + B64, "detail": "low"}},
            {"type": "input_audio", "input_audio": {"data": B64, "format": "wav"}},
            {"type": "file", "file": {"file_data": B64, "filename": "a.pdf"}},
        ],
    },
    {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "sunny"}]},
    {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}], "audio": {"id": "audio_1"}},
    {"role": "function", "name": "get_weather", "content": None},
]
OPENAI_CALLS: dict[str, Callable[[Any], Any]] = {
    "chat-everything": lambda c: c.chat.completions.create(
        model="m",
        messages=OPENAI_MESSAGES,
        tools=[TOOL, {"type": "custom", "custom": {"name": "grep", "format": {"type": "text"}}}],
        tool_choice="required",
        parallel_tool_calls=True,
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": JSON_SCHEMA, "strict": True}},
        stream=True,
        stream_options={"include_usage": True},
        max_completion_tokens=100,
        max_tokens=100,
        user="u",
        metadata={"k": "v"},
        store=False,
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "wav"},
        reasoning_effort="low",
        logprobs=True,
        top_logprobs=2,
        service_tier="auto",
        prediction={"type": "content", "content": "x"},
        web_search_options={"search_context_size": "low"},
        verbosity="low",
        prompt_cache_key="k",
        safety_identifier="s",
        seed=1,
        stop="\n",
        n=1,
        temperature=0.2,
        top_p=0.9,
        frequency_penalty=0,
        presence_penalty=0,
        logit_bias={"50256": -100},
        extra_body={"top_k": 5, "chat_template_kwargs": {"enable_thinking": False}},
    ),
    "chat-named-tool": lambda c: c.chat.completions.create(
        model="m", messages=[USER], tools=[TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}}
    ),
    "chat-allowed-tools": lambda c: c.chat.completions.create(
        model="m",
        messages=[USER],
        tools=[TOOL],
        tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": [TOOL]}},
    ),
    "chat-legacy-functions": lambda c: c.chat.completions.create(
        model="m", messages=[USER], functions=[TOOL["function"]], function_call={"name": "get_weather"}
    ),
    "chat-json-object": lambda c: c.chat.completions.create(
        model="m", messages=[USER], response_format={"type": "json_object"}, stop=["a", "b", "c", "d"]
    ),
    "completions": lambda c: c.completions.create(
        model="m",
        prompt="Say",
        max_tokens=5,
        echo=False,
        logprobs=1,
        best_of=1,
        suffix="!",
        stream=True,
        stream_options={"include_usage": True},
        user="u",
        seed=3,
        n=1,
        logit_bias={"50256": -100},
    ),
    "completions-tokens": lambda c: c.completions.create(model="m", prompt=[[1, 2], [3]]),
    "embeddings-text": lambda c: c.embeddings.create(model="m", input="Hello"),
    "embeddings-texts": lambda c: c.embeddings.create(model="m", input=["a", "b"], encoding_format="float", user="u"),
    "embeddings-tokens": lambda c: c.embeddings.create(model="m", input=[1, 2, 3], dimensions=64),
    "embeddings-token-lists": lambda c: c.embeddings.create(model="m", input=[[1, 2], [3]]),
}


def _openai_body(call: Callable[[Any], Any]) -> tuple[str, Body]:
    """(route, JSON body) that the openai client sends for ``call``."""
    sent: list[Any] = []

    def handler(request: Any) -> Any:
        sent.append(request)
        raise _Sent(request)

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    client = openai.OpenAI(api_key="sk-test", base_url="http://gateway.invalid/v1", http_client=http, max_retries=0)
    with pytest.raises((_Sent, openai.APIConnectionError)):
        call(client)
    (request,) = sent
    return request.url.path.removeprefix("/v1/").replace("chat/completions", "chat"), json.loads(request.content)


@pytest.mark.parametrize("label", sorted(OPENAI_CALLS))
def test_openai_client_bodies_are_valid(label: str) -> None:
    route, body = _openai_body(OPENAI_CALLS[label])
    assert_valid(f"route:{route}", body)


# --- through the engine -------------------------------------------------------------------------------

ENGINE_CASES: list[tuple[str, Body, str, str | None]] = [
    ("task:text-generation", {"inputs": "x", "parameters": {"temperature": -1}}, "parameters.temperature", None),
    ("route:generate", {"inputs": "x", "parameters": {"temprature": 1}}, "parameters.temprature", None),
    (
        "route:chat",
        {"messages": [USER, ASSISTANT_BARE]},
        "messages[1]",
        "an assistant message needs `content` or `tool_calls`",
    ),
    (
        "route:embeddings",
        {"input": []},
        "input",
        "must be a string, a list of strings, a list of token ids or a list of lists of token ids",
    ),
    ("task:image-classification", {"parameters": {}}, "", "needs the image (base64) as `inputs`"),
    (
        "task:table-question-answering",
        {"inputs": {"table": {}}},
        "inputs",
        "needs the question, as `query` or `question`",
    ),
]


@pytest.mark.parametrize(("name", "body", "path", "message"), ENGINE_CASES)
def test_the_engine_names_the_field(name: str, body: Body, path: str, message: str | None) -> None:
    from hfasgi.validation.engine import CompiledSchema, Violation

    with pytest.raises(Violation) as raised:
        CompiledSchema(SCHEMAS[name], name=name).check(body)
    assert raised.value.path == path
    if message is not None:  # an x-error of ours, shown as written
        assert raised.value.message == message
