"""Real clients (huggingface_hub, openai, raw httpx) through the gateway to a real ``transformers serve``.

Generations are greedy (``temperature=0``) and short (``max_tokens`` <= 8): the tiny random model writes junk,
but the same request always writes the same junk, which is what these tests compare.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest
from huggingface_hub import (
    AsyncInferenceClient,
    ChatCompletionOutput,
    ChatCompletionStreamOutput,
    InferenceClient,
)
from huggingface_hub.errors import HfHubHTTPError
from openai.types.chat import ChatCompletionMessageParam

from tests.servers import serve

if TYPE_CHECKING:
    from tests.integration.conftest import TransformersServer

MAX_TOKENS = 8
MESSAGES = [{"role": "user", "content": "Say hello."}]
OPENAI_MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]
GREEDY: dict[str, Any] = {"max_tokens": MAX_TOKENS, "temperature": 0}


@pytest.fixture(scope="module")
def server(transformers_server: TransformersServer) -> TransformersServer:
    """Shorter name for the session's ``transformers serve``."""
    return transformers_server


def _check_output(output: ChatCompletionOutput) -> str:
    """Assert the shape of a non-streamed HF chat completion; return its content."""
    assert isinstance(output, ChatCompletionOutput)
    choice = output.choices[0]
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert output.usage is not None
    assert 1 <= output.usage.completion_tokens <= MAX_TOKENS
    return choice.message.content


def _join_stream(chunks: list[ChatCompletionStreamOutput]) -> str:
    """Assert a streamed HF chat completion ended properly; return its concatenated content."""
    assert chunks, "no chunks arrived"
    assert all(isinstance(chunk, ChatCompletionStreamOutput) for chunk in chunks)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _direct_content(server: TransformersServer) -> str:
    """The greedy answer to ``MESSAGES`` straight from the server (no gateway)."""
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        completion = client.chat.completions.create(
            model=server.model, messages=OPENAI_MESSAGES, max_tokens=MAX_TOKENS, temperature=0
        )
    content = completion.choices[0].message.content
    assert isinstance(content, str)
    return content


@pytest.fixture(scope="module")
def direct_answer(server: TransformersServer) -> str:
    """The reference greedy answer, asked directly of the server."""
    return _direct_content(server)


