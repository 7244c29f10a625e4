"""Real clients against the cached stack on a real socket: ``openai``, ``InferenceClient``, ``AsyncInferenceClient``.

The stack (the reference layers with the cache, in front of the fake HF upstream) is served by uvicorn
in a thread, its resources opened by the lifespan. Each test asserts what the upstream saw (one request
for two identical deterministic calls), the ``X-Cache`` header where the client exposes headers
(``openai``'s raw responses), that the answers are identical, and that a streamed call answered from the
cache is a stream the client parses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import openai
import pytest
from huggingface_hub import AsyncInferenceClient, InferenceClient

from hfasgi.cache import MemoryCacheStore
from hfasgi.forwarding.forwarder import ForwarderConfig
from hfasgi.stack import Lifespan, layer_resources, stack
from tests.cache.support import CHAT_MODEL, catalog_for, gateway_layers, not_found
from tests.servers import serve
from tests.upstream import FakeHF, expected_chat, expected_features, expected_text_classification, token_texts
from tests.upstream.fixtures import Upstream

pytestmark = [pytest.mark.socket, pytest.mark.usefixtures("fake")]

MESSAGES: list[Any] = [{"role": "user", "content": "Tell me a story about a brave fox"}]


@pytest.fixture
def gateway(upstream: Upstream) -> Iterator[Callable[[str], str]]:
    """``gateway(kind)`` → the base URL of a fresh cached stack (its own memory cache) in front of the fake."""
    with contextlib.ExitStack() as exits:

        def make(kind: str = "router") -> str:
            default = CHAT_MODEL if kind != "tgi" else None  # huggingface_hub sends "model": "dummy"
            forwarder = ForwarderConfig(catalog=catalog_for(upstream.url, kind, default_model=default))
            found = gateway_layers(forwarder, MemoryCacheStore())
            app = Lifespan(stack(not_found, *found), resources=layer_resources(found))
            return exits.enter_context(serve(app))

        yield make


def upstream_count(fake: FakeHF, fragment: str) -> int:
    return sum(1 for r in fake.requests if fragment in r.path)


def test_openai_two_identical_calls_reach_the_upstream_once(gateway: Callable[[str], str], fake: FakeHF) -> None:
    with openai.OpenAI(base_url=gateway("router") + "/v1", api_key="k", max_retries=0) as client:
        raws = [
            client.chat.completions.with_raw_response.create(
                model=CHAT_MODEL, messages=MESSAGES, max_tokens=4, temperature=0
            )
            for _ in range(2)
        ]
        assert [raw.headers.get("x-cache") for raw in raws] == ["miss", "hit"]
        first, second = (raw.parse() for raw in raws)
        assert second.model_dump() == first.model_dump()  # same id and created: the stored answer
        assert second.choices[0].message.content == expected_chat(MESSAGES, 4)
        assert upstream_count(fake, "/chat/completions") == 1

        stream = client.chat.completions.with_raw_response.create(
            model=CHAT_MODEL,
            messages=MESSAGES,
            max_tokens=4,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        assert stream.headers.get("x-cache") == "hit" and stream.headers["content-type"] == "text/event-stream"
        chunks = list(stream.parse())
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected_chat(MESSAGES, 4)
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert chunks[-1].usage.total_tokens == first.usage.total_tokens  # type: ignore[union-attr]
        assert upstream_count(fake, "/chat/completions") == 1

        # not deterministic: no X-Cache, every call reaches the upstream
        sampled = client.chat.completions.with_raw_response.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=4)
        assert "x-cache" not in sampled.headers
        assert upstream_count(fake, "/chat/completions") == 2


def test_huggingface_hub_chat_stream_from_a_cached_stream(gateway: Callable[[str], str], fake: FakeHF) -> None:
    with InferenceClient(base_url=gateway("router")) as client:
        streamed = [
            [
                c.choices[0].delta.content
                for c in client.chat_completion(MESSAGES, max_tokens=5, temperature=0, stream=True)
            ]  # fmt: skip
            for _ in range(2)
        ]
        assert streamed[0] == streamed[1] == token_texts("Tell me a story about a brave fox", 5)
        assert upstream_count(fake, "/chat/completions") == 1
        # the other form, from the same entry: the stream had no usage chunk, so the whole answer is fetched
        whole = client.chat_completion(MESSAGES, max_tokens=5, temperature=0)
        assert whole.choices[0].message.content == "".join(streamed[0])
        assert upstream_count(fake, "/chat/completions") == 2
        again = client.chat_completion(MESSAGES, max_tokens=5, temperature=0)
        assert again == whole
        assert upstream_count(fake, "/chat/completions") == 2


def test_huggingface_hub_tasks_are_cached(gateway: Callable[[str], str], fake: FakeHF) -> None:
    base = gateway("router")
    text = "Alice met Bob in Paris yesterday"
    with InferenceClient(base_url=f"{base}/models/fake/text-classification") as client:
        answers = [client.text_classification(text) for _ in range(2)]
    assert answers[0] == answers[1]
    assert [(o.label, o.score) for o in answers[1]] == [
        (o["label"], o["score"]) for o in expected_text_classification(text)
    ]
    with InferenceClient(base_url=f"{base}/models/fake/feature-extraction") as client:
        vectors = [client.feature_extraction("some text") for _ in range(2)]
    assert np.array_equal(vectors[0], vectors[1])
    assert np.allclose(vectors[1], np.array(expected_features("some text"), dtype="float32"))
    assert upstream_count(fake, "fake/text-classification") == 1
    assert upstream_count(fake, "fake/feature-extraction") == 1
    # the client's own opt-out: HF's x-use-cache header
    with InferenceClient(base_url=f"{base}/models/fake/text-classification", headers={"x-use-cache": "false"}) as c:
        assert c.text_classification(text) == answers[0]
    assert upstream_count(fake, "fake/text-classification") == 2


def test_huggingface_hub_text_generation_from_cache_as_json_and_as_a_stream(
    gateway: Callable[[str], str], fake: FakeHF
) -> None:
    prompt = "The quick brown fox jumps"
    with InferenceClient(base_url=gateway("tgi")) as client:  # posts to ``/`` (TGI's compat route)
        first = client.text_generation(prompt, max_new_tokens=3, return_full_text=False)
        assert client.text_generation(prompt, max_new_tokens=3, return_full_text=False) == first
        tokens = list(client.text_generation(prompt, max_new_tokens=3, return_full_text=False, stream=True))
        assert "".join(tokens) == first  # a stream the client parses, made from the stored answer
        assert len(fake.requests) == 1
        # without return_full_text, ``/`` leaves the prompt's echo to the model: the stream is fetched, then cached
        plain = [list(client.text_generation(prompt, max_new_tokens=2, stream=True)) for _ in range(2)]
        assert plain[0] == plain[1]
        assert len(fake.requests) == 2
        sampled = [client.text_generation(prompt, max_new_tokens=3, do_sample=True) for _ in range(2)]
        assert len(sampled) == 2
        assert len(fake.requests) == 4


@pytest.mark.anyio
async def test_async_inference_client(gateway: Callable[[str], str], fake: FakeHF) -> None:
    base = gateway("router")
    async with AsyncInferenceClient(base_url=base) as client:
        first = await client.chat_completion(MESSAGES, max_tokens=3, temperature=0)
        second = await client.chat_completion(MESSAGES, max_tokens=3, temperature=0)
        assert second == first
        chunks = [c async for c in await client.chat_completion(MESSAGES, max_tokens=3, temperature=0, stream=True)]
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == first.choices[0].message.content
    assert upstream_count(fake, "/chat/completions") == 1
