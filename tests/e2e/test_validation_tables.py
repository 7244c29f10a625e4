"""The request validator's schemas, one table entry per route and per HF task, driven in process.

Every key of ``ROUTE_SCHEMAS`` and ``TASK_SCHEMAS`` must have an entry here (a new schema without one fails
:func:`test_every_schema_has_a_table_entry` and its own parametrized case): a body the validator lets through
to the fake upstream (2xx where the fake serves the task, otherwise only "the fake received it as sent"), and
at least two invalid bodies, each with the exact status and ``error`` message the client gets, none of which
reaches the fake. Tasks whose body may be raw media (``BINARY_TASKS``) also have a raw body of the right kind
and get 415 for the wrong one.

The app is the reference app (``gateway_app``), validation on by default, in front of the fake HF upstream;
task requests use ``/pipeline/{task}/fake/{task}`` on a serverless upstream, which forces the task (a plain
``/models/{id}`` has no task without a catalog, so only the common ``{"inputs"}`` shape applies there).
"""

from __future__ import annotations

import base64
import io
import struct
import wave
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from hfasgi.validation.schemas import BINARY_TASKS, ROUTE_SCHEMAS, TASK_SCHEMAS
from tests.upstream import FakeHF
from tests.upstream.shapes import TASKS as SERVED_TASKS

pytestmark = pytest.mark.anyio

# --- media --------------------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def make_png() -> bytes:
    """A real 1x1 grey PNG."""
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00\x80"))
        + _png_chunk(b"IEND", b"")
    )


def make_wav() -> bytes:
    """A real 10 ms mono 16-bit WAV."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 80)
    return buffer.getvalue()


PNG = make_png()
WAV = make_wav()
FLAC = b"fLaC\x00\x00\x00\x22" + bytes(34)
"""A FLAC stream header (``fLaC`` and an empty STREAMINFO block): what the sniffer reads."""
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(16)
MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(8)
M4A = b"\x00\x00\x00\x18ftypM4A \x00\x00\x02\x00M4A mp42" + bytes(8)
THREE_GP = b"\x00\x00\x00\x14ftyp3gp4\x00\x00\x00\x00isom" + bytes(8)
"""A 3GPP container (phone voice recordings): sniffed as ``video/mp4``, may hold audio only."""
WEBM = b"\x1aE\xdf\xa3\x9fB\x86\x81\x01" + bytes(16)
OGG = b"OggS\x00\x02" + bytes(20)
MP3 = b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(16)
TEXT_BYTES = b"just some plain text, not media"
B64 = base64.b64encode(PNG).decode()
B64_AUDIO = base64.b64encode(WAV).decode()

# --- the table ----------------------------------------------------------------------------------------------

Body = dict[str, Any] | list[Any] | bytes


@dataclass(frozen=True)
class Bad:
    """An invalid body and exactly what the client is told (``error_type`` follows from the status)."""

    body: Body
    message: str
    status: int = 422
    content_type: str | None = None

    @property
    def error_type(self) -> str:
        return {400: "invalid_request", 413: "payload_too_large", 415: "unsupported_media_type"}.get(
            self.status, "validation"
        )


@dataclass(frozen=True)
class Entry:
    """One schema's table: valid bodies (JSON, and raw media for binary tasks) and invalid ones."""

    valid: dict[str, Any]
    invalid: tuple[Bad, ...]
    raw: tuple[bytes, ...] = ()
    """Valid raw media bodies (binary tasks only), sent without a Content-Type as huggingface_hub does."""
    kind: str = "serverless"
    paths: tuple[str, ...] = ()
    """Gateway paths (default: ``/pipeline/{task}/fake/{task}``)."""
    extra_valid: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    """More bodies that must pass (alternative shapes real clients send)."""


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me a story"}]
CHAT_MODEL = "org/chat-model"
PROMPT = "The quick brown fox jumps"
TEXT = "Alice met Bob in Paris yesterday"
TABLE = {"city": ["Paris", "Rome"], "country": ["France", "Italy"]}


def _enum(*values: str, null: bool = True) -> str:
    return "must be one of " + ", ".join(repr(v) for v in values) + (" (or null)" if null else "")


