"""What the cache stores, and how a stored answer is replayed as JSON or as a stream.

An entry is one compact binary blob (:func:`encode_entry` / :func:`decode_entry`): the answer's kind
(``J`` a whole JSON body, ``S`` the SSE bytes of a complete stream), its headers (those a client
needs: content type, the upstream's ``x-compute-*``, the reformatter's ``x-hfasgi-ignored-parameters``
...), and the body exactly as the client got it. The cache sits before the reformatter, so what it
stores is already in the client's dialect.

A request is answered from the entry in the form it asked for (:func:`replay`):

================  ==========================  ==============================================================
stored            asked                       answer
================  ==========================  ==============================================================
JSON              JSON                        the stored bytes (nothing parsed)
stream            stream                      the stored events; on OpenAI routes the usage-only chunk is cut
                                              out when the client did not ask for it (a stored stream without
                                              one cannot serve a client that asks: a miss)
JSON              stream                      chat: one chunk with the whole message, a finish chunk, the usage
                                              chunk if asked, ``[DONE]``; completions likewise; TGI: one token
                                              event carrying the whole text and ``generated_text``
stream            JSON                        chat chunks → ``chat.completion`` (content, reasoning, tool calls,
                                              logprobs merged); completion chunks → ``text_completion``; TGI
                                              events → ``{"generated_text"}`` (a list on ``/`` and task routes)
================  ==========================  ==============================================================

A conversion that would lose something is not attempted (``None``: the request is a miss and its fresh
answer replaces the entry): an answer without ``usage`` turned into a chat completion, TGI ``details``
(token ids and logprobs the other form lacks), a TGI ``return_full_text`` the request leaves to the model.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

from hfasgi.context import decode_json, encode_json
from hfasgi.types import Headers

__all__ = ["JSON", "STREAM", "Entry", "decode_entry", "encode_entry", "replay", "stream_complete", "usage_span"]

JSON = b"J"
STREAM = b"S"
_MAGIC = b"hc1"
_HEAD = struct.Struct(">3scIIIqq")  # magic, kind, headers length, usage chunk span, upstream usage (-1: None)
_DONE = b"data: [DONE]\n\n"
_JSON_TYPE = (b"content-type", b"application/json")
SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
"""What a live stream carries (hf_api.md §8.1; the forwarder's own)."""
_KIND_HEADERS = frozenset({b"content-type", b"cache-control", b"x-accel-buffering", b"content-length"})
"""Headers that describe the stored form: replaced when the answer is replayed in the other form."""
_USAGE_CHUNK = re.compile(rb'"choices"\s*:\s*\[\s*\]')
_FINISHED = re.compile(rb'"finish_reason"\s*:\s*"')
_OPENAI_FAMILIES = ("chat", "completions")
_TGI_FAMILIES = ("generate", "compat_generate", "task:text-generation")
_CONCATENATED = ("content", "reasoning", "reasoning_content", "refusal")
"""Delta fields whose fragments are joined into the message's field."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored answer."""

    kind: bytes
    """:data:`JSON` or :data:`STREAM`."""
    headers: Headers
    """The response headers to replay (no ``content-length``, no ``x-cache``)."""
    body: bytes
    """The JSON body, or the SSE bytes of the whole stream."""
    usage_start: int = 0
    usage_end: int = 0
    """Where the usage-only chunk of an OpenAI stream lies in :attr:`body` (both 0: none)."""
    upstream_usage: tuple[int | None, int | None] | None = None
    """The request context's ``upstream_usage`` (prompt and completion tokens of the upstream's answer, which
    the client's dialect may not carry), restored on a hit so metering sees what the miss saw."""


def encode_entry(entry: Entry) -> bytes:
    """One blob: a fixed header, then the headers (``name:value`` lines), then the body."""
    headers = b"\r\n".join(name + b":" + value for name, value in entry.headers)
    prompt, completion = entry.upstream_usage or (None, None)
    head = _HEAD.pack(
        _MAGIC, entry.kind, len(headers), entry.usage_start, entry.usage_end, _count(prompt), _count(completion)
    )
    return head + headers + entry.body


def decode_entry(blob: bytes) -> Entry | None:
    """The entry in ``blob`` (``None`` when it is not one of ours: treated as a miss)."""
    size = _HEAD.size
    if len(blob) < size:
        return None
    magic, kind, length, usage_start, usage_end, prompt, completion = _HEAD.unpack_from(blob)
    if magic != _MAGIC or kind not in (JSON, STREAM) or size + length > len(blob):
        return None
    end = size + length
    headers: Headers = []
    if length:
        for line in blob[size:end].split(b"\r\n"):
            name, _, value = line.partition(b":")
            headers.append((name, value))
    upstream_usage = None if prompt < 0 and completion < 0 else (_tokens(prompt), _tokens(completion))
    return Entry(kind, headers, blob[end:], usage_start, usage_end, upstream_usage)


def usage_span(events: bytes) -> tuple[int, int]:
    """Where the usage-only chunk (``"choices": []``) of an OpenAI stream lies (``(0, 0)``: there is none).

    It is the last chunk with a ``choices`` key (it comes right before ``[DONE]``), so the search starts
    from the end.
    """
    position = events.rfind(b'"choices"')
    if position < 0 or _USAGE_CHUNK.match(events, position) is None:
        return 0, 0
    start = events.rfind(b"data:", 0, position)
    end = events.find(b"\n\n", position)
    if start < 0 or end < 0:
        return 0, 0
    return start, end + 2


def stream_complete(family: str, events: bytes) -> bool:
    """Whether ``events`` is a whole stream that ended normally (never one that failed or was cut short).

    No error event anywhere; OpenAI streams end with ``data: [DONE]`` after a chunk with a finish
    reason; TGI streams end with the final event, the one carrying ``generated_text``.
    """
    if b'data: {"error"' in events or b'data:{"error"' in events or not events.endswith(b"\n\n"):
        return False
    if family in _OPENAI_FAMILIES:  # the finish reason is on the last chunk with choices, near the end
        return events.endswith(_DONE) and _FINISHED.search(events, max(0, events.rfind(b'"finish_reason"'))) is not None
    if family in _TGI_FAMILIES:
        start = events.rfind(b"data:", 0, len(events) - 2)
        if start < 0:
            return False
        try:
            last = decode_json(events[start + 5 : -2].strip())
        except (ValueError, UnicodeDecodeError):
            return False
        return isinstance(last, dict) and isinstance(last.get("generated_text"), str)
    return False  # no other family streams


def replay(entry: Entry, family: str, stream: bool, document: Any) -> tuple[Headers, bytes] | None:
    """The headers (without ``x-cache``) and body answering a request from ``entry``, or ``None`` (a miss).

    ``stream`` is the form the request asked for; ``document`` its parsed body (``stream_options``,
    TGI ``parameters``).
    """
    if entry.kind == JSON and not stream:
        return [*entry.headers, (b"content-length", str(len(entry.body)).encode())], entry.body
    include_usage = _include_usage(document)
    if entry.kind == STREAM and stream:
        body = entry.body
        if family in _OPENAI_FAMILIES:
            has_usage = entry.usage_end > entry.usage_start
            if include_usage and not has_usage:
                return None
            if has_usage and not include_usage:
                body = body[: entry.usage_start] + body[entry.usage_end :]
        return list(entry.headers), body
    try:
        converted = _convert(entry, family, stream, include_usage, document)
    except (ValueError, UnicodeDecodeError, TypeError, KeyError, AttributeError):
        return None  # a stored answer of a shape the conversion does not know
    if converted is None:
        return None
    kept = [h for h in entry.headers if h[0] not in _KIND_HEADERS]
    if stream:
        return [*kept, *SSE_HEADERS], converted
    return [*kept, _JSON_TYPE, (b"content-length", str(len(converted)).encode())], converted


def _convert(entry: Entry, family: str, stream: bool, include_usage: bool, document: Any) -> bytes | None:
    if stream:  # a stream from a whole answer
        answer = decode_json(entry.body)
        if family == "chat":
            return _frame(_chat_chunks(answer, include_usage), done=True)
        if family == "completions":
            return _frame(_completion_chunks(answer, include_usage), done=True)
        if family in _TGI_FAMILIES:
            events = _tgi_events(answer, document, family)
            return None if events is None else _frame(events, done=False)
        return None
    events = _events(entry.body)
    if family == "chat":
        chat = _chat_answer(events)
        return None if chat is None else encode_json(chat)
    if family == "completions":
        completion = _completion_answer(events)
        return None if completion is None else encode_json(completion)
    if family in _TGI_FAMILIES:
        generated = _tgi_answer(events)
        if generated is None:
            return None
        return encode_json(generated if family == "generate" else [generated])
    return None


# --- a stream from a whole answer ---------------------------------------------------------------------


def _chat_chunks(answer: Any, include_usage: bool) -> list[Any] | None:
    usage = answer.get("usage")
    if include_usage and not isinstance(usage, dict):
        return None
    head = _head(answer, "chat.completion.chunk")
    content: list[Any] = []
    finish: list[Any] = []
    for choice in answer["choices"]:
        message = dict(choice["message"])
        delta: dict[str, Any] = {"role": message.pop("role", "assistant")}
        calls = message.pop("tool_calls", None)
        delta.update((k, v) for k, v in message.items() if v is not None)
        if calls:
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(calls)]
        index = choice.get("index", 0)
        content.append({"index": index, "delta": delta, "logprobs": choice.get("logprobs"), "finish_reason": None})
        finish.append({"index": index, "delta": {}, "logprobs": None, "finish_reason": choice.get("finish_reason")})
    events = [{**head, "choices": content, "usage": None}, {**head, "choices": finish, "usage": None}]
    if include_usage:
        events.append({**head, "choices": [], "usage": usage})
    return events


