"""Errors as real clients see them through the gateway (hf_api.md §3.5, §5.5-5.6, §8.2-8.4, §8.15).

Upstream failures are chosen with ``x-fake-scenario`` (``error:STATUS:STYLE``, ``stream-error``,
``stream-error-openai``), which the gateway forwards like any other header.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import openai
import pytest
from huggingface_hub import AsyncInferenceClient, InferenceClient
from huggingface_hub.errors import (
    BadRequestError,
    GenerationError,
    HfHubHTTPError,
    IncompleteGenerationError,
    OverloadedError,
    TextGenerationError,
    UnknownError,
    ValidationError,
)

from tests.e2e.clients import CHAT_MODEL, DEFAULT_MODEL, KINDS, MESSAGES, PROMPT
from tests.upstream import FakeHF, messages_text, token_texts
from tests.upstream.fake_hf import STREAM_ERROR
from tests.upstream.shapes import ERROR_STYLES, error_message, tgi_info

pytestmark = pytest.mark.socket

TG_TARGETS = [("tgi", ""), ("router", "/models/fake/text-generation"), ("serverless", "/models/fake/text-generation")]
"""Where ``text_generation`` is served: a TGI upstream's root, or the model's task URL."""
TYPED_ERRORS = [
    (422, ValidationError),
    (424, GenerationError),
    (429, OverloadedError),
    (500, IncompleteGenerationError),
]
"""TGI status → error_type → the typed error HFH raises from ``text_generation`` (§8.4)."""
IN_STREAM_ERRORS = [("stream-error", GenerationError), ("stream-error-openai", ValidationError)]
"""TGI's ``{"error", "error_type": "generation"}``; TGI chat's ``{"error": {"message", "http_status_code": 422}}``."""
TGI_INFO_FIELDS = {
    "model_id",
    "max_concurrent_requests",
    "max_best_of",
    "max_stop_sequences",
    "max_input_tokens",
    "max_total_tokens",
    "validation_workers",
    "max_client_batch_size",
    "router",
    "version",
}
"""The required fields of TGI's ``Info`` (docs/openapi.json)."""


def scenario(value: str) -> dict[str, str]:
    """Client headers that make the fake upstream behave as ``value`` says."""
    return {"x-fake-scenario": value}


def check_http_error(error: HfHubHTTPError, status: int, style: str) -> None:
    """HFH's error carries the upstream status and a readable message: the upstream's, or the reason phrase."""
    assert error.response is not None and error.response.status_code == status
    if style in ("html", "empty"):  # nothing a client can use in the body
        assert error.server_message == HTTPStatus(status).phrase
    else:
        assert error.server_message is not None and error_message(status) in error.server_message
        assert "{" not in error.server_message  # the message itself, not a JSON dump
    assert error.response.json()["error"] == error.server_message
    request_id = error.response.headers["x-request-id"]
    assert request_id and f"(Request ID: {request_id})" in str(error)


# --- text_generation: TGI's typed errors --------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("status", "error"), TYPED_ERRORS, ids=[str(s) for s, _ in TYPED_ERRORS])
@pytest.mark.parametrize(("kind", "path"), TG_TARGETS, ids=[k for k, _ in TG_TARGETS])
def test_text_generation_typed_errors(
    gateway: Callable[..., str],
    fake: FakeHF,
    kind: str,
    path: str,
    status: int,
    error: type[TextGenerationError],
    stream: bool,
) -> None:
    """A TGI error status with its ``error_type`` becomes HFH's typed error, chained from the HTTP error."""
    with (
        InferenceClient(base_url=gateway(kind) + path, headers=scenario(f"error:{status}:tgi")) as client,
        pytest.raises(error) as err,
    ):
        out = client.text_generation(PROMPT, stream=stream)
        if stream:
            list(out)
    assert type(err.value) is error and str(err.value) == error_message(status)
    cause = err.value.__cause__
    assert isinstance(cause, HfHubHTTPError) and cause.response is not None and cause.response.status_code == status
    assert len(fake.requests) == 1  # passed through at once, not retried


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "error"), TYPED_ERRORS, ids=[str(s) for s, _ in TYPED_ERRORS])
async def test_async_text_generation_typed_errors(
    gateway: Callable[..., str], fake: FakeHF, status: int, error: type[TextGenerationError]
) -> None:
    """The async client raises the same typed errors."""
    async with AsyncInferenceClient(base_url=gateway("tgi"), headers=scenario(f"error:{status}:tgi")) as client:
        with pytest.raises(error) as err:
            await client.text_generation(PROMPT, details=True)
    assert type(err.value) is error and str(err.value) == error_message(status)