ROUTE_TABLE: dict[str, Entry] = {
    "chat": Entry(
        {"model": CHAT_MODEL, "messages": MESSAGES, "max_tokens": 3},
        (
            Bad({"model": CHAT_MODEL, "messages": []}, "messages: must not be empty"),
            Bad({"model": CHAT_MODEL}, "messages: is required"),
            Bad({"messages": MESSAGES, "temperature": "hot"}, "temperature: must be a number (or null)"),
            Bad({"messages": [{"content": "hi"}]}, "messages[0].role: is required"),
            Bad({"messages": [{"role": "user"}]}, "messages[0].content: is required"),
            Bad(
                {"messages": [{"role": "assistant"}]},
                "messages[0]: an assistant message needs `content` or `tool_calls`",
            ),
            Bad(
                {"messages": MESSAGES, "tools": [{"type": "function", "function": {"description": "no name"}}]},
                "tools[0].function.name: is required",
            ),
            Bad(
                {"messages": MESSAGES, "response_format": {"type": "bogus"}},
                "response_format.type: " + _enum("text", "json_object", "json_schema", "json", "regex", null=False),
            ),
            Bad({"messages": MESSAGES, "top_p": 1.5}, "top_p: must be <= 1"),
            Bad({"messages": MESSAGES, "stop": ["a", "b", "c", "d", "e"]}, "stop: must have at most 4 items"),
            Bad(
                {"messages": MESSAGES, "tool_choice": "always"},
                "tool_choice: must be one of 'auto', 'none', 'required'",
            ),
            Bad(
                {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
                "messages[0].content[0].image_url: is required",
            ),
        ),
        kind="router",
        paths=("/v1/chat/completions", f"/models/{CHAT_MODEL}/v1/chat/completions"),
        extra_valid=(
            {  # the shapes openai and huggingface_hub send: nulls for "not set", tools, json_schema, parts
                "model": CHAT_MODEL,
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                    },
                    {"role": "tool", "tool_call_id": "c1", "content": "42"},
                ],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
                "tool_choice": "auto",
                "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
                "temperature": None,
                "stream": False,
                "max_tokens": 2,
                "chat_template_kwargs": {"enable_thinking": False},
            },
        ),
    ),
    "completions": Entry(
        {"model": CHAT_MODEL, "prompt": ["Once upon a time", "In a galaxy"], "max_tokens": 2},
        (
            Bad({"model": CHAT_MODEL}, "prompt: is required"),
            Bad(
                {"model": CHAT_MODEL, "prompt": []},
                "prompt: must be a string, a list of strings, a list of token ids or a list of lists of token ids",
            ),
            Bad({"model": CHAT_MODEL, "prompt": "x", "max_tokens": -1}, "max_tokens: must be >= 0"),
            Bad({"model": CHAT_MODEL, "prompt": "x", "best_of": "2"}, "best_of: must be an integer (or null)"),
        ),
        kind="openai",
        paths=("/v1/completions",),
        extra_valid=({"model": CHAT_MODEL, "prompt": "x", "max_tokens": 1, "stop": None, "top_k": 5},),
    ),
    "embeddings": Entry(
        {"model": "org/embedder", "input": ["first", "second"], "encoding_format": "float"},
        (
            Bad({"model": "org/embedder"}, "input: is required"),
            Bad(
                {"model": "org/embedder", "input": "x", "encoding_format": "hex"},
                "encoding_format: " + _enum("float", "base64"),
            ),
            Bad({"model": "org/embedder", "input": "x", "dimensions": 0}, "dimensions: must be >= 1"),
            Bad(
                {"model": "org/embedder", "input": [1, "a"]},
                "input: must be a string, a list of strings, a list of token ids or a list of lists of token ids",
            ),
        ),
        kind="openai",
        paths=("/v1/embeddings",),
        extra_valid=({"model": "org/embedder", "input": "one", "dimensions": 4, "encoding_format": "base64"},),
    ),
    "generate": Entry(
        {"inputs": PROMPT, "parameters": {"max_new_tokens": 3, "details": True}},
        (
            Bad({"inputs": ""}, "inputs: must not be empty"),
            Bad({"parameters": {}}, "inputs: is required"),
            Bad({"inputs": PROMPT, "parameters": {"temperature": 0}}, "parameters.temperature: must be > 0"),
            Bad({"inputs": PROMPT, "parameters": {"temperature": -1}}, "parameters.temperature: must be > 0"),
            Bad({"inputs": PROMPT, "parameters": {"top_p": 1.5}}, "parameters.top_p: must be < 1"),
            Bad(
                {"inputs": PROMPT, "parameters": {"stop": list("abcde")}}, "parameters.stop: must have at most 4 items"
            ),
            Bad({"inputs": PROMPT, "parameters": {"max_new_tokens": -3}}, "parameters.max_new_tokens: must be >= 1"),
            Bad(
                {"inputs": PROMPT, "parameters": {"temprature": 1}},
                "parameters.temprature: is not a known parameter (check its spelling)",
            ),
            Bad(
                {"inputs": PROMPT, "parameters": {"temprature": 1, "topk": 2}},
                "parameters: unknown parameters 'temprature', 'topk' (check their spelling)",
            ),
            Bad({"inputs": PROMPT, "parameters": {"do_sample": None}}, "parameters.do_sample: must be true or false"),
            Bad(
                {"inputs": PROMPT, "parameters": {"grammar": {"type": "regex", "value": {}}}},
                "parameters.grammar.value: must be a string",
            ),
        ),
        kind="tgi",
        paths=("/", "/generate", "/generate_stream"),
        extra_valid=(
            {
                "inputs": PROMPT,
                "parameters": {"max_new_tokens": 2, "stop": ["\n"], "grammar": {"type": "regex", "value": "a+"}},
                "stream": False,
            },
        ),
    ),
}