def _completion_chunks(answer: Any, include_usage: bool) -> list[Any] | None:
    usage = answer.get("usage")
    if include_usage and not isinstance(usage, dict):
        return None
    head = _head(answer, "text_completion")
    events = [{**head, "choices": [dict(choice)]} for choice in answer["choices"]]
    if include_usage:
        events.append({**head, "choices": [], "usage": usage})
    return events


def _tgi_events(answer: Any, document: Any, family: str) -> list[Any] | None:
    if isinstance(answer, list):
        if len(answer) != 1:
            return None
        answer = answer[0]
    generated = answer.get("generated_text")
    if not isinstance(generated, str) or answer.get("details") is not None:
        return None  # details (token ids, logprobs) have no faithful stream form
    params = document.get("parameters") if isinstance(document, dict) else None
    full = params.get("return_full_text") if isinstance(params, dict) else None
    text = generated
    if full is True:
        prompt = document.get("inputs")
        if not isinstance(prompt, str) or not generated.startswith(prompt):
            return None
        text = generated[len(prompt) :]
    elif full is None and family != "generate":
        return None  # ``/`` and task routes: the model's pipeline decides whether the prompt is included
    token = {"id": 0, "text": text, "logprob": 0.0, "special": False}
    return [{"index": 1, "token": token, "generated_text": generated, "details": None}]