# --- errors inside a stream ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "error"), IN_STREAM_ERRORS, ids=[n for n, _ in IN_STREAM_ERRORS])
@pytest.mark.parametrize(("kind", "path"), TG_TARGETS, ids=[k for k, _ in TG_TARGETS])
def test_text_generation_in_stream_error(
    gateway: Callable[..., str], fake: FakeHF, kind: str, path: str, name: str, error: type[TextGenerationError]
) -> None:
    """After two tokens the upstream fails in-stream: HFH yields them, then raises the typed error."""
    seen: list[str] = []
    with (
        InferenceClient(base_url=gateway(kind) + path, headers=scenario(name)) as client,
        pytest.raises(error) as err,
    ):
        for text in client.text_generation(PROMPT, stream=True):
            seen.append(text)
    assert seen == token_texts(PROMPT, 2) and str(err.value) == STREAM_ERROR


@pytest.mark.parametrize(("name", "error"), IN_STREAM_ERRORS, ids=[n for n, _ in IN_STREAM_ERRORS])
@pytest.mark.parametrize("kind", KINDS)
def test_chat_in_stream_error(
    gateway: Callable[..., str], fake: FakeHF, kind: str, name: str, error: type[TextGenerationError]
) -> None:
    """A chat stream that fails mid-way raises a typed error with the upstream's message (never UnknownError)."""
    seen: list[Any] = []
    with InferenceClient(base_url=gateway(kind), headers=scenario(name)) as client, pytest.raises(error) as err:
        for chunk in client.chat_completion(MESSAGES, model=CHAT_MODEL, stream=True):
            seen.append(chunk.choices[0].delta.content)
    assert seen == token_texts(messages_text(MESSAGES), 2) and str(err.value) == STREAM_ERROR


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "error"), IN_STREAM_ERRORS, ids=[n for n, _ in IN_STREAM_ERRORS])
async def test_async_chat_in_stream_error(
    gateway: Callable[..., str], fake: FakeHF, name: str, error: type[TextGenerationError]
) -> None:
    """The async client raises the same typed error mid-iteration."""
    seen: list[Any] = []
    async with AsyncInferenceClient(base_url=gateway("router"), headers=scenario(name)) as client:
        stream = await client.chat_completion(MESSAGES, model=CHAT_MODEL, stream=True)
        with pytest.raises(error) as err:
            async for chunk in stream:
                seen.append(chunk.choices[0].delta.content)
    assert seen == token_texts(messages_text(MESSAGES), 2) and str(err.value) == STREAM_ERROR


@pytest.mark.parametrize("name", [n for n, _ in IN_STREAM_ERRORS])
@pytest.mark.parametrize("kind", KINDS)
def test_openai_in_stream_error(gateway: Callable[..., str], fake: FakeHF, kind: str, name: str) -> None:
    """The openai client raises ``APIError`` mid-stream, the upstream's message in its ``body``."""
    seen: list[Any] = []
    with (
        openai.OpenAI(
            base_url=gateway(kind) + "/v1", api_key="k", max_retries=0, default_headers=scenario(name)
        ) as client,
        pytest.raises(openai.APIError) as err,
    ):
        for chunk in client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, stream=True):
            seen.append(chunk.choices[0].delta.content)
    assert seen == token_texts(messages_text(MESSAGES), 2) and err.value.body == STREAM_ERROR


