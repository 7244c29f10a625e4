"""Rate and token limits seen through real clients (``huggingface_hub``, ``openai``) and raw ``httpx``.

Counters persist for the session in each served gateway (one per distinct settings), so every test uses a
key of its own: limits count per key (the principal's id), never per connection.

Token budgets are reserved before a request goes on (the gateway's prompt estimate plus the output budget)
and settled on the real usage when the response ends; :func:`free_tokens` reads what is left without
spending anything: it asks for exactly the whole budget, which a window that has been used refuses, and
the 429 carries ``X-RateLimit-Remaining-Tokens``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError, TextGenerationError

from hfasgi.tokens import estimate_text
from tests.e2e.clients import CHAT_MODEL, MESSAGES, PROMPT, chat_usage
from tests.upstream import FakeHF, expected_chat
from tests.upstream.fake_hf import STREAM_ERROR

pytestmark = pytest.mark.socket

WINDOW = 60


def keys(*names: str) -> str:
    """``HFASGI_API_KEYS`` for one key per name (the key is derived from the name)."""
    return ",".join(f"{name}={key_of(name)}" for name in names)


def key_of(name: str) -> str:
    return f"hfasgi_test_limits_{name}_key"


RATE_KEYS = ("rate-hub", "rate-tg", "rate-openai", "rate-raw", "rate-other")
RATE: dict[str, Any] = {"no_auth": False, "api_keys": keys(*RATE_KEYS), "rate_limit": "3/minute"}
"""Three requests per key and minute."""

BUDGET = 2000
DEFAULT_MAX_TOKENS = 64
TOKEN_KEYS = (
    "tok-concurrent",
    "tok-close-openai",
    "tok-disconnect",
    "tok-error-status",
    "tok-error-stream",
    "tok-too-big",
    "tok-default",
    "tok-settle",
    "tok-settle-stream",
    "tok-hub",
)
TOKENS: dict[str, Any] = {
    "no_auth": False,
    "api_keys": keys(*TOKEN_KEYS),
    "rate_limit": "1000/minute",
    "token_limit": f"{BUDGET}/minute",
    "default_max_tokens": DEFAULT_MAX_TOKENS,
}
"""A budget of 2000 tokens per key and minute (and a request limit that is never reached); 64 output tokens
when a request names no maximum."""
TOKENS_ONLY: dict[str, Any] = {"no_auth": False, "api_keys": keys("tok-only"), "token_limit": f"{BUDGET}/minute"}
"""A token limit and no request limit."""
NO_TOKEN_LIMIT: dict[str, Any] = {"no_auth": False, "api_keys": keys("plain"), "rate_limit": "1000/minute"}
"""Keys and a request limit, but no token limit."""


def prompt_estimate(messages: list[dict[str, str]]) -> int:
    """The gateway's prompt estimate for chat ``messages`` (4 per message + UTF-8 bytes / 3, rounded up)."""
    return sum(4 + estimate_text(m["content"]) for m in messages)


PROMPT_TOKENS = prompt_estimate(MESSAGES)


def reservation(max_tokens: int) -> int:
    """What a chat of :data:`MESSAGES` with ``max_tokens`` reserves."""
    return PROMPT_TOKENS + max_tokens


def chat_body(max_tokens: int | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": CHAT_MODEL, "messages": MESSAGES, **extra}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def bearer(name: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key_of(name)}"}


def header_ints(headers: Any, suffix: str = "") -> tuple[int, int, int]:
    """``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (``suffix="-tokens"`` for the token counter)."""
    limit, remaining, reset = (int(headers[f"x-ratelimit-{part}{suffix}"]) for part in ("limit", "remaining", "reset"))
    return limit, remaining, reset


# --- requests per window --------------------------------------------------------------------------


def hub_rate_message(limit: int) -> list[str]:
    """What ``huggingface_hub`` makes of our 429 (hf_api.md §1.5)."""
    return [
        "429 Too Many Requests: you have reached your 'api' rate limit.",
        "Retry after ",
        f" seconds (0/{limit} requests remaining in current {WINDOW}s window).",
    ]