# --- a whole answer from a stream -----------------------------------------------------------------------


def _chat_answer(events: list[Any]) -> dict[str, Any] | None:
    if not events:
        return None
    answer = _head(events[0], "chat.completion")
    choices: dict[int, dict[str, Any]] = {}
    usage: Any = None
    for event in events:
        if event.get("usage") is not None:
            usage = event["usage"]
        for choice in event["choices"]:
            index = choice.get("index", 0)
            merged = choices.get(index)
            if merged is None:
                merged = choices[index] = {"message": {"role": "assistant"}, "finish_reason": None, "logprobs": None}
            if not _merge_delta(merged["message"], choice.get("delta") or {}):
                return None
            if choice.get("finish_reason") is not None:
                merged["finish_reason"] = choice["finish_reason"]
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict):
                held = merged["logprobs"] = merged["logprobs"] or {"content": []}
                held["content"].extend(logprobs.get("content") or [])
    if not isinstance(usage, dict) or not choices:
        return None  # a chat completion without its usage would not be the answer the upstream gave
    answer["choices"] = []
    for index in sorted(choices):
        merged = choices[index]
        message = merged["message"]
        if "content" not in message:
            message["content"] = None
        entry = {"index": index, "message": message, "logprobs": merged["logprobs"]}
        answer["choices"].append({**entry, "finish_reason": merged["finish_reason"]})
    answer["usage"] = usage
    return answer