# --- every upstream error style -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 422, 502])
@pytest.mark.parametrize("style", ERROR_STYLES)
def test_error_styles_reach_hfh_chat(gateway: Callable[..., str], fake: FakeHF, style: str, status: int) -> None:
    """Whatever shape the upstream's error has, chat gets an HfHubHTTPError with its status and message."""
    with (
        InferenceClient(base_url=gateway("router"), headers=scenario(f"error:{status}:{style}")) as client,
        pytest.raises(HfHubHTTPError) as err,
    ):
        client.chat_completion(MESSAGES, model=CHAT_MODEL)
    check_http_error(err.value, status, style)


@pytest.mark.parametrize("style", ERROR_STYLES)
def test_error_styles_reach_hfh_task_api(gateway: Callable[..., str], fake: FakeHF, style: str) -> None:
    """The same on the task API (a JSON array body would crash HFH with AttributeError if passed through)."""
    base = gateway("serverless") + "/models/fake/text-classification"
    with (
        InferenceClient(base_url=base, headers=scenario(f"error:500:{style}")) as client,
        pytest.raises(HfHubHTTPError) as err,
    ):
        client.text_classification("some text")
    check_http_error(err.value, 500, style)


@pytest.mark.anyio
@pytest.mark.parametrize("style", ERROR_STYLES)
async def test_error_styles_reach_the_async_client(gateway: Callable[..., str], fake: FakeHF, style: str) -> None:
    """The async client reads the same status and message."""
    base = gateway("router") + "/models/fake/summarization"
    async with AsyncInferenceClient(base_url=base, headers=scenario(f"error:424:{style}")) as client:
        with pytest.raises(HfHubHTTPError) as err:
            await client.summarization("some text to summarize")
    check_http_error(err.value, 424, style)


# --- request ids --------------------------------------------------------------------------------------


def test_request_id_appears_in_hfh_errors(gateway: Callable[..., str], fake: FakeHF) -> None:
    """A client's ``x-request-id`` reaches the upstream and comes back into HFH's error message."""
    headers = {"x-request-id": "compat-req-42", **scenario("error:500:text")}
    with InferenceClient(base_url=gateway("router"), headers=headers) as client, pytest.raises(HfHubHTTPError) as err:
        client.chat_completion(MESSAGES, model=CHAT_MODEL)
    assert "(Request ID: compat-req-42)" in str(err.value)
    assert fake.last().headers["x-request-id"] == "compat-req-42"


def test_generated_request_id_appears_in_hfh_errors(gateway: Callable[..., str], fake: FakeHF) -> None:
    """Without one, the gateway's generated id is what the upstream got and what the error names."""
    with (
        InferenceClient(base_url=gateway("serverless"), headers=scenario("error:502:html")) as client,
        pytest.raises(HfHubHTTPError) as err,
    ):
        client.chat_completion(MESSAGES, model=CHAT_MODEL)
    assert err.value.response is not None
    request_id = err.value.response.headers["x-request-id"]
    assert f"(Request ID: {request_id})" in str(err.value) and fake.last().headers["x-request-id"] == request_id


# --- the openai client --------------------------------------------------------------------------------

OPENAI_ERRORS = [
    (400, openai.BadRequestError),
    (401, openai.AuthenticationError),
    (403, openai.PermissionDeniedError),
    (404, openai.NotFoundError),
    (422, openai.UnprocessableEntityError),
    (429, openai.RateLimitError),
    (500, openai.InternalServerError),
    (502, openai.InternalServerError),
]


