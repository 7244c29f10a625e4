"""What both examples must do for real clients; each example's tests call these against its served app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from huggingface_hub import InferenceClient
from openai import AuthenticationError, OpenAI

from tests.servers import serve
from tests.upstream import FakeHF, expected_chat, expected_text_classification
from tests.upstream.fixtures import Upstream

SERVER_TOKEN = "hf_example_server_token"
"""The gateway's ``HF_TOKEN`` in the example tests: it reaches the upstream, never a client."""
CLIENT_KEY = "client-key-that-stays-here"
MESSAGES = [{"role": "user", "content": "What does the gateway do?"}]


def environment(upstream: Upstream) -> dict[str, str]:
    """The environment an operator would set to point the example at ``upstream`` (the router dialect)."""
    return {
        "HFASGI_UPSTREAM_URL": upstream.url,
        "HFASGI_UPSTREAM_KIND": "router",
        "HF_TOKEN": SERVER_TOKEN,
        "HFASGI_API_KEYS": f"notes-team={CLIENT_KEY}",
        "HFASGI_RATE_LIMIT": "1000/minute",
    }


def check_huggingface_hub(base: str, fake: FakeHF) -> None:
    """``InferenceClient(base_url=".../hf")``: chat, streamed chat, and the task API through the gateway."""
    with InferenceClient(base_url=f"{base}/hf", api_key=CLIENT_KEY) as client:
        out = client.chat_completion(MESSAGES, model="org/chat-model", max_tokens=4)
        streamed = list(client.chat_completion(MESSAGES, model="org/chat-model", max_tokens=3, stream=True))
    assert out.choices[0].message.content == expected_chat(MESSAGES, 4)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected_chat(MESSAGES, 3)
    sent = fake.last("/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {SERVER_TOKEN}"  # the client's key stayed at the gateway
    with InferenceClient(base_url=f"{base}/hf/models/fake/text-classification", api_key=CLIENT_KEY) as task:
        labels = task.text_classification("I love this")
    assert [(c.label, c.score) for c in labels] == [
        (e["label"], e["score"]) for e in expected_text_classification("I love this")
    ]
    assert fake.last().path == "/hf-inference/models/fake/text-classification"


def check_openai(base: str, fake: FakeHF) -> None:
    """``OpenAI(base_url=".../hf/v1")``: chat and streamed chat through the gateway."""
    with OpenAI(base_url=f"{base}/hf/v1", api_key=CLIENT_KEY, max_retries=0) as client:
        out = client.chat.completions.create(model="org/chat-model", messages=MESSAGES, max_tokens=2)
        stream = client.chat.completions.create(
            model="org/chat-model",
            messages=MESSAGES,
            max_tokens=5,
            stream=True,
        )
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert out.choices[0].message.content == expected_chat(MESSAGES, 2)
    assert text == expected_chat(MESSAGES, 5)
    assert fake.last("/v1/chat/completions").json["stream"] is True


def check_lifespan(create_app: Callable[..., Any], upstream: Upstream) -> None:
    """The app's own lifespan still runs, and the gateway's pool is open while it serves and closed after."""
    app = create_app(environment(upstream))
    with serve(app) as base:
        status = httpx.get(f"{base}/status").json()
    assert status == {"ready": True, "notes": 0, "gateway_open": True}
    assert app.state.events == ["startup", "shutdown"]
    assert not app.state.gateway.pool.is_open


def check_environment(create_app: Callable[..., Any], upstream: Upstream, fake: FakeHF, monkeypatch: Any) -> None:
    """Without arguments the app reads the process environment; a bad setting fails when the app is built."""
    for name, value in environment(upstream).items():
        monkeypatch.setenv(name, value)
    with serve(create_app()) as base:
        answer = httpx.post(
            f"{base}/hf/v1/chat/completions",
            json={"model": "org/chat-model", "messages": MESSAGES},
            headers={"x-api-key": CLIENT_KEY},
        )
    assert answer.status_code == 200
    assert fake.last("/v1/chat/completions").headers["authorization"] == f"Bearer {SERVER_TOKEN}"
    monkeypatch.setenv("HFASGI_UPSTREAM_KIND", "nonsense")
    with pytest.raises(ValueError, match="nonsense"):
        create_app()
    monkeypatch.setenv("HFASGI_UPSTREAM_KIND", "router")
    monkeypatch.delenv("HFASGI_API_KEYS")
    with pytest.raises(ValueError, match="no-auth"):
        create_app()  # no keys: the gateway would spend the token for anyone


def check_keys_and_limits(base: str, fake: FakeHF) -> None:
    """The gateway's routes need a key and count it; the app's own routes stay as they were."""
    before = len(fake.requests)
    with (
        OpenAI(base_url=f"{base}/hf/v1", api_key="not-a-key", max_retries=0) as client,
        pytest.raises(AuthenticationError),
    ):
        client.chat.completions.create(model="org/chat-model", messages=MESSAGES, max_tokens=2)
    assert len(fake.requests) == before  # refused at the door
    answer = httpx.post(
        f"{base}/hf/v1/chat/completions",
        json={"model": "org/chat-model", "messages": MESSAGES, "max_tokens": 2},
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
    )
    assert answer.status_code == 200 and answer.headers["x-ratelimit-limit"] == "1000"
    assert httpx.get(f"{base}/status").status_code == 200  # no key needed for the app's own routes
    assert "x-ratelimit-limit" not in httpx.get(f"{base}/status").headers