def _text_generation_invalid() -> tuple[Bad, ...]:
    return (
        Bad({"inputs": PROMPT, "parameters": {"temperature": -1}}, "parameters.temperature: must be >= 0"),
        Bad({"inputs": PROMPT, "parameters": {"stop": list("abcde")}}, "parameters.stop: must have at most 4 items"),
        Bad({"inputs": PROMPT, "parameters": {"max_new_tokens": -3}}, "parameters.max_new_tokens: must be >= 0"),
        Bad({"inputs": PROMPT, "parameters": {"top_k": 0}}, "parameters.top_k: must be >= 1"),
        Bad({"inputs": 5}, "inputs: must be a string"),
    )


def _image(task: str, parameters: dict[str, Any], invalid: tuple[Bad, ...], raw: bool = True) -> Entry:
    """An image task: ``inputs`` base64, or the legacy ``image``; raw PNG/JPEG when it takes raw bytes."""
    return Entry(
        {"inputs": B64, "parameters": parameters},
        (Bad({"parameters": parameters}, "needs the image (base64) as `inputs`"), *invalid),
        raw=(PNG, JPEG) if raw else (),
        extra_valid=({"image": B64},) if not parameters else ({"image": B64, "parameters": parameters},),
    )


TASK_TABLE: dict[str, Entry] = {
    "audio-classification": Entry(
        {"inputs": B64_AUDIO, "parameters": {"top_k": 2, "function_to_apply": "softmax"}},
        (
            Bad({"inputs": B64_AUDIO, "parameters": {"top_k": 0}}, "parameters.top_k: must be >= 1"),
            Bad(
                {"inputs": B64_AUDIO, "parameters": {"function_to_apply": "relu"}},
                "parameters.function_to_apply: " + _enum("sigmoid", "softmax", "none"),
            ),
            Bad({"parameters": {}}, "inputs: is required"),
        ),
        raw=(WAV, FLAC, OGG, MP3, M4A, WEBM),
    ),
    "audio-to-audio": Entry(
        {"inputs": B64_AUDIO},
        (
            Bad(
                {"inputs": B64_AUDIO, "parameters": {"x": 1}},
                "parameters.x: is not a known parameter (check its spelling)",
            ),
            Bad({"inputs": 5}, "inputs: must be a string"),
        ),
        raw=(WAV, FLAC),
    ),
    "automatic-speech-recognition": Entry(
        {"inputs": B64_AUDIO, "parameters": {"return_timestamps": "word"}},
        (
            Bad(
                {"inputs": B64_AUDIO, "parameters": {"return_timestamps": "sentence"}},
                "parameters.return_timestamps: must be one of true, false, 'word', 'char' (or null)",
            ),
            Bad(
                {"inputs": B64_AUDIO, "parameters": {"generation_parameters": {"temprature": 1}}},
                "parameters.generation_parameters.temprature: is not a known parameter (check its spelling)",
            ),
            Bad({"parameters": {}}, "inputs: is required"),
        ),
        raw=(WAV, FLAC, OGG, MP3, WEBM, M4A, MP4, THREE_GP),  # audio in video containers too (ffmpeg decodes)
        extra_valid=({"inputs": B64_AUDIO, "parameters": {"provider_extra": 1}},),  # open: HFH's extra_body
    ),
    "chat-completion": Entry(
        {"model": CHAT_MODEL, "messages": MESSAGES},
        (
            Bad({"messages": []}, "messages: must not be empty"),
            Bad(
                {"messages": [{"role": "user", "content": 5}]},
                "messages[0].content: must be a string or a list (or null)",
            ),
        ),
    ),
    "depth-estimation": _image(
        "depth-estimation",
        {},
        (Bad({"inputs": B64, "parameters": {"x": 1}}, "parameters.x: is not a known parameter (check its spelling)"),),
    ),
    "document-question-answering": Entry(
        {"inputs": {"image": B64, "question": "What is the total?"}, "parameters": {"top_k": 1}},
        (
            Bad({"inputs": {"image": B64}}, "inputs.question: is required"),
            Bad(
                {"inputs": {"image": B64, "question": "q"}, "parameters": {"word_boxes": [[1, 2, 3]]}},
                "parameters.word_boxes[0]: must have at least 4 items",
            ),
            Bad({"inputs": B64}, "inputs: must be an object"),
        ),
    ),
    "feature-extraction": Entry(
        {"inputs": ["first text", "second"], "normalize": True, "dimensions": 3},
        (
            Bad({"inputs": []}, "inputs: must not be empty"),
            Bad({"inputs": "x", "truncation_direction": "up"}, "truncation_direction: " + _enum("left", "right")),
            Bad({"inputs": [1]}, "inputs[0]: must be a string"),
            Bad(
                {"inputs": "x", "options": {"wait": True}},
                "options.wait: is not a known parameter (check its spelling)",
            ),
        ),
        extra_valid=({"inputs": "x", "options": {"wait_for_model": True}},),
    ),
    "fill-mask": Entry(
        {"inputs": "Paris is the [MASK] of France", "parameters": {"top_k": 2}},
        (
            Bad({"inputs": "x [MASK]", "parameters": {"top_k": 0}}, "parameters.top_k: must be >= 1"),
            Bad({"inputs": "x [MASK]", "parameters": {"targets": [1]}}, "parameters.targets[0]: must be a string"),
        ),
    ),
    "image-classification": _image(
        "image-classification",
        {"top_k": 1},
        (
            Bad({"inputs": B64, "parameters": {"top_k": 0}}, "parameters.top_k: must be >= 1"),
            Bad(
                {"inputs": B64, "parameters": {"topk": 1}},
                "parameters.topk: is not a known parameter (check its spelling)",
            ),
        ),
    ),
    "image-segmentation": _image(
        "image-segmentation",
        {"threshold": 0.5, "subtask": "semantic"},
        (
            Bad({"inputs": B64, "parameters": {"threshold": 2}}, "parameters.threshold: must be <= 1"),
            Bad(
                {"inputs": B64, "parameters": {"subtask": "all"}},
                "parameters.subtask: " + _enum("instance", "panoptic", "semantic"),
            ),
        ),
    ),
    "image-text-to-image": _image(
        "image-text-to-image",
        {"prompt": "a red hat"},
        (
            Bad(
                {"inputs": B64, "parameters": {"num_inference_steps": 0}},
                "parameters.num_inference_steps: must be >= 1",
            ),
            Bad(
                {"inputs": B64, "parameters": {"target_size": {"width": 2}}},
                "parameters.target_size.height: is required",
            ),
        ),
        raw=False,
    ),
    "image-text-to-video": _image(
        "image-text-to-video",
        {"prompt": "a red hat"},
        (
            Bad({"inputs": B64, "parameters": {"num_frames": 0}}, "parameters.num_frames: must be >= 1"),
            Bad({"inputs": B64, "parameters": {"guidance_scale": -1}}, "parameters.guidance_scale: must be >= 0"),
        ),
        raw=False,
    ),
    "image-to-image": _image(
        "image-to-image",
        {"prompt": "a red hat", "target_size": {"width": 8, "height": 8}, "strength": 0.3},
        (
            Bad(
                {"inputs": B64, "parameters": {"target_size": {"width": 0, "height": 3}}},
                "parameters.target_size.width: must be >= 1",
            ),
            Bad(
                {"inputs": B64, "parameters": {"target_size": {"width": 1, "height": 3, "depth": 1}}},
                "parameters.target_size.depth: is not a known parameter (check its spelling)",
            ),
        ),
    ),
    "image-to-text": _image(
        "image-to-text",
        {"max_new_tokens": 5},
        (
            Bad({"inputs": B64, "parameters": {"max_new_tokens": 0}}, "parameters.max_new_tokens: must be >= 1"),
            Bad(
                {"inputs": B64, "parameters": {"generation_parameters": {"num_beams": 0}}},
                "parameters.generation_parameters.num_beams: must be >= 1",
            ),
        ),
    ),
    "image-to-video": _image(
        "image-to-video",
        {"num_frames": 8, "prompt": "waves"},
        (
            Bad({"inputs": B64, "parameters": {"num_frames": 0}}, "parameters.num_frames: must be >= 1"),
            Bad({"inputs": B64, "parameters": {"seed": "1"}}, "parameters.seed: must be an integer (or null)"),
        ),
    ),
    "object-detection": _image(
        "object-detection",
        {"threshold": 0.9},
        (
            Bad({"inputs": B64, "parameters": {"threshold": -0.1}}, "parameters.threshold: must be >= 0"),
            Bad(
                {"inputs": B64, "parameters": {"top_k": 3}},
                "parameters.top_k: is not a known parameter (check its spelling)",
            ),
        ),
    ),
    "question-answering": Entry(
        {"inputs": {"question": "Where?", "context": TEXT}, "parameters": {"top_k": 2}},
        (
            Bad({"inputs": {"question": "Where?"}}, "inputs.context: is required"),
            Bad(
                {"inputs": {"question": "q", "context": "c"}, "parameters": {"top_k": 0}},
                "parameters.top_k: must be >= 1",
            ),
            Bad({"inputs": "Where?"}, "inputs: must be an object"),
            Bad(
                {"inputs": {"question": "q", "context": "c"}, "parameters": {"max_answer_len": "5"}},
                "parameters.max_answer_len: must be an integer (or null)",
            ),
        ),
    ),
    "sentence-similarity": Entry(
        {"inputs": {"source_sentence": TEXT, "sentences": ["Alice met Bob", "Cold in Oslo"]}, "parameters": {}},
        (
            Bad({"inputs": {"source_sentence": "a"}}, "inputs.sentences: is required"),
            Bad({"inputs": {"source_sentence": "a", "sentences": "b"}}, "inputs.sentences: must be a list"),
            Bad(
                {"inputs": {"source_sentence": "a", "sentences": ["b"]}, "parameters": {"x": 1}},
                "parameters.x: is not a known parameter (check its spelling)",
            ),
        ),
    ),
    "summarization": Entry(
        {"inputs": TEXT, "parameters": {"truncation": "longest_first", "generate_parameters": {"num_beams": 2}}},
        (
            Bad({"inputs": "x", "parameters": {"max_length": 0}}, "parameters.max_length: must be >= 1"),
            Bad(
                {"inputs": "x", "parameters": {"truncation": "yes"}},
                "parameters.truncation: " + _enum("do_not_truncate", "longest_first", "only_first", "only_second"),
            ),
            Bad(
                {"inputs": "x", "parameters": {"generate_parameters": {"num_beams": 0}}},
                "parameters.generate_parameters.num_beams: must be >= 1",
            ),
        ),
    ),
    "table-question-answering": Entry(
        {"inputs": {"query": "Which city is in Italy?", "table": TABLE}, "parameters": {}},
        (
            Bad({"inputs": {"query": "q", "table": [1]}}, "inputs.table: must be an object"),
            Bad({"inputs": {"table": TABLE}}, "inputs: needs the question, as `query` or `question`"),
            Bad({"inputs": {"query": "q", "table": {"city": [1]}}}, "inputs.table.city[0]: must be a string"),
            Bad({"inputs": {"query": "q"}}, "inputs.table: is required"),
        ),
        extra_valid=({"inputs": {"question": "Which city?", "table": TABLE}},),
    ),
    "tabular-classification": Entry(
        {"table": {"a": [1, 2], "b": ["x", "y"]}, "parameters": {}},
        (
            Bad({"parameters": {}}, "needs the table, as `table` or `inputs.data`"),
            Bad({"table": {"a": 1}}, "table.a: must be a list"),
            Bad({"inputs": {"x": 1}}, "inputs.data: is required"),
        ),
        extra_valid=({"inputs": {"data": {"a": [1]}}},),
    ),
    "tabular-regression": Entry(
        {"inputs": {"data": {"a": [1.5, 2.5]}}},
        (
            Bad({"inputs": {}}, "inputs.data: is required"),
            Bad({"table": []}, "table: must be an object"),
        ),
        extra_valid=({"table": {"a": [1]}, "parameters": {}},),
    ),
    "text-classification": Entry(
        {"inputs": TEXT, "parameters": {"top_k": 1, "function_to_apply": "softmax"}},
        (
            Bad({"inputs": TEXT, "parameters": {"top_k": -1}}, "parameters.top_k: must be >= 1"),
            Bad(
                {"inputs": TEXT, "parameters": {"function_to_apply": "relu"}},
                "parameters.function_to_apply: " + _enum("sigmoid", "softmax", "none"),
            ),
            Bad({"inputs": [TEXT]}, "inputs: must be a string"),
            Bad({"parameters": {}}, "inputs: is required"),
        ),
    ),
    "text-generation": Entry(
        {"inputs": PROMPT, "parameters": {"max_new_tokens": 3}},
        _text_generation_invalid(),
        extra_valid=({"inputs": PROMPT, "parameters": {"temperature": 0, "top_p": 1, "max_time": 10}},),
    ),
    "text-to-audio": Entry(
        {"inputs": "a dog barking"},
        (
            Bad(
                {"inputs": "x", "parameters": {"foo": 1}},
                "parameters.foo: is not a known parameter (check its spelling)",
            ),
            Bad(
                {"inputs": "x", "parameters": {"generation_parameters": {"top_p": 2}}},
                "parameters.generation_parameters.top_p: must be <= 1",
            ),
        ),
    ),
    "text-to-image": Entry(
        {"inputs": "an astronaut", "parameters": {"width": 64, "height": 64, "provider_extra": True}},
        (
            Bad({"inputs": "x", "parameters": {"width": 0}}, "parameters.width: must be >= 1"),
            Bad(
                {"inputs": "x", "parameters": {"num_inference_steps": "many"}},
                "parameters.num_inference_steps: must be an integer (or null)",
            ),
            Bad({"inputs": 3}, "inputs: must be a string"),
        ),
    ),
    "text-to-speech": Entry(
        {"inputs": "hello there", "parameters": {"do_sample": True}},
        (
            Bad({"inputs": "x", "parameters": {"temperature": -1}}, "parameters.temperature: must be >= 0"),
            Bad(
                {"inputs": "x", "parameters": {"generation_parameters": {"bogus": 1}}},
                "parameters.generation_parameters.bogus: is not a known parameter (check its spelling)",
            ),
        ),
    ),
    "text-to-video": Entry(
        {"inputs": "waves at dusk", "parameters": {"num_frames": 8}},
        (
            Bad({"inputs": "x", "parameters": {"num_frames": 0}}, "parameters.num_frames: must be >= 1"),
            Bad(
                {"inputs": "x", "parameters": {"negative_prompt": [1]}},
                "parameters.negative_prompt[0]: must be a string",
            ),
        ),
    ),
    "text2text-generation": Entry(
        {"inputs": TEXT, "parameters": {"truncation": "only_first", "max_new_tokens": 4}},
        (
            Bad(
                {"inputs": "x", "parameters": {"truncation": "both"}},
                "parameters.truncation: " + _enum("do_not_truncate", "longest_first", "only_first", "only_second"),
            ),
            Bad(
                {"inputs": "x", "parameters": {"generate_parameters": {"num_beams": 0}}},
                "parameters.generate_parameters.num_beams: must be >= 1",
            ),
        ),
    ),
    "token-classification": Entry(
        {"inputs": TEXT, "parameters": {"aggregation_strategy": "none"}},
        (
            Bad(
                {"inputs": "x", "parameters": {"aggregation_strategy": "all"}},
                "parameters.aggregation_strategy: " + _enum("none", "simple", "first", "average", "max"),
            ),
            Bad({"inputs": "x", "parameters": {"stride": -1}}, "parameters.stride: must be >= 0"),
        ),
    ),
    "translation": Entry(
        {"inputs": TEXT, "parameters": {"src_lang": "en", "tgt_lang": "fr"}},
        (
            Bad({"inputs": "x", "parameters": {"src_lang": "en"}}, "parameters.tgt_lang: is required"),
            Bad(
                {"inputs": "x", "parameters": {"tgt_lang": 5, "src_lang": "en"}},
                "parameters.tgt_lang: must be a string (or null)",
            ),
        ),
    ),
    "video-classification": Entry(
        {"inputs": base64.b64encode(MP4).decode(), "parameters": {"num_frames": 8}},
        (
            Bad({"inputs": "AAAA", "parameters": {"num_frames": 0}}, "parameters.num_frames: must be >= 1"),
            Bad(
                {"inputs": "AAAA", "parameters": {"frame_sampling_rate": "x"}},
                "parameters.frame_sampling_rate: must be an integer (or null)",
            ),
        ),
        raw=(MP4, WEBM),
    ),
    "visual-question-answering": Entry(
        {"inputs": {"image": B64, "question": "What colour?"}, "parameters": {"top_k": 1}},
        (
            Bad({"inputs": B64}, "question: is required"),
            Bad({"inputs": {"image": B64}}, "inputs.question: is required"),
            Bad(
                {"inputs": {"image": B64, "question": "q"}, "parameters": {"top_k": 0}},
                "parameters.top_k: must be >= 1",
            ),
        ),
        extra_valid=({"inputs": B64, "image": B64, "question": "What colour?"},),  # huggingface_hub's flat form
    ),
    "zero-shot-classification": Entry(
        {"inputs": TEXT, "parameters": {"candidate_labels": ["travel", "cooking"], "multi_label": False}},
        (
            Bad({"inputs": TEXT}, "parameters: is required"),
            Bad({"inputs": TEXT, "parameters": {}}, "parameters.candidate_labels: is required"),
            Bad(
                {"inputs": TEXT, "parameters": {"candidate_labels": []}},
                "parameters.candidate_labels: must not be empty",
            ),
            Bad(
                {"inputs": TEXT, "parameters": {"candidate_labels": ""}},
                "parameters.candidate_labels: must not be empty",
            ),
        ),
        extra_valid=({"inputs": TEXT, "parameters": {"candidate_labels": "travel, cooking"}},),  # legacy string
    ),
    "zero-shot-image-classification": Entry(
        {"inputs": B64, "parameters": {"candidate_labels": ["cat", "dog"]}},
        (
            Bad({"inputs": B64}, "parameters: is required"),
            Bad(
                {"inputs": B64, "parameters": {"candidate_labels": []}},
                "parameters.candidate_labels: must not be empty",
            ),
        ),
    ),
    "zero-shot-object-detection": Entry(
        {"inputs": B64, "parameters": {"candidate_labels": ["cat"]}},
        (
            Bad({"inputs": B64, "parameters": {}}, "parameters.candidate_labels: is required"),
            Bad(
                {"inputs": B64, "parameters": {"candidate_labels": "cat"}},
                "parameters.candidate_labels: must be a list",
            ),
        ),
    ),
}