def test_inference_client_sees_the_rate_limit(gateway: Callable[..., str], fake: FakeHF) -> None:
    """Three chats pass; the fourth raises ``HfHubHTTPError`` with HFH's rate-limit sentence and our message."""
    with InferenceClient(base_url=gateway(**RATE), api_key=key_of("rate-hub")) as client:
        outs = [client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=2) for _ in range(3)]
        with pytest.raises(HfHubHTTPError) as info:
            client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=2)
    assert [o.choices[0].message.content for o in outs] == [expected_chat(MESSAGES, 2)] * 3
    response = info.value.response
    assert response is not None and response.status_code == 429
    retry = int(response.headers["retry-after"])
    shown = str(info.value)
    assert all(part in shown for part in hub_rate_message(3)) and f"Retry after {retry} seconds (" in shown, shown
    assert shown.endswith(f"\nRate limit exceeded: 3 requests per 60 s for 'rate-hub'; retry in {retry} s"), shown
    assert len(fake.requests) == 3  # the refused request never reached the upstream


def test_text_generation_rate_limit_is_a_text_generation_error(gateway: Callable[..., str], fake: FakeHF) -> None:
    """``text_generation`` maps ``{"error", "error_type"}`` to ``TextGenerationError``: it shows our message alone.

    HFH's rate-limit sentence is on the chained ``HfHubHTTPError`` (``exc.__cause__``).
    """
    url = gateway(**RATE) + "/models/fake/text-generation"
    with InferenceClient(model=url, api_key=key_of("rate-tg")) as client:
        for _ in range(3):
            client.text_generation(PROMPT, max_new_tokens=1)
        with pytest.raises(TextGenerationError) as info:
            client.text_generation(PROMPT, max_new_tokens=1)
    assert str(info.value).startswith("Rate limit exceeded: 3 requests per 60 s for 'rate-tg'; retry in ")
    cause = info.value.__cause__
    assert isinstance(cause, HfHubHTTPError) and all(part in str(cause) for part in hub_rate_message(3))


def test_openai_sees_the_rate_limit(gateway: Callable[..., str], fake: FakeHF) -> None:
    """The headers count down 2, 1, 0; the fourth call raises ``openai.RateLimitError`` (no retries)."""
    with openai.OpenAI(base_url=gateway(**RATE) + "/v1", api_key=key_of("rate-openai"), max_retries=0) as client:
        raws = [
            client.chat.completions.with_raw_response.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=1)
            for _ in range(3)
        ]
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=1)
    counted = [header_ints(r.headers) for r in raws]
    assert [(limit, remaining) for limit, remaining, _ in counted] == [(3, 2), (3, 1), (3, 0)]
    assert all(0 < reset <= WINDOW for _, _, reset in counted), counted
    assert all(r.parse().choices[0].message.content == expected_chat(MESSAGES, 1) for r in raws)
    exc = info.value
    assert exc.status_code == 429 and str(exc) == "Error code: 429"
    assert isinstance(exc.body, str) and exc.body.startswith("Rate limit exceeded: 3 requests per 60 s")
    assert len(fake.requests) == 3


def test_raw_429_headers_and_envelope(gateway: Callable[..., str], fake: FakeHF) -> None:
    """The 429 itself: ``Retry-After``, IETF ``RateLimit``/``RateLimit-Policy``, ``X-RateLimit-*``, the envelope."""
    with httpx.Client(base_url=gateway(**RATE), headers=bearer("rate-raw")) as client:
        passed = [client.post("/v1/chat/completions", json=chat_body(1)) for _ in range(3)]
        refused = client.post("/v1/chat/completions", json=chat_body(1))
        other = client.post("/v1/chat/completions", json=chat_body(1), headers=bearer("rate-other"))
    assert [r.status_code for r in passed] == [200, 200, 200]
    assert [header_ints(r.headers)[1] for r in passed] == [2, 1, 0]
    assert refused.status_code == 429
    limit, remaining, reset = header_ints(refused.headers)
    retry = int(refused.headers["retry-after"])
    assert (limit, remaining) == (3, 0) and 0 < retry <= WINDOW and reset == retry
    assert refused.headers["ratelimit"] == f'"api";r=0;t={retry}'
    assert refused.headers["ratelimit-policy"] == f'"fixed window";"api";q=3;w={WINDOW}'
    assert refused.json() == {
        "error": f"Rate limit exceeded: 3 requests per 60 s for 'rate-raw'; retry in {retry} s",
        "error_type": "rate_limit",
    }
    assert other.status_code == 200 and header_ints(other.headers)[:2] == (3, 2)  # another key, its own window