@pytest.mark.parametrize(("status", "error"), OPENAI_ERRORS, ids=[str(s) for s, _ in OPENAI_ERRORS])
@pytest.mark.parametrize("kind", KINDS)
def test_openai_errors_carry_the_status(
    gateway: Callable[..., str], fake: FakeHF, kind: str, status: int, error: type[openai.APIStatusError]
) -> None:
    """The openai client raises the error class of the upstream's status, with the message and request id."""
    with (
        openai.OpenAI(
            base_url=gateway(kind) + "/v1",
            api_key="k",
            max_retries=0,
            default_headers=scenario(f"error:{status}:openai"),
        ) as client,
        pytest.raises(error) as err,
    ):
        client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES)
    assert type(err.value) is error and err.value.status_code == status
    assert err.value.body == error_message(status)  # the envelope's `error` string
    assert err.value.request_id and err.value.request_id == fake.last().headers["x-request-id"]


# --- the gateway's own errors -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["router", "serverless", "openai"])
def test_placeholder_model_without_a_default_model(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """HFH's ``"dummy"`` with no ``default_model`` configured: a 400 that says what to set; nothing goes up."""
    with InferenceClient(base_url=gateway(kind)) as client, pytest.raises(BadRequestError) as err:
        client.chat_completion(MESSAGES)
    assert err.value.response is not None and err.value.response.json()["error_type"] == "model_required"
    assert err.value.server_message is not None and "default_model" in err.value.server_message
    assert fake.requests == []


def test_task_api_on_an_upstream_without_it(gateway: Callable[..., str], fake: FakeHF) -> None:
    """An OpenAI-compatible upstream has no task API: HFH gets a 400 naming the route."""
    base = gateway("openai") + "/models/fake/text-classification"
    with InferenceClient(base_url=base) as client, pytest.raises(BadRequestError) as err:
        client.text_classification("x")
    assert err.value.server_message is not None and "'task' route is not served" in err.value.server_message
    assert fake.requests == []


def test_text_generation_reports_gateway_errors_as_unknown_error(gateway: Callable[..., str], fake: FakeHF) -> None:
    """``text_generation`` maps any ``error_type`` to a typed error: the gateway's own become ``UnknownError``."""
    base = gateway("openai") + "/models/fake/text-generation"
    with InferenceClient(base_url=base) as client, pytest.raises(UnknownError) as err:
        client.text_generation(PROMPT)
    assert "'task' route is not served" in str(err.value)
    cause = err.value.__cause__
    assert isinstance(cause, BadRequestError) and cause.response is not None and cause.response.status_code == 400


def test_unknown_route_is_a_404(gateway: Callable[..., str], fake: FakeHF) -> None:
    """A base URL that is no gateway route: 404 with a message naming it."""
    with InferenceClient(base_url=gateway("router") + "/nowhere") as client, pytest.raises(HfHubHTTPError) as err:
        client.summarization("x")
    assert err.value.response is not None and err.value.response.status_code == 404
    assert err.value.server_message == "No route POST /nowhere on this gateway" and fake.requests == []


# --- health and info ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_health_check_and_endpoint_info(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """With ``provider="hf-inference"`` (HFH 2.4.0 needs it, §5.1) health and TGI-style info both work."""
    base = gateway(kind, default_model=DEFAULT_MODEL)
    with InferenceClient(base_url=base, provider="hf-inference") as client:
        healthy = client.health_check()
        info = client.get_endpoint_info()
    assert healthy is True
    if kind == "tgi":
        assert info == tgi_info(fake.model_id)  # the TGI upstream's own answer
    else:
        assert set(info) >= TGI_INFO_FIELDS and info["model_id"] == DEFAULT_MODEL


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["router", "tgi"])
async def test_async_health_check_and_endpoint_info(gateway: Callable[..., str], fake: FakeHF, kind: str) -> None:
    """The async client's health check and info."""
    async with AsyncInferenceClient(base_url=gateway(kind), provider="hf-inference") as client:
        assert await client.health_check() is True
        info = await client.get_endpoint_info()
    assert set(info) >= TGI_INFO_FIELDS