# --- driving ------------------------------------------------------------------------------------------------

Post = Callable[[str, str, Body, str | None], Awaitable[httpx.Response]]


@pytest.fixture
async def post(gateway_app: Callable[..., Awaitable[Any]]) -> AsyncIterator[Post]:
    """``post(kind, path, body, content_type)`` to the in-process reference app (one app per upstream kind)."""
    apps: dict[str, Any] = {}
    clients: list[httpx.AsyncClient] = []

    async def send(kind: str, path: str, body: Body, content_type: str | None = None) -> httpx.Response:
        if kind not in apps:
            apps[kind] = await gateway_app(kind)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=apps[kind]), base_url="http://gateway")
        clients.append(client)
        headers = {"content-type": content_type} if content_type else {}
        if isinstance(body, bytes):
            return await client.post(path, content=body, headers=headers)
        return await client.post(path, json=body, headers=headers)

    try:
        yield send
    finally:
        for client in clients:
            await client.aclose()


def task_path(task: str) -> str:
    return f"/pipeline/{task}/fake/{task}"


def paths_of(entry: Entry, task: str | None = None) -> tuple[str, ...]:
    return entry.paths or (task_path(str(task)),)


async def check_invalid(post: Post, fake: FakeHF, entry: Entry, path: str) -> None:
    """Each invalid body: the exact status and envelope; none reached the fake."""
    before = list(fake.requests)
    for bad in entry.invalid:
        response = await post(entry.kind, path, bad.body, bad.content_type)
        assert (response.status_code, response.json()) == (
            bad.status,
            {"error": bad.message, "error_type": bad.error_type},
        ), bad.body
    assert fake.requests == before