# --- tokens: helpers ------------------------------------------------------------------------------


async def free_tokens(client: httpx.AsyncClient, name: str) -> int:
    """The tokens left in ``name``'s window, read without spending any (see the module docstring)."""
    response = await client.post("/v1/chat/completions", json=chat_body(BUDGET - PROMPT_TOKENS), headers=bearer(name))
    assert response.status_code == 429, "the window was unused: the probe spent the whole budget"
    return int(response.headers["x-ratelimit-remaining-tokens"])


async def until_admitted(client: httpx.AsyncClient, name: str, max_tokens: int, timeout: float = 5.0) -> httpx.Response:  # noqa: ASYNC109
    """Send a chat with ``max_tokens`` until it is admitted (refusals cost nothing); fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        response = await client.post("/v1/chat/completions", json=chat_body(max_tokens), headers=bearer(name))
        if response.status_code != 429:
            assert response.status_code == 200, response.text
            return response
        if time.monotonic() > deadline:
            raise TimeoutError(f"still refused after {timeout}s: {response.text}")
        await asyncio.sleep(0.02)


async def until_changed(read: Callable[[], Any], old: int, timeout: float = 5.0) -> int:  # noqa: ASYNC109
    """Await ``read()`` until it differs from ``old``; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while (value := await read()) == old:
        if time.monotonic() > deadline:
            raise TimeoutError(f"still {old} after {timeout}s")
        await asyncio.sleep(0.02)
    return int(value)


def gated(key: str, *scenario: str) -> dict[str, str]:
    """Headers for a fake stream that holds after its first event until ``fake.release(key)``."""
    return {"x-fake-key": key, "x-fake-scenario": ",".join(("gate", *scenario))}


def test_inference_client_sees_the_token_limit(gateway: Callable[..., str], fake: FakeHF) -> None:
    """A chat that does not fit next to an open stream: HFH reads the ``"tokens"`` policy of the 429.

    HFH words every limit in requests ("0/2000 requests remaining"); our message says what did not fit.
    """
    url, name, fake_key = gateway(**TOKENS), "tok-hub", "hub-holder"
    with httpx.Client(base_url=url) as raw:
        body = chat_body(1200, stream=True)
        with raw.stream("POST", "/v1/chat/completions", json=body, headers={**bearer(name), **gated(fake_key)}) as held:
            assert held.status_code == 200
            fake.wait_for(lambda: fake.gated(fake_key))
            with InferenceClient(base_url=url, api_key=key_of(name)) as client, pytest.raises(HfHubHTTPError) as info:
                client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=1000)
            fake.release(fake_key)
            held.read()
    response = info.value.response
    assert response is not None and response.status_code == 429
    retry = int(response.headers["retry-after"])
    free = BUDGET - reservation(1200)
    assert response.headers["ratelimit-policy"] == f'"fixed window";"tokens";q={BUDGET};w={WINDOW}'
    assert int(response.headers["x-ratelimit-remaining-tokens"]) == free
    shown = str(info.value)
    assert "429 Too Many Requests: you have reached your 'tokens' rate limit." in shown, shown
    assert f"Retry after {retry} seconds (0/{BUDGET} requests remaining in current {WINDOW}s window)." in shown
    assert shown.endswith(
        f"\nToken limit exceeded: this request may use up to {reservation(1000)} tokens and {free} of {BUDGET} "
        f"per {WINDOW} s remain for {name!r}; retry in {retry} s"
    ), shown


# --- tokens: concurrency and release --------------------------------------------------------------


