"""Stored entries and their replay as JSON or as a stream, both ways (unit level, no server)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hfasgi.cache.replay import JSON, STREAM, Entry, decode_entry, encode_entry, replay, stream_complete, usage_span
from tests.cache.support import sse_events

USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
HEAD = {"id": "chatcmpl-7", "created": 1700000000, "model": "org/m", "system_fingerprint": "fp"}


def frame(*events: Any, done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n" for e in events)
    return body + (b"data: [DONE]\n\n" if done else b"")


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {**HEAD, "object": "chat.completion.chunk", "choices": [choice], "usage": None, **extra}


USAGE_CHUNK = {**HEAD, "object": "chat.completion.chunk", "choices": [], "usage": USAGE}
CHAT_STREAM = frame(chunk({"role": "assistant", "content": "Hel"}), chunk({"content": "lo"}, "stop"), USAGE_CHUNK)
CHAT_ANSWER = {
    **HEAD,
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "logprobs": None,
                 "finish_reason": "stop"}],
    "usage": USAGE,
}  # fmt: skip
SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
JSON_HEADERS = [(b"content-type", b"application/json"), (b"x-compute-type", b"cpu")]


def stored_stream(body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> Entry:
    return decode_entry(encode_entry(Entry(STREAM, headers or SSE, body, *usage_span(body))))  # type: ignore[return-value]


def stored_json(document: Any) -> Entry:
    body = json.dumps(document, separators=(",", ":")).encode()
    entry = decode_entry(encode_entry(Entry(JSON, JSON_HEADERS, body)))
    assert entry is not None
    return entry


def test_an_entry_survives_encoding() -> None:
    entry = Entry(STREAM, [(b"content-type", b"text/event-stream"), (b"x-a", b"b:c")], CHAT_STREAM, 5, 9)
    assert decode_entry(encode_entry(entry)) == entry
    assert decode_entry(encode_entry(Entry(JSON, [], b"{}"))) == Entry(JSON, [], b"{}")
    for usage in ((5, 7), (None, 7), (5, None)):
        counted = Entry(JSON, [], b"{}", upstream_usage=usage)
        assert decode_entry(encode_entry(counted)) == counted
    for junk in (b"", b"hc1", b"something else entirely", b"hc1X" + bytes(12)):
        assert decode_entry(junk) is None


def test_json_from_json_is_the_stored_bytes_with_their_length() -> None:
    entry = stored_json(CHAT_ANSWER)
    answer = replay(entry, "chat", False, {})
    assert answer is not None
    headers, body = answer
    assert body == entry.body
    assert dict(headers) == {**dict(JSON_HEADERS), b"content-length": str(len(body)).encode()}


def test_stream_from_stream_keeps_the_usage_chunk_only_when_asked() -> None:
    entry = stored_stream(CHAT_STREAM)
    asked = replay(entry, "chat", True, {"stream_options": {"include_usage": True}})
    assert asked is not None and asked[1] == CHAT_STREAM and asked[0] == SSE
    plain = replay(entry, "chat", True, {})
    assert plain is not None
    assert sse_events(plain[1]) == [chunk({"role": "assistant", "content": "Hel"}), chunk({"content": "lo"}, "stop"),
                                    "[DONE]"]  # fmt: skip


def test_a_stream_without_usage_cannot_serve_a_client_that_asks_for_it() -> None:
    entry = stored_stream(frame(chunk({"content": "Hello"}, "stop")))
    assert replay(entry, "chat", True, {"stream_options": {"include_usage": True}}) is None
    assert replay(entry, "chat", True, {}) is not None


def test_a_chat_stream_from_a_chat_answer() -> None:
    answer = replay(stored_json(CHAT_ANSWER), "chat", True, {"stream_options": {"include_usage": True}})
    assert answer is not None
    headers, body = answer
    assert headers == [(b"x-compute-type", b"cpu"), *SSE]
    events = sse_events(body)
    assert events[-1] == "[DONE]"
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hello"}
    assert events[1]["choices"][0]["finish_reason"] == "stop"
    assert events[2] == {**HEAD, "object": "chat.completion.chunk", "choices": [], "usage": USAGE}
    assert all(e["id"] == HEAD["id"] and e["object"] == "chat.completion.chunk" for e in events[:-1])
    without = replay(stored_json(CHAT_ANSWER), "chat", True, {})
    assert without is not None and len(sse_events(without[1])) == 3  # content, finish, [DONE]


def test_a_chat_answer_from_a_chat_stream() -> None:
    answer = replay(stored_stream(CHAT_STREAM), "chat", False, {})
    assert answer is not None
    headers, body = answer
    assert json.loads(body) == CHAT_ANSWER
    assert (b"content-length", str(len(body)).encode()) in headers
    assert (b"content-type", b"application/json") in headers
    assert not any(name in (b"cache-control", b"x-accel-buffering") for name, _ in headers)


def test_tool_calls_reasoning_and_logprobs_round_trip_through_both_forms() -> None:
    calls = [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}]
    logprobs = {"content": [{"token": "Hi", "logprob": -0.1, "bytes": None, "top_logprobs": []}]}
    whole = {
        **HEAD,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "reasoning": "think",
                     "tool_calls": calls}, "logprobs": logprobs, "finish_reason": "tool_calls"}],
        "usage": USAGE,
    }  # fmt: skip
    streamed = replay(stored_json(whole), "chat", True, {"stream_options": {"include_usage": True}})
    assert streamed is not None
    back = replay(stored_stream(streamed[1]), "chat", False, {})
    assert back is not None
    assert json.loads(back[1]) == whole
    fragments = frame(
        chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
              "function": {"name": "weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}, "tool_calls"),
        USAGE_CHUNK,
    )  # fmt: skip
    merged = replay(stored_stream(fragments), "chat", False, {})
    assert merged is not None
    assert json.loads(merged[1])["choices"][0]["message"] == {"role": "assistant", "content": None, "tool_calls": calls}


def test_a_chat_answer_is_not_made_from_a_stream_without_usage_or_with_unknown_fields() -> None:
    assert replay(stored_stream(frame(chunk({"content": "x"}, "stop"))), "chat", False, {}) is None
    odd = frame(chunk({"content": "x", "audio": {"id": "a"}}, "stop"), USAGE_CHUNK)
    assert replay(stored_stream(odd), "chat", False, {}) is None


def test_completions_both_ways() -> None:
    head = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "org/m"}
    whole = {**head, "choices": [{"index": 0, "text": "Hello", "logprobs": None, "finish_reason": "length"}],
             "usage": USAGE}  # fmt: skip
    streamed = replay(stored_json(whole), "completions", True, {"stream_options": {"include_usage": True}})
    assert streamed is not None
    assert sse_events(streamed[1])[-2:] == [{**head, "choices": [], "usage": USAGE}, "[DONE]"]
    back = replay(stored_stream(streamed[1]), "completions", False, {})
    assert back is not None and json.loads(back[1]) == whole


TGI_EVENTS = [
    {"index": 1, "token": {"id": 5, "text": " fox", "logprob": -0.5, "special": False}, "generated_text": None,
     "details": None},
    {"index": 2, "token": {"id": 6, "text": " jumps", "logprob": -0.5, "special": False},
     "generated_text": " fox jumps", "details": None},
]  # fmt: skip


def test_tgi_both_ways() -> None:
    stream = stored_stream(frame(*TGI_EVENTS, done=False))
    generate = replay(stream, "generate", False, {"inputs": "The", "parameters": {}})
    assert generate is not None and json.loads(generate[1]) == {"generated_text": " fox jumps"}
    compat = replay(stream, "compat_generate", False, {"inputs": "The", "parameters": {}, "stream": False})
    assert compat is not None and json.loads(compat[1]) == [{"generated_text": " fox jumps"}]

    events = replay(
        stored_json({"generated_text": " fox jumps"}), "generate", True, {"inputs": "The", "parameters": {}}
    )
    assert events is not None
    (only,) = sse_events(events[1])  # one token event carrying the whole text, no [DONE] on TGI streams
    assert only["token"]["text"] == only["generated_text"] == " fox jumps"
    full = replay(stored_json([{"generated_text": "The fox"}]), "compat_generate", True,
                  {"inputs": "The", "parameters": {"return_full_text": True}, "stream": True})  # fmt: skip
    assert full is not None
    assert [(e["token"]["text"], e["generated_text"]) for e in sse_events(full[1])] == [(" fox", "The fox")]


def test_tgi_conversions_that_would_lose_something_are_misses() -> None:
    details = {"finish_reason": "length", "generated_tokens": 2, "seed": None}
    assert (
        replay(stored_json({"generated_text": "x", "details": details}), "generate", True, {"parameters": {}}) is None
    )
    last = {**TGI_EVENTS[1], "details": details}
    assert replay(stored_stream(frame(TGI_EVENTS[0], last, done=False)), "generate", False, {}) is None
    # ``/`` leaves return_full_text to the model's pipeline: the stored text may or may not hold the prompt
    assert replay(stored_json([{"generated_text": "x"}]), "compat_generate", True, {"parameters": {}}) is None
    # kinds with no other form
    assert replay(stored_json([[1.0, 2.0]]), "task:feature-extraction", True, {}) is None


@pytest.mark.parametrize(
    ("family", "events", "complete"),
    [
        ("chat", CHAT_STREAM, True),
        ("chat", frame(chunk({"content": "Hel"})), False),  # [DONE] but no finish reason: cut short upstream
        ("chat", frame(chunk({"content": "Hel"}, "stop"), done=False), False),  # no [DONE]
        ("chat", frame(chunk({"content": "Hel"}), {"error": "boom", "error_type": "generation"}, done=False), False),
        ("chat", frame(chunk({"content": "Hel"}, "stop"), {"error": "late"}), False),
        ("generate", frame(*TGI_EVENTS, done=False), True),
        ("generate", frame(TGI_EVENTS[0], done=False), False),  # no final event
        ("generate", frame(TGI_EVENTS[0], {"error": "x", "error_type": "generation"}, done=False), False),
        ("task:fill-mask", frame({"a": 1}, done=False), False),
        ("chat", CHAT_STREAM[:-1], False),  # an unterminated event
    ],
)
def test_only_complete_streams_are_stored(family: str, events: bytes, complete: bool) -> None:
    assert stream_complete(family, events) is complete


def test_the_usage_chunk_is_found_with_or_without_spaces() -> None:
    spaced = b'data: {"id": "x", "choices": [ ], "usage": {"total_tokens": 1}}\n\n'
    body = frame(chunk({"content": "a"}, "stop"), done=False) + spaced + b"data: [DONE]\n\n"
    start, end = usage_span(body)
    assert body[start:end] == spaced
    assert usage_span(frame(chunk({"content": "a"}, "stop"))) == (0, 0)
