"""Shared vocabulary of the client-compatibility suite (``test_client_*.py``).

Real clients (``huggingface_hub``, ``openai``) talk to the reference gateway, unchanged except for the base
URL; the expected answers come from ``tests.upstream.shapes``, the functions the fake upstream answers with.
"""

from __future__ import annotations

import json
from typing import Any

from tests.upstream import messages_text
from tests.upstream.shapes import count_tokens, usage

KINDS = ("router", "serverless", "tgi", "openai")
"""Every upstream kind the gateway forwards to."""
DEFAULT_MODEL = "fake/text-generation"
"""The gateway's ``default_model`` where a test needs one (the fake's TGI model)."""
CHAT_MODEL = "org/chat-model"
"""A model id for chat; the fake echoes whatever id it is given."""
MESSAGES: list[Any] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Tell me a story about a brave fox"},
]
PROMPT = "The quick brown fox jumps"
"""A text-generation prompt (five words, so the fake's tokenizer gives five prompt tokens)."""

MISSING = "<missing>"


def chat_path(kind: str, model: str) -> str:
    """Where the upstream of ``kind`` receives a chat request for ``model``."""
    return f"/models/{model}/v1/chat/completions" if kind == "serverless" else "/v1/chat/completions"


def chat_usage(n: int) -> dict[str, int]:
    """The usage the fake reports for :data:`MESSAGES` and ``n`` generated tokens."""
    return usage(count_tokens(messages_text(MESSAGES)), n)


def like(value: Any, expected: Any) -> Any:
    """``value`` (a client's parsed output) cut down to the shape of ``expected``, for an ``==`` comparison.

    Dicts in ``expected`` pick those keys from ``value`` (attributes of huggingface_hub dataclasses or
    pydantic models, or dict keys); lists are compared item by item when the lengths agree (otherwise
    ``value`` is returned whole, so the comparison fails visibly). A key the client did not parse becomes
    :data:`MISSING`.
    """
    if isinstance(expected, dict):
        return {key: like(_field(value, key), sub) for key, sub in expected.items()}
    if isinstance(expected, list) and isinstance(value, list | tuple) and len(value) == len(expected):
        return [like(v, e) for v, e in zip(value, expected, strict=True)]
    return value


def _field(value: Any, key: str) -> Any:
    if type(value) is dict:
        return value.get(key, MISSING)
    found = getattr(value, key, MISSING)
    if found is MISSING and isinstance(value, dict):
        return value.get(key, MISSING)
    return found


def usage_of(value: Any) -> dict[str, int] | None:
    """A parsed ``usage`` object as a plain dict (``None`` stays ``None``)."""
    if value is None:
        return None
    return {k: getattr(value, k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")}


def sse_payloads(body: bytes, *, compact: bool = False) -> list[str]:
    """The payload of every event in ``body``, after checking the framing HF clients parse (hf_api.md §8.1).

    Each event is exactly one line ``data: <payload>`` (one space, no other field, no multi-line data)
    followed by a blank line; every payload but ``[DONE]`` is one JSON object (``compact``: written with
    no spaces, as the gateway writes the events it translates).
    """
    text = body.decode()
    assert text.endswith("\n\n"), text[-80:]
    payloads = []
    for event in text[:-2].split("\n\n"):
        assert event.startswith("data: ") and "\n" not in event, event
        payload = event[len("data: ") :]
        assert payload == payload.strip(), event
        if payload != "[DONE]":
            assert isinstance(json.loads(payload), dict), payload
            if compact:
                assert payload == json.dumps(json.loads(payload), separators=(",", ":"), ensure_ascii=False)
        payloads.append(payload)
    return payloads


def objects(payloads: list[str]) -> list[dict[str, Any]]:
    """The JSON events (``[DONE]`` left out)."""
    return [json.loads(p) for p in payloads if p != "[DONE]"]
