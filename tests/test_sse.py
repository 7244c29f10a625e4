"""SSE framing for HF clients (docs/hf_api.md §8.1-8.2), checked on whole streams and on every split."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hfasgi.forwarding.sse import SSEFramer, normalize_stream_error

CHUNK = b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'


def run(stream: bytes, *, openai: bool, cuts: list[int] | None = None) -> bytes:
    """Feed ``stream`` split at ``cuts`` and return everything the framer emits."""
    framer = SSEFramer(openai=openai)
    points = sorted({c for c in (cuts or []) if 0 < c < len(stream)})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    return b"".join(framer.feed(p) for p in pieces) + framer.end()


def test_well_formed_chunks_pass_through_untouched() -> None:
    framer = SSEFramer(openai=True)
    assert framer.feed(CHUNK) is CHUNK
    assert framer.feed(b": keep-alive\n\n") == b": keep-alive\n\n"


def test_openai_streams_always_end_with_done_exactly_once() -> None:
    assert run(CHUNK, openai=True) == CHUNK + b"data: [DONE]\n\n"  # transformers serve sends none
    assert run(CHUNK + b"data: [DONE]\n\n", openai=True) == CHUNK + b"data: [DONE]\n\n"


def test_done_is_dropped_on_tgi_streams() -> None:
    assert run(CHUNK + b"data: [DONE]\n\n", openai=False) == CHUNK
    assert run(CHUNK, openai=False) == CHUNK


def test_missing_space_after_data_is_added() -> None:
    old_tgi = b'data:{"token":{"text":"a"}}\n\ndata:[DONE]\n\n'
    assert run(old_tgi, openai=True) == b'data: {"token":{"text":"a"}}\n\ndata: [DONE]\n\n'


def test_crlf_line_endings_are_normalised() -> None:
    assert run(b"data: {}\r\n\r\n", openai=False) == b"data: {}\n\n"


def test_comments_and_event_lines_pass() -> None:
    stream = b': ping\n\nevent: message\ndata: {"a":1}\n\n'
    assert run(stream, openai=False) == stream


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"error":"boom","error_type":"generation"}', {"error": "boom", "error_type": "generation"}),
        (
            b'{"error":{"message":"bad input","http_status_code":422}}',
            {"error": "bad input", "error_type": "validation"},
        ),
        (b'{"error":{"message":"x","type":"server_error"}}', {"error": "x", "error_type": "server_error"}),
        (b'{"error": "unescaped "quotes" here"}', {"error": 'unescaped "quotes" here', "error_type": "generation"}),
        (b'{"error": ["a", "b"]}', {"error": '["a", "b"]', "error_type": "generation"}),
    ],
)
def test_stream_errors_become_the_envelope(payload: bytes, expected: dict[str, str]) -> None:
    assert json.loads(normalize_stream_error(payload)) == expected


def test_an_error_event_ends_an_openai_stream_without_done() -> None:
    stream = CHUNK + b'data: {"error":{"message":"oops","http_status_code":422}}\n\n'
    out = run(stream, openai=True)
    assert out == CHUNK + b'data: {"error":"oops","error_type":"validation"}\n\n'
    assert b"[DONE]" not in out


def test_fail_drops_an_incomplete_line_and_sends_one_error_event() -> None:
    framer = SSEFramer(openai=True)
    assert framer.feed(CHUNK + b'data: {"partial') == CHUNK
    event = framer.fail("lost", "upstream_unavailable")
    assert event == b'data: {"error":"lost","error_type":"upstream_unavailable"}\n\n'
    assert framer.errored and not framer.done


@pytest.mark.parametrize("openai", [True, False])
def test_nothing_follows_an_error_event(openai: bool) -> None:
    error = b'data: {"error":"e","error_type":"generation"}\n\n'
    framer = SSEFramer(openai=openai)
    out = framer.feed(CHUNK + error + CHUNK) + framer.feed(CHUNK + b"data: [DONE]\n\n") + framer.end()
    assert out == CHUNK + error
    assert framer.fail("lost", "upstream_unavailable") == b""  # no second error event either


def test_an_echoed_secret_is_redacted_from_stream_errors() -> None:
    framer = SSEFramer(openai=False, secret="hf_secret")
    out = framer.feed(b'data: {"error":"bad token Bearer hf_secret","error_type":"validation"}\n\n')
    assert out == b'data: {"error":"bad token Bearer [redacted]","error_type":"validation"}\n\n'


def test_a_final_line_without_newline_is_completed() -> None:
    assert run(b'data: {"a":1}', openai=False) == b'data: {"a":1}\n\n'


STREAMS = [
    CHUNK * 3 + b"data: [DONE]\n\n",
    b'data:{"token":{"text":"x"}}\n\n' * 4,
    b": c\n\n" + CHUNK + b'data: {"error":"e","error_type":"overloaded"}\n\n',
    b"data: {}\r\n\r\n" * 3 + b"data:[DONE]\r\n\r\n",
    CHUNK + b'data: {"error":{"message":"m"}}\n\n' + CHUNK + b"data: [DONE]\n\n",
]


@pytest.mark.parametrize("openai", [True, False])
@pytest.mark.parametrize("stream", STREAMS)
@given(cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=12))
def test_output_does_not_depend_on_how_the_upstream_split_its_chunks(
    stream: bytes, openai: bool, cuts: list[int]
) -> None:
    assert run(stream, openai=openai, cuts=cuts) == run(stream, openai=openai)