async def check_valid(post: Post, fake: FakeHF, entry: Entry, path: str, served: bool) -> None:
    """Each valid body reaches the fake as sent (the main one answered 2xx when the fake serves the task)."""
    for body in (entry.valid, *entry.raw, *entry.extra_valid):
        before = len(fake.requests)
        response = await post(entry.kind, path, body, None)
        assert len(fake.requests) == before + 1, (body if isinstance(body, dict) else body[:16], response.text)
        sent = fake.requests[-1]
        if isinstance(body, bytes):
            assert sent.body == body
        else:
            assert sent.json == body
        if served and body is entry.valid:
            assert 200 <= response.status_code < 300, response.text
        elif response.status_code >= 300:  # the fake does not know the task (or that form): its error, not ours
            assert response.status_code in (400, 404), response.text
            assert response.json().get("error_type") is None, response.text


def test_every_schema_has_a_table_entry() -> None:
    """A schema without a table entry (or an entry for a schema that went away) fails here."""
    assert set(ROUTE_TABLE) == set(ROUTE_SCHEMAS)
    assert set(TASK_TABLE) == set(TASK_SCHEMAS)
    assert all(len(entry.invalid) >= 2 for entry in (*ROUTE_TABLE.values(), *TASK_TABLE.values()))
    assert {task for task, entry in TASK_TABLE.items() if entry.raw} == set(BINARY_TASKS)