@pytest.mark.anyio
async def test_concurrent_streams_never_spend_more_than_the_budget(gateway: Callable[..., str], fake: FakeHF) -> None:
    """Five streams of 600 output tokens at once: only what fits the 2000-token budget is admitted.

    Held open by the fake, the admitted ones keep their reservations; once they end, the window holds
    what they really used (the usage they reported), and a large request is admitted again.
    """
    url, name, max_tokens, n = gateway(**TOKENS), "tok-concurrent", 600, 5
    each = reservation(max_tokens)
    fits = BUDGET // each
    assert 0 < fits < n
    stream_keys = [f"concurrent-{i}" for i in range(n)]
    async with (
        openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key_of(name), max_retries=0) as oai,
        httpx.AsyncClient(base_url=url) as raw,
    ):

        async def start(fake_key: str) -> Any:
            return await oai.chat.completions.with_raw_response.create(
                model=CHAT_MODEL,
                messages=MESSAGES,
                max_tokens=max_tokens,
                stream=True,
                stream_options={"include_usage": True},
                extra_headers=gated(fake_key, "chunks:3"),
            )

        outcomes = await asyncio.gather(*(start(k) for k in stream_keys), return_exceptions=True)
        admitted = [(k, o) for k, o in zip(stream_keys, outcomes, strict=True) if not isinstance(o, BaseException)]
        refused = [o for o in outcomes if isinstance(o, BaseException)]
        assert all(isinstance(o, openai.RateLimitError) for o in refused), refused
        assert len(admitted) == fits and len(refused) == n - fits
        assert len(admitted) * each <= BUDGET < (len(admitted) + 1) * each
        remaining = sorted(int(o.headers["x-ratelimit-remaining-tokens"]) for _, o in admitted)
        assert remaining == sorted(BUDGET - i * each for i in range(1, fits + 1))
        for exc in refused:
            assert isinstance(exc, openai.RateLimitError)
            assert exc.response.headers["ratelimit-policy"] == f'"fixed window";"tokens";q={BUDGET};w={WINDOW}'
            assert exc.response.headers["ratelimit"].startswith('"tokens";r=0;t=')
            assert exc.response.json()["error_type"] == "rate_limit"
            assert exc.response.headers["x-ratelimit-remaining-tokens"] == str(BUDGET - fits * each)
        assert set(fake.streams) == {k for k, _ in admitted}  # the refused ones never reached the upstream
        held = await free_tokens(raw, name)
        assert held == BUDGET - fits * each  # nothing settled while the streams are open
        big = await raw.post("/v1/chat/completions", json=chat_body(1000), headers=bearer(name))
        assert big.status_code == 429  # needs more than what is free while they are open

        used = 0
        for fake_key, response in admitted:
            await fake.await_for(functools.partial(fake.gated, fake_key))
            fake.release(fake_key)
            chunks = [chunk async for chunk in response.parse()]
            assert chunks[-1].usage is not None and chunks[-1].choices == []
            used += chunks[-1].usage.total_tokens
        assert used == len(admitted) * chat_usage(3)["total_tokens"]
        settled = await until_changed(lambda: free_tokens(raw, name), held)
        assert settled == BUDGET - used  # the window holds the real usage, not the reservations
        after = await until_admitted(raw, name, 1000)
        assert int(after.headers["x-ratelimit-remaining-tokens"]) == BUDGET - used - reservation(1000)


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["openai-close", "httpx-disconnect"])
async def test_budget_released_when_the_client_leaves_a_stream(
    gateway: Callable[..., str], fake: FakeHF, how: str
) -> None:
    """A stream the client abandons mid-way gives back its reservation (charged only what it sent)."""
    url = gateway(**TOKENS)
    name = "tok-close-openai" if how == "openai-close" else "tok-disconnect"
    fake_key = f"leave-{how}"
    async with httpx.AsyncClient(base_url=url) as raw:
        if how == "openai-close":
            async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key_of(name), max_retries=0) as oai:
                stream = await oai.chat.completions.create(
                    model=CHAT_MODEL, messages=MESSAGES, max_tokens=1200, stream=True, extra_headers=gated(fake_key)
                )
                first = await stream.__anext__()
                assert first.choices[0].delta.role == "assistant"
                await fake.await_for(lambda: fake.gated(fake_key))
                held = await free_tokens(raw, name)
                await stream.close()
        else:
            async with httpx.AsyncClient(base_url=url) as leaving:
                request = leaving.build_request(
                    "POST",
                    "/v1/chat/completions",
                    json=chat_body(1200, stream=True),
                    headers={**bearer(name), **gated(fake_key)},
                )
                response = await leaving.send(request, stream=True)
                assert response.status_code == 200
                await fake.await_for(lambda: fake.gated(fake_key))
                held = await free_tokens(raw, name)
            # leaving the client closes its connection with the response unread
        assert held == BUDGET - reservation(1200)
        await fake.await_for(lambda: fake.streams[fake_key].cancelled)  # the upstream saw the client go
        released = await until_changed(lambda: free_tokens(raw, name), held)
        assert held < released < BUDGET
        await until_admitted(raw, name, 1200)  # would not fit next to the abandoned reservation