def _merge_delta(message: dict[str, Any], delta: dict[str, Any]) -> bool:
    """Fold one chunk's delta into the message; ``False`` for a field this merge does not understand."""
    for key, value in delta.items():
        if value is None:
            continue
        if key == "role":
            message["role"] = value
        elif key in _CONCATENATED:
            message[key] = message.get(key, "") + value
        elif key == "tool_calls":
            calls: list[dict[str, Any]] = message.setdefault("tool_calls", [])
            for part in value:
                position = part.get("index", len(calls))
                while len(calls) <= position:
                    calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
                call = calls[position]
                if part.get("id"):
                    call["id"] = part["id"]
                if part.get("type"):
                    call["type"] = part["type"]
                function = part.get("function") or {}
                call["function"]["name"] += function.get("name") or ""
                call["function"]["arguments"] += function.get("arguments") or ""
        else:
            return False
    return True


def _completion_answer(events: list[Any]) -> dict[str, Any] | None:
    if not events:
        return None
    answer = _head(events[0], "text_completion")
    choices: dict[int, dict[str, Any]] = {}
    usage: Any = None
    for event in events:
        if event.get("usage") is not None:
            usage = event["usage"]
        for choice in event["choices"]:
            index = choice.get("index", 0)
            merged = choices.setdefault(index, {"index": index, "text": "", "logprobs": None, "finish_reason": None})
            merged["text"] += choice.get("text") or ""
            if choice.get("logprobs") is not None:
                return None  # completion logprobs are parallel lists: not merged here
            if choice.get("finish_reason") is not None:
                merged["finish_reason"] = choice["finish_reason"]
    if not isinstance(usage, dict) or not choices:
        return None
    answer["choices"] = [choices[i] for i in sorted(choices)]
    answer["usage"] = usage
    return answer


def _tgi_answer(events: list[Any]) -> dict[str, Any] | None:
    if not events:
        return None
    last = events[-1]
    generated = last.get("generated_text")
    if not isinstance(generated, str) or last.get("details") is not None:
        return None  # stream details are not the whole answer's details (no prefill, no top tokens)
    return {"generated_text": generated}


# --- helpers ----------------------------------------------------------------------------------------------


def _head(document: dict[str, Any], kind: str) -> dict[str, Any]:
    """The identity fields of an answer or a chunk, for the other form."""
    head: dict[str, Any] = {"id": document.get("id", ""), "object": kind}
    for key in ("created", "model", "system_fingerprint"):
        if key in document:
            head[key] = document[key]
    return head


def _events(body: bytes) -> list[Any]:
    """The JSON events of stored SSE bytes (``[DONE]`` left out)."""
    out: list[Any] = []
    for line in body.split(b"\n"):
        if line.startswith(b"data:"):
            payload = line[5:].strip()
            if payload != b"[DONE]":
                out.append(decode_json(payload))
    return out


def _frame(events: list[Any] | None, *, done: bool) -> bytes | None:
    if events is None:
        return None
    framed = b"".join(b"data: " + encode_json(event) + b"\n\n" for event in events)
    return framed + _DONE if done else framed


def _count(tokens: int | None) -> int:
    return tokens if isinstance(tokens, int) and 0 <= tokens < 2**62 else -1


def _tokens(count: int) -> int | None:
    return None if count < 0 else count


def _include_usage(document: Any) -> bool:
    options = document.get("stream_options") if isinstance(document, dict) else None
    return isinstance(options, dict) and options.get("include_usage") is True