@pytest.mark.parametrize("name", sorted(ROUTE_SCHEMAS))
async def test_route_table(post: Post, fake: FakeHF, name: str) -> None:
    """A route's invalid bodies get 422 with the field and the reason; its valid bodies reach the upstream."""
    assert name in ROUTE_TABLE, f"the {name!r} route schema has no table entry"
    entry = ROUTE_TABLE[name]
    for path in paths_of(entry):
        await check_invalid(post, fake, entry, path)
        await check_valid(post, fake, entry, path, served=True)


@pytest.mark.parametrize("task", sorted(TASK_SCHEMAS))
async def test_task_table(post: Post, fake: FakeHF, task: str) -> None:
    """A task's invalid bodies get 422 with the field and the reason; its valid bodies reach the upstream."""
    assert task in TASK_TABLE, f"the {task!r} task schema has no table entry"
    entry = TASK_TABLE[task]
    path = task_path(task)
    await check_invalid(post, fake, entry, path)
    await check_valid(post, fake, entry, path, served=task in SERVED_TASKS)


# --- raw bodies of task routes ------------------------------------------------------------------------------

WRONG_MEDIA = {"image": (WAV, "audio/wav"), "audio": (PNG, "image/png"), "video": (PNG, "image/png")}
"""For each kind of binary task: raw bytes of another kind, and what the sniffer calls them."""