@pytest.mark.anyio
async def test_budget_released_after_an_upstream_error_status(gateway: Callable[..., str], fake: FakeHF) -> None:
    """An upstream 500 costs nothing: a second request needing most of the budget is admitted right after."""
    url, name = gateway(**TOKENS), "tok-error-status"
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key_of(name), max_retries=0) as oai:
        with pytest.raises(openai.InternalServerError) as info:
            await oai.chat.completions.create(
                model=CHAT_MODEL, messages=MESSAGES, max_tokens=1200, extra_headers={"x-fake-scenario": "error:500"}
            )
    assert info.value.status_code == 500
    assert 2 * reservation(1200) > BUDGET
    async with httpx.AsyncClient(base_url=url) as raw:
        after = await until_admitted(raw, name, 1200)
    assert int(after.headers["x-ratelimit-remaining-tokens"]) == BUDGET - reservation(1200)


@pytest.mark.anyio
async def test_budget_released_after_an_error_mid_stream(gateway: Callable[..., str], fake: FakeHF) -> None:
    """A stream that ends in an error event settles on what was streamed, not on its reservation."""
    url, name = gateway(**TOKENS), "tok-error-stream"
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key_of(name), max_retries=0) as oai:
        stream = await oai.chat.completions.create(
            model=CHAT_MODEL,
            messages=MESSAGES,
            max_tokens=1200,
            stream=True,
            extra_headers={"x-fake-scenario": "stream-error-openai"},
        )
        with pytest.raises(openai.APIError) as info:
            async for _ in stream:
                pass
    # the gateway sends in-stream errors as {"error": "<str>", ...} (what HF clients read): openai shows a
    # generic message and keeps ours as the body
    assert str(info.value) == "An error occurred during streaming"
    assert info.value.body == STREAM_ERROR
    async with httpx.AsyncClient(base_url=url) as raw:
        after = await until_admitted(raw, name, 1200)
    charged = BUDGET - reservation(1200) - int(after.headers["x-ratelimit-remaining-tokens"])
    assert 0 < charged < 100  # the prompt and a few events


def test_request_larger_than_the_budget_is_400(gateway: Callable[..., str], fake: FakeHF) -> None:
    """``max_tokens`` alone over the budget can never be served: 400 ``token_limit``, not a 429 to retry."""
    url, name, max_tokens = gateway(**TOKENS), "tok-too-big", BUDGET + 1
    total = reservation(max_tokens)
    message = (
        f"This request may use up to {total} tokens (about {PROMPT_TOKENS} of prompt and {max_tokens} of output), "
        f"more than the whole token limit of {BUDGET} per {WINDOW} s: lower max_tokens or shorten the prompt"
    )
    with (
        openai.OpenAI(base_url=f"{url}/v1", api_key=key_of(name), max_retries=0) as client,
        pytest.raises(openai.BadRequestError) as from_openai,
    ):
        client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=max_tokens)
    assert from_openai.value.status_code == 400 and from_openai.value.body == message
    with InferenceClient(base_url=url, api_key=key_of(name)) as client, pytest.raises(HfHubHTTPError) as hub:
        client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=max_tokens)
    assert str(hub.value).endswith("\n" + message) and "Bad request" in str(hub.value)
    raw = httpx.post(f"{url}/v1/chat/completions", json=chat_body(max_tokens), headers=bearer(name))
    assert raw.status_code == 400 and raw.json() == {"error": message, "error_type": "token_limit"}
    assert "retry-after" not in raw.headers
    assert fake.requests == []
    ok = httpx.post(f"{url}/v1/chat/completions", json=chat_body(5), headers=bearer(name))
    assert ok.status_code == 200  # the refusals charged nothing
    assert int(ok.headers["x-ratelimit-remaining-tokens"]) == BUDGET - reservation(5)


