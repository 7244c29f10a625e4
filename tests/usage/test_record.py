"""UsageRecord: one JSON line in the spool and back, the provider API's wire shape, and strict checks on read."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from hfasgi.usage import UsageRecord
from tests.usage.ledger_support import record


def test_a_record_survives_its_spool_line() -> None:
    original = dataclasses.replace(record(3), cache_hit=True, stream=True, key_id=None)
    line = original.to_line()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert UsageRecord.from_line(line) == original
    assert UsageRecord.from_line(line.rstrip(b"\n")) == original


def test_wire_shape_is_the_provider_api_record() -> None:
    wire = dataclasses.replace(record(0), timestamp=1768473000.987).to_wire()
    assert wire == {
        "request_id": "r-0",
        "timestamp": "2026-01-15T10:30:00Z",
        "task": "chat-completion",
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_nano_usd": 7,
        "key_id": "key-a",
        "status": 200,
        "cache_hit": False,
    }


def test_unknown_fields_are_ignored_and_defaults_apply() -> None:
    document = orjson.loads(record(1).to_line())
    for name in ("cache_hit", "stream", "upstream"):
        del document[name]
    document["from_a_newer_version"] = 1
    parsed = UsageRecord.from_line(orjson.dumps(document))
    assert parsed == dataclasses.replace(record(1), upstream=None)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"request_id": ""}, "request_id"),
        ({"request_id": 5}, "request_id"),
        ({"status": "200"}, "status"),
        ({"status": 2**31}, "status"),
        ({"input_tokens": True}, "input_tokens"),
        ({"cost_nano_usd": 2**63}, "cost_nano_usd"),
        ({"output_tokens": 1.5}, "output_tokens"),
        ({"model": 3}, "model"),
        ({"cache_hit": 1}, "cache_hit"),
        ({"timestamp": "now"}, "timestamp"),
    ],
)
def test_a_line_with_a_wrong_field_is_refused(change: dict[str, object], reason: str) -> None:
    document = {**orjson.loads(record(1).to_line()), **change}
    with pytest.raises(ValueError, match=reason):
        UsageRecord.from_line(orjson.dumps(document))


@pytest.mark.parametrize("line", [b"", b"{", b"[1, 2]", b'{"request_id": "x"}', b"\xff\xfe"])
def test_a_line_that_is_no_record_is_refused(line: bytes) -> None:
    with pytest.raises(ValueError):
        UsageRecord.from_line(line)


def test_a_lone_surrogate_in_a_client_string_does_not_lose_the_record() -> None:
    odd = dataclasses.replace(record(2), model="bad\ud800model")
    parsed = UsageRecord.from_line(odd.to_line())
    assert parsed.model == "bad\ufffdmodel"
    assert dataclasses.replace(parsed, model=odd.model) == odd
