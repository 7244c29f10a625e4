"""Upstream error bodies of every shape reach the client as the envelope, keeping the message."""

from __future__ import annotations

import json

import pytest

from hfasgi.forwarding.upstream_errors import normalize_error_body, parse_loading

JSON = "application/json"


@pytest.mark.parametrize(
    ("status", "body", "content_type", "expected"),
    [
        (422, b'{"detail":"Unexpected fields"}', JSON, {"error": "Unexpected fields", "error_type": "validation"}),
        (
            422,
            b'{"detail":[{"loc":["body","messages"],"msg":"Field required","type":"missing"}]}',
            JSON,
            {"error": "messages: Field required", "error_type": "validation"},
        ),
        (
            400,
            b'{"error":{"message":"bad model","type":"invalid_request_error","code":null}}',
            JSON,
            {"error": "bad model", "error_type": "invalid_request_error"},
        ),
        (
            400,
            b'{"error":["a: received `x` in `parameters`","b"]}',
            JSON,
            {"error": "a: received `x` in `parameters`; b", "error_type": "invalid_request"},
        ),
        (500, b'["oops",1]', JSON, {"error": "oops; 1", "error_type": "upstream_error"}),
        (
            500,
            b"Internal Server Error",
            "text/plain",
            {"error": "Internal Server Error", "error_type": "upstream_error"},
        ),
        (
            502,
            b"<html><body>Bad gateway</body></html>",
            "text/html",
            {"error": "Bad Gateway", "error_type": "upstream_unavailable"},
        ),
        (404, b"", "", {"error": "Not Found", "error_type": "not_found"}),
        (400, b'{"message":"plain message"}', JSON, {"error": "plain message", "error_type": "invalid_request"}),
        (424, b'{"error":{"nested":true}}', JSON, {"error": '{"nested": true}', "error_type": "generation"}),
    ],
)
def test_error_shapes_become_the_envelope(
    status: int, body: bytes, content_type: str, expected: dict[str, str]
) -> None:
    assert json.loads(normalize_error_body(status, body, content_type)) == expected


def test_a_proper_envelope_is_kept_byte_for_byte_with_its_extra_fields() -> None:
    body = b'{"error":"Model gpt2 is currently loading","estimated_time":20.0}'
    assert normalize_error_body(503, body, JSON) is body


def test_the_upstream_token_is_redacted() -> None:
    body = b'{"error":"invalid token hf_secret123"}'
    out = json.loads(normalize_error_body(401, body, JSON, secret="hf_secret123"))
    assert out == {"error": "invalid token [redacted]"}
    text = json.loads(normalize_error_body(401, b"token hf_secret123 refused", "text/plain", secret="hf_secret123"))
    assert "hf_secret123" not in text["error"]


def test_the_upstream_token_is_redacted_wherever_it_is_nested() -> None:
    body = b'{"error":"Unauthorized","request":{"headers":[{"authorization":"Bearer hf_secret123"}]}}'
    out = json.loads(normalize_error_body(401, body, JSON, secret="hf_secret123"))
    assert out == {"error": "Unauthorized", "request": {"headers": [{"authorization": "Bearer [redacted]"}]}}
    escaped = b'{"error":"bad \\u0068f_secret123"}'  # the token JSON-escaped: invisible to a byte search
    assert json.loads(normalize_error_body(401, escaped, JSON, secret="hf_secret123")) == {"error": "bad [redacted]"}


def test_long_messages_are_truncated() -> None:
    out = json.loads(normalize_error_body(500, b"x" * 10_000, "text/plain"))
    assert len(out["error"]) < 4100


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error":"Model x is currently loading","estimated_time":12.5}', 12.5),
        (b'{"error":"Model x is currently loading"}', 1.0),
        (b'{"error":"unhealthy","error_type":"healthcheck"}', None),
        (b"Service Unavailable", None),
        (b'{"estimated_time":true}', None),
        (b"[1]", None),
    ],
)
def test_parse_loading(body: bytes, expected: float | None) -> None:
    assert parse_loading(body) == expected