def test_default_max_tokens_reaches_the_upstream_under_a_token_limit(gateway: Callable[..., str], fake: FakeHF) -> None:
    """A chat naming no maximum is given ``default_max_tokens``, so the upstream cannot exceed the reservation."""
    url = gateway(**TOKENS)
    with InferenceClient(base_url=url, api_key=key_of("tok-default")) as client:
        out = client.chat_completion(MESSAGES, model=CHAT_MODEL)
    with openai.OpenAI(base_url=f"{url}/v1", api_key=key_of("tok-default"), max_retries=0) as oai:
        raw = oai.chat.completions.with_raw_response.create(model=CHAT_MODEL, messages=MESSAGES)
    assert [r.json["max_tokens"] for r in fake.requests] == [DEFAULT_MAX_TOKENS, DEFAULT_MAX_TOKENS]
    usage = raw.parse().usage
    assert out.usage.completion_tokens == DEFAULT_MAX_TOKENS
    assert usage is not None and usage.completion_tokens == DEFAULT_MAX_TOKENS
    asked = fake.requests[-1].json
    assert {k: v for k, v in asked.items() if k != "max_tokens"} == {"model": CHAT_MODEL, "messages": MESSAGES}


@pytest.mark.parametrize("settings", [NO_TOKEN_LIMIT, {}], ids=["keys-and-rate-limit", "open-gateway"])
def test_no_max_tokens_added_without_a_token_limit(
    gateway: Callable[..., str], fake: FakeHF, settings: dict[str, Any]
) -> None:
    """Without a token limit the body goes upstream as the client wrote it: no ``max_tokens`` appears."""
    with InferenceClient(base_url=gateway(**settings), api_key=key_of("plain")) as client:
        client.chat_completion(MESSAGES, model=CHAT_MODEL)
    with openai.OpenAI(base_url=gateway(**settings) + "/v1", api_key=key_of("plain"), max_retries=0) as oai:
        oai.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
    assert len(fake.requests) == 2
    assert all("max_tokens" not in r.json and "max_completion_tokens" not in r.json for r in fake.requests)


# --- tokens: settled on the real usage ------------------------------------------------------------


@pytest.mark.anyio
async def test_non_streamed_request_is_charged_its_real_usage(gateway: Callable[..., str], fake: FakeHF) -> None:
    """After a chat, the window holds the usage the upstream reported, not the reservation."""
    url, name = gateway(**TOKENS), "tok-settle"
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key_of(name), max_retries=0) as oai:
        raw = await oai.chat.completions.with_raw_response.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=5)
    usage = raw.parse().usage
    reserved = BUDGET - int(raw.headers["x-ratelimit-remaining-tokens"])
    assert reserved == reservation(5)
    assert usage is not None and usage.total_tokens != reserved  # so a settlement is visible
    async with httpx.AsyncClient(base_url=url) as client:
        left = await until_changed(lambda: free_tokens(client, name), BUDGET - reserved)
    assert left == BUDGET - usage.total_tokens


@pytest.mark.anyio
async def test_streamed_request_is_charged_its_reported_usage(gateway: Callable[..., str], fake: FakeHF) -> None:
    """The same for a stream that ends with the usage chunk (``stream_options.include_usage``)."""
    url, name = gateway(**TOKENS), "tok-settle-stream"
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key_of(name), max_retries=0) as oai:
        chunks = [
            chunk
            async for chunk in await oai.chat.completions.create(
                model=CHAT_MODEL,
                messages=MESSAGES,
                max_tokens=7,
                stream=True,
                stream_options={"include_usage": True},
            )
        ]
    usage = chunks[-1].usage
    assert usage is not None and usage.total_tokens == chat_usage(7)["total_tokens"] != reservation(7)
    async with httpx.AsyncClient(base_url=url) as client:
        left = await until_changed(lambda: free_tokens(client, name), BUDGET - reservation(7))
    assert left == BUDGET - usage.total_tokens


def test_token_limit_alone_is_sent_both_ways(gateway: Callable[..., str], fake: FakeHF) -> None:
    """Only a token limit: ``X-RateLimit-*-Tokens`` names it, and ``X-RateLimit-*`` (on every limited response)
    carries the same counter, since it is the only limit there is."""
    url = gateway(**TOKENS_ONLY)
    response = httpx.post(f"{url}/v1/chat/completions", json=chat_body(5), headers=bearer("tok-only"))
    assert response.status_code == 200
    expected = (BUDGET, BUDGET - reservation(5), WINDOW)
    assert header_ints(response.headers, "-tokens") == expected
    assert header_ints(response.headers, "") == expected