def test_server_fixture_is_healthy_and_pinned(server: TransformersServer) -> None:
    """The fixture's server answers /health, and takes exactly ``server.model``."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/health").json() == {"status": "ok"}
        body = {"messages": MESSAGES, **GREEDY}
        assert client.post("/v1/chat/completions", json={**body, "model": server.model}).status_code == 200
        refused = client.post("/v1/chat/completions", json={**body, "model": "something-else"})
        assert refused.status_code == 400
        assert "pinned" in refused.text


def test_direct_answer_is_nonempty_and_repeatable(server: TransformersServer, direct_answer: str) -> None:
    """Greedy decoding of the tiny model is repeatable (and, by construction, printable)."""
    assert direct_answer
    assert all(c == "\n" or " " <= c <= "~" for c in direct_answer), direct_answer
    assert _direct_content(server) == direct_answer


def test_inference_client_chat(gateway: str, server: TransformersServer, direct_answer: str) -> None:
    """``InferenceClient(base_url=gateway)``: non-stream and stream agree with each other and with the server."""
    with InferenceClient(base_url=gateway) as client:
        output = client.chat_completion(MESSAGES, model=server.model, **GREEDY)
        content = _check_output(output)
        chunks = list(client.chat_completion(MESSAGES, model=server.model, stream=True, **GREEDY))
    assert _join_stream(chunks) == content == direct_answer


@pytest.mark.anyio
async def test_async_inference_client_chat(gateway: str, server: TransformersServer, direct_answer: str) -> None:
    """``AsyncInferenceClient(base_url=gateway)``: the same, asynchronously."""
    async with AsyncInferenceClient(base_url=gateway) as client:
        output = await client.chat_completion(MESSAGES, model=server.model, **GREEDY)
        content = _check_output(output)
        stream = await client.chat_completion(MESSAGES, model=server.model, stream=True, **GREEDY)
        chunks = [chunk async for chunk in stream]
    assert _join_stream(chunks) == content == direct_answer


def test_inference_client_without_model_uses_default_model(
    gateway: str, server: TransformersServer, direct_answer: str
) -> None:
    """With no ``model=`` the client sends ``"dummy"``: the pinned server refuses it, the gateway maps it."""
    with InferenceClient(base_url=server.url) as direct, pytest.raises(HfHubHTTPError) as refused:
        direct.chat_completion(MESSAGES, **GREEDY)
    assert refused.value.response is not None
    assert refused.value.response.status_code == 400

    with InferenceClient(base_url=gateway) as client:
        assert _check_output(client.chat_completion(MESSAGES, **GREEDY)) == direct_answer
        chunks = list(client.chat_completion(MESSAGES, stream=True, **GREEDY))
    assert _join_stream(chunks) == direct_answer


def test_openai_chat(gateway: str, server: TransformersServer, direct_answer: str) -> None:
    """``openai.OpenAI(base_url=gateway/v1)``: chat, non-stream and stream."""
    with openai.OpenAI(base_url=f"{gateway}/v1", api_key="client-key", max_retries=0) as client:
        completion = client.chat.completions.create(
            model=server.model, messages=OPENAI_MESSAGES, max_tokens=MAX_TOKENS, temperature=0
        )
        assert completion.choices[0].message.content == direct_answer
        assert completion.choices[0].finish_reason in ("stop", "length")
        assert completion.usage is not None
        assert 1 <= completion.usage.completion_tokens <= MAX_TOKENS
        with client.chat.completions.create(
            model=server.model, messages=OPENAI_MESSAGES, max_tokens=MAX_TOKENS, temperature=0, stream=True
        ) as stream:
            chunks = list(stream)
    assert chunks
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == direct_answer
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_openai_legacy_completions(gateway: str, server: TransformersServer) -> None:
    """``completions.create`` with a prompt string, through the gateway and directly, gives the same text."""
    prompt = "The capital of France is"
    with openai.OpenAI(base_url=f"{gateway}/v1", api_key="client-key", max_retries=0) as client:
        through = client.completions.create(model=server.model, prompt=prompt, max_tokens=MAX_TOKENS, temperature=0)
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        direct = client.completions.create(model=server.model, prompt=prompt, max_tokens=MAX_TOKENS, temperature=0)
    assert isinstance(through.choices[0].text, str)
    assert through.choices[0].text == direct.choices[0].text
    assert through.usage is not None
    assert 1 <= through.usage.completion_tokens <= MAX_TOKENS


def _raw_stream(url: str, model: str, headers: dict[str, str] | None = None) -> tuple[httpx.Response, bytes]:
    """POST a streamed chat to ``url`` and read the raw SSE bytes off the socket."""
    body = {"model": model, "messages": MESSAGES, "stream": True, **GREEDY}
    with httpx.Client(timeout=30) as client, client.stream("POST", url, json=body, headers=headers) as response:
        raw = b"".join(response.iter_raw())
    return response, raw


def test_raw_sse_through_gateway_ends_with_done(gateway: str, server: TransformersServer, direct_answer: str) -> None:
    """The gateway's SSE: only ``data:`` lines, and ``data: [DONE]`` last, though the server sends none."""
    _, upstream_raw = _raw_stream(f"{server.url}/v1/chat/completions", server.model)
    assert b"[DONE]" not in upstream_raw

    response, raw = _raw_stream(f"{gateway}/v1/chat/completions", server.model, {"x-request-id": "itest-raw-1"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-request-id"] == "itest-raw-1"
    assert raw.endswith(b"data: [DONE]\n\n")
    events = raw.decode().split("\n\n")
    assert events[-1] == ""
    lines = [line for event in events[:-1] for line in event.split("\n")]
    assert lines
    assert all(line.startswith("data: ") for line in lines)
    payloads = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    content = "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads if p.get("choices"))
    assert content == direct_answer


def test_gateway_generates_request_id(gateway: str, server: TransformersServer) -> None:
    """Without a client ``x-request-id`` the gateway still returns one."""
    with httpx.Client(timeout=30) as client:
        response = client.post(
            f"{gateway}/v1/chat/completions", json={"model": server.model, "messages": MESSAGES, **GREEDY}
        )
    assert response.status_code == 200
    assert response.headers.get("x-request-id")


def test_model_scoped_route_with_catalog(server: TransformersServer, direct_answer: str, tmp_path: Path) -> None:
    """``POST /models/{id}/v1/chat/completions``: a catalog maps a Hub-style id to the server's directory path."""
    from hfasgi.app import create_app
    from hfasgi.settings import Settings

    catalog = tmp_path / "models.toml"
    catalog.write_text(
        f'[[models]]\nid = "local/tiny-llama"\nupstream = "default"\nupstream_model = {json.dumps(server.model)}\n'
        'task = "chat-completion"\n'
    )
    settings = Settings(upstream_url=server.url, upstream_kind="openai", models_file=str(catalog), no_auth=True)
    with serve(create_app(settings)) as gateway:
        with InferenceClient(base_url=f"{gateway}/models/local/tiny-llama") as client:
            assert _check_output(client.chat_completion(MESSAGES, **GREEDY)) == direct_answer
        with httpx.Client(timeout=30) as http:
            listed = http.get(f"{gateway}/v1/models").json()
    assert [m["id"] for m in listed["data"]] == ["local/tiny-llama"]


def test_same_answer_direct_and_through_gateway(gateway: str, server: TransformersServer) -> None:
    """One greedy request, asked directly and through the gateway, gives the same content."""
    body = {"model": server.model, "messages": MESSAGES, **GREEDY}
    with httpx.Client(timeout=30) as client:
        direct = client.post(f"{server.url}/v1/chat/completions", json=body)
        through = client.post(f"{gateway}/v1/chat/completions", json=body)
    assert direct.status_code == through.status_code == 200
    answer = direct.json()["choices"][0]["message"]["content"]
    assert through.json()["choices"][0]["message"]["content"] == answer


def _direct_completion(server: TransformersServer, prompt: str) -> str:
    """The greedy completion of ``prompt`` straight from the server's ``/v1/completions``."""
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        direct = client.completions.create(model=server.model, prompt=prompt, max_tokens=MAX_TOKENS, temperature=0)
    return direct.choices[0].text


def test_text_generation_stream_without_a_tgi_route(gateway: str, server: TransformersServer) -> None:
    """``text_generation`` (TGI dialect) works though the server has no TGI route: the gateway asks its
    ``/v1/completions``. The streamed tokens join into the non-streamed text, and both are the server's own
    greedy completion (``do_sample=False`` is TGI's greedy decoding).
    """
    prompt = "The capital of France is"
    greedy: dict[str, Any] = {"max_new_tokens": MAX_TOKENS, "do_sample": False}
    with InferenceClient(base_url=gateway) as client:
        whole = client.text_generation(prompt, **greedy)
        tokens = list(client.text_generation(prompt, stream=True, **greedy))
        events = list(client.text_generation(prompt, stream=True, details=True, **greedy))
    assert tokens, "no tokens were streamed"
    assert "".join(tokens) == whole == _direct_completion(server, prompt)
    last = events[-1]
    assert last.generated_text == whole and last.details is not None
    assert last.details.finish_reason in ("length", "eos_token") and 1 <= last.details.generated_tokens <= MAX_TOKENS
    assert [e.token.text for e in events] == tokens
