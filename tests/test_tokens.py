"""Token planning (the worst case before a request runs) and the usage probe (what it really used)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hfasgi.limits import Limit
from hfasgi.operations import DEFAULT_ROUTES, Operation, Route
from hfasgi.tokens import TokenPlan, UsageProbe, estimate_text, plan

CHAT = Operation(Route.CHAT, "chat-completion")


@pytest.mark.parametrize(
    ("text", "window", "expected"),
    [
        ("60/minute", 60, 60),
        ("100000/hour", 3600, 100000),
        ("10/30s", 30, 10),
        ("5/2m", 120, 5),
        ("1/second", 1, 1),
        ("7/days", 86400, 7),
        ("60/min", 60, 60),
        (" 3 / 10 sec ", 10, 3),
    ],
)
def test_limits_parse(text: str, window: int, expected: int) -> None:
    limit = Limit.parse(text)
    assert (limit.count, limit.window) == (expected, window)
    assert Limit.parse(str(limit)) == limit


@pytest.mark.parametrize("text", ["", "60", "60/", "/minute", "0/minute", "5/fortnight", "-1/s", "1.5/minute"])
def test_bad_limits_are_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="limit"):
        Limit.parse(text)


def test_estimate_is_conservative_for_english_and_close_for_cjk() -> None:
    assert estimate_text("") == 0
    assert estimate_text("abc") == 1
    assert estimate_text("abcd") == 2
    assert estimate_text("日本語") == 3  # 9 bytes


def test_chat_with_max_tokens_reserves_prompt_plus_max_tokens_times_n() -> None:
    doc = {"model": "m", "messages": [{"role": "user", "content": "x" * 30}], "max_tokens": 50, "n": 2}
    result = plan(CHAT, doc, 4096)
    assert result == TokenPlan(4 + 10, 100, choices=2)


def test_chat_without_a_maximum_gets_the_default_and_names_the_field_to_inject() -> None:
    doc = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "image_url"}]}]}
    result = plan(CHAT, doc, 256)
    assert result.defaulted and result.inject == "max_tokens"
    assert result.output == 256
    assert result.prompt == 4 + 2 + 1024  # per message, the text part, one image


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    doc = {"messages": [], "max_completion_tokens": 7, "max_tokens": 99}
    assert plan(CHAT, doc, 4096).output == 7


def test_tools_count_towards_the_prompt() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    assert plan(CHAT, {"messages": [], "tools": tools, "max_tokens": 1}, 10).prompt == estimate_text(json.dumps(tools))


def test_tgi_generate_reads_parameters_max_new_tokens() -> None:
    op = DEFAULT_ROUTES.match("POST", "/generate")
    assert op is not None
    assert plan(op, {"inputs": "abcdef", "parameters": {"max_new_tokens": 20}}, 4096) == TokenPlan(2, 20)
    defaulted = plan(op, {"inputs": "abcdef"}, 64)
    assert defaulted.defaulted and defaulted.inject == "parameters.max_new_tokens" and defaulted.output == 64
    summarize = Operation(Route.TASK, "summarization", "m", task_forced=True)
    assert plan(summarize, {"inputs": "abc"}, 64) == TokenPlan(1, 64, defaulted=True)  # no known field to set


def test_non_generative_tasks_reserve_only_their_input() -> None:
    op = Operation(Route.TASK, "text-classification", "m", task_forced=True)
    assert plan(op, {"inputs": "a" * 9}, 4096) == TokenPlan(3, 0)
    embeddings = Operation(Route.EMBEDDINGS, "feature-extraction")
    assert plan(embeddings, {"input": ["abc", "def"]}, 4096) == TokenPlan(2, 0)


def test_raw_bodies_of_generative_tasks_reserve_the_default() -> None:
    op = Operation(Route.TASK, "image-to-text", "m", task_forced=True)
    assert plan(op, None, 100) == TokenPlan(0, 100, defaulted=True)
    assert plan(Operation(Route.TASK, "image-classification", "m", task_forced=True), None, 100).total == 0


def test_a_whole_float_maximum_is_the_clients_maximum() -> None:
    """``100.0`` is what the client asked for: it is reserved, and no default replaces it."""
    assert plan(CHAT, {"messages": [], "max_tokens": 100.0}, 4096) == TokenPlan(0, 100)
    assert plan(CHAT, {"messages": [], "max_completion_tokens": 1e1}, 4096) == TokenPlan(0, 10)


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True, None, float("inf"), float("nan")])
def test_malformed_maximums_fall_back_to_the_default(bad: Any) -> None:
    assert plan(CHAT, {"messages": [], "max_tokens": bad}, 33).output == 33


def _feed(probe: UsageProbe, status: int, content_type: bytes, *chunks: bytes) -> int:
    probe.observe({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
    for i, chunk in enumerate(chunks):
        probe.observe({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})
    return probe.used()


def test_probe_reads_the_usage_of_a_json_answer_across_chunks() -> None:
    body = json.dumps({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}})
    assert _feed(UsageProbe(999), 200, b"application/json", body[:10].encode(), body[10:].encode()) == 16


def test_probe_reads_tgi_details_and_falls_back_to_the_generated_text() -> None:
    details = json.dumps([{"generated_text": "x", "details": {"generated_tokens": 9}}]).encode()
    assert _feed(UsageProbe(4), 200, b"application/json", details) == 13
    plain = json.dumps({"generated_text": "abcdef"}).encode()
    assert _feed(UsageProbe(4), 200, b"application/json", plain) == 4 + 2


def test_probe_counts_nothing_for_an_error_answer() -> None:
    assert _feed(UsageProbe(50), 429, b"application/json", b'{"error":"x"}') == 0
    assert UsageProbe(50).used() == 0  # no response at all


def test_probe_takes_the_usage_chunk_of_a_stream_split_anywhere() -> None:
    events = [
        {"choices": [{"delta": {"content": "a"}}], "usage": None},
        {"choices": [{"delta": {"content": "b"}}], "usage": None},
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}},
    ]
    stream = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    for cut in range(1, len(stream), 7):
        assert _feed(UsageProbe(100), 200, b"text/event-stream", stream[:cut], stream[cut:]) == 5


def test_probe_counts_stream_events_when_no_usage_is_sent() -> None:
    stream = b"".join(b'data: {"token": {"text": "t"}}\n\n' for _ in range(6))
    assert _feed(UsageProbe(10), 200, b"text/event-stream; charset=utf-8", stream) == 16


def test_probe_uses_tgi_stream_details() -> None:
    stream = b'data: {"token": {"text": "a"}}\n\ndata: {"token": {"text": "b"}, "details": {"generated_tokens": 2}}\n\n'
    assert _feed(UsageProbe(10), 200, b"text/event-stream", stream) == 12


def test_probe_counts_a_stream_cut_short() -> None:
    probe = UsageProbe(10)
    probe.observe({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    probe.observe({"type": "http.response.body", "body": b'data: {"token": {}}\n\ndata: {"tok', "more_body": True})
    assert probe.used() == 11  # the partial event is not counted


def test_a_task_route_of_unknown_task_reserves_the_default_without_rewriting() -> None:
    unknown = Operation(Route.TASK, None, "some/model")
    assert plan(unknown, {"inputs": "abc"}, 64) == TokenPlan(1, 64, defaulted=True)
    assert plan(unknown, None, 64) == TokenPlan(0, 64, defaulted=True)


@given(
    st.lists(st.sampled_from(["token", "comment", "nospace"]), max_size=40),
    st.booleans(),
    st.lists(st.integers(1, 400), max_size=8),
)
def test_probe_counts_one_token_per_event_however_the_stream_is_cut(
    kinds: list[str], done: bool, cuts: list[int]
) -> None:
    """A stream with no usage: one token per ``data:`` event but the final ``[DONE]``, however it is cut."""
    kinds = [*kinds, "done"] if done else kinds
    events = {
        "token": b'data: {"token": {"id": 1, "text": "a [DONE] b"}}\n\n',
        "done": b"data: [DONE]\n\n",
        "comment": b": keep-alive\n\n",
        "nospace": b'data:{"choices": [{"delta": {"content": "x"}}]}\n\n',
    }
    stream = b"".join(events[kind] for kind in kinds)
    expected = sum(kind in ("token", "nospace") for kind in kinds)
    bounds = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *bounds], [*bounds, len(stream)], strict=True)]
    assert _feed(UsageProbe(7), 200, b"text/event-stream", *[c for c in chunks if c]) == 7 + expected