@pytest.mark.parametrize("task", sorted(BINARY_TASKS))
async def test_wrong_media_is_415(post: Post, fake: FakeHF, task: str) -> None:
    """Raw bytes of another kind of media, or of no known format, are refused with what was found."""
    kind = BINARY_TASKS[task]
    wrong, seen = WRONG_MEDIA[kind]
    expected = f"The {task} task takes {kind} bytes (or JSON with base64 inputs); got "
    response = await post("serverless", task_path(task), wrong, None)
    assert (response.status_code, response.json()["error"]) == (415, expected + seen)
    response = await post("serverless", task_path(task), TEXT_BYTES, None)
    assert (response.status_code, response.json()["error"]) == (415, expected + "bytes of no known format")
    response = await post("serverless", task_path(task), TEXT_BYTES, "text/plain")
    assert (response.status_code, response.json()) == (
        415,
        {"error": expected + "text/plain", "error_type": "unsupported_media_type"},
    )
    assert fake.requests == []


@pytest.mark.parametrize("task", sorted(BINARY_TASKS))
async def test_declared_media_type_is_trusted_when_the_bytes_say_nothing(post: Post, fake: FakeHF, task: str) -> None:
    """Bytes of no known format with a Content-Type of the task's kind go on (the upstream decides)."""
    kind = BINARY_TASKS[task]
    await post("serverless", task_path(task), TEXT_BYTES, f"{kind}/x-something")
    assert [r.body for r in fake.requests] == [TEXT_BYTES]
    assert fake.requests[0].path == task_path(task)


@pytest.mark.parametrize("task", sorted(set(TASK_SCHEMAS) - set(BINARY_TASKS)))
async def test_raw_bytes_to_a_json_task_is_415(post: Post, fake: FakeHF, task: str) -> None:
    """A task that only takes JSON refuses raw bytes, media or text, naming the form it takes."""
    message = f'The {task} task takes a JSON body ({{"inputs": ...}}), not raw bytes'
    for body, content_type in ((PNG, None), (TEXT_BYTES, "text/plain"), (WAV, "application/octet-stream")):
        response = await post("serverless", task_path(task), body, content_type)
        assert (response.status_code, response.json()) == (
            415,
            {"error": message, "error_type": "unsupported_media_type"},
        )
    assert fake.requests == []


async def test_json_with_a_non_json_content_type_is_415(post: Post, fake: FakeHF) -> None:
    """A JSON body declared as something else: 415 naming what the route takes (raw media, for media tasks)."""
    body = b'{"inputs": "hello"}'
    response = await post("serverless", task_path("text-classification"), body, "text/plain")
    assert (response.status_code, response.json()["error"]) == (
        415,
        "Unsupported Content-Type 'text/plain': this route takes application/json",
    )
    response = await post("serverless", task_path("image-classification"), body, "text/plain; charset=utf-8")
    assert (response.status_code, response.json()["error"]) == (
        415,
        "Unsupported Content-Type 'text/plain': this route takes application/json or raw image bytes",
    )
    response = await post("router", "/v1/chat/completions", b'{"messages": []}', "application/x-www-form-urlencoded")
    assert (response.status_code, response.json()["error"]) == (
        415,
        "Unsupported Content-Type 'application/x-www-form-urlencoded': this route takes application/json",
    )
    assert fake.requests == []
    response = await post(
        "serverless", task_path("text-classification"), b'{"inputs": "hi"}', "application/vnd.api+json"
    )
    assert response.status_code == 200 and fake.last().json == {"inputs": "hi"}


async def test_unknown_task_route_checks_only_the_common_shape(post: Post, fake: FakeHF) -> None:
    """``/models/{id}`` without a catalog entry: ``inputs`` is required, the parameters are the upstream's business."""
    response = await post("serverless", "/models/fake/text-classification", {"parameters": {}}, None)
    assert (response.status_code, response.json()) == (
        422,
        {"error": "inputs: is required", "error_type": "validation"},
    )
    response = await post("serverless", "/models/fake/text-classification", {"inputs": "x", "parameters": []}, None)
    assert response.json() == {"error": "parameters: must be an object", "error_type": "validation"}
    assert fake.requests == []
    body = {"inputs": TEXT, "parameters": {"top_k": -1}}  # refused on the forced-task route, not here
    response = await post("serverless", "/models/fake/text-classification", body, None)
    assert fake.last().json == body and response.status_code == 200
    raw = await post("serverless", "/models/fake/text-classification", PNG, None)  # a task we cannot name
    assert fake.last().body == PNG and raw.status_code == 200  # the fake classifies the bytes as text


@pytest.mark.parametrize(
    ("kind", "path"),
    [("router", "/v1/chat/completions"), ("tgi", "/generate"), ("serverless", task_path("text-classification"))],
)
async def test_malformed_bodies_are_400(post: Post, fake: FakeHF, kind: str, path: str) -> None:
    """Malformed JSON → 400 ``invalid_json``; a JSON array or string → 400 ``invalid_request``; empty → 400."""
    response = await post(kind, path, b'{"messages": [', "application/json")
    assert response.status_code == 400 and response.json()["error_type"] == "invalid_json"
    assert response.json()["error"].startswith("The request body is not valid JSON: ")
    for body in ([MESSAGES], "text"):
        response = await post(kind, path, body, None)
        assert (response.status_code, response.json()) == (
            400,
            {"error": "The request body must be a JSON object", "error_type": "invalid_request"},
        )
    response = await post(kind, path, b"", "application/json")
    assert response.status_code == 400 and response.json()["error"].startswith("The request body is empty")
    assert fake.requests == []
