"""The request validator seen through real clients (``huggingface_hub``, ``openai``) and raw ``httpx``.

Bad input is refused at the gateway, before Hugging Face is paid for it, with the field that is wrong:

* ``InferenceClient.text_generation`` raises ``huggingface_hub.errors.ValidationError`` (a
  ``TextGenerationError``) whose ``str`` is our message alone, chained from the 422 ``HfHubHTTPError``;
* the other ``InferenceClient`` methods raise ``HfHubHTTPError`` with the status, whose ``server_message`` is
  our message (``str`` shows it after the client's first line);
* ``openai`` raises ``UnprocessableEntityError`` (422) and keeps our message in ``exc.body``.

None of the refused requests reaches the fake upstream. Raw media bodies (what huggingface_hub sends, with no
Content-Type, when a media method has no parameters) are told apart by their first bytes. Per-key caps
(``max_tokens``, ``max_prompt_length`` in the key file) refuse what is over them and fill in what is missing;
``validate=False`` (``HFASGI_VALIDATE=0``) forwards bodies unchecked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from huggingface_hub import AsyncInferenceClient, ImageToImageTargetSize, InferenceClient
from huggingface_hub.errors import HfHubHTTPError, ValidationError

from hfasgi.auth import KeyRecord, write_key_file
from tests.e2e.clients import CHAT_MODEL, MESSAGES, PROMPT
from tests.e2e.test_validation_tables import FLAC, PNG, WAV
from tests.upstream import FakeHF, expected_chat, expected_generation, expected_text_classification

pytestmark = [pytest.mark.socket, pytest.mark.usefixtures("no_ambient_hf_token")]

TEXT = "Alice met Bob in Paris yesterday"
TGI_MODEL = "fake/text-generation"


def pipeline(task: str, model: str | None = None) -> str:
    """The forced-task route of ``task`` (validated against the task's schema without a catalog)."""
    return f"/pipeline/{task}/{model or f'fake/{task}'}"


def check_hub_refusal(exc: HfHubHTTPError, status: int, message: str) -> None:
    """What ``InferenceClient`` shows for one of our refusals: the status, and our message as the server's."""
    assert exc.response.status_code == status
    assert exc.server_message == message
    assert message in str(exc)


def check_validation_error(exc: ValidationError, message: str) -> None:
    """``text_generation``'s typed error: our message alone, from a 422."""
    assert str(exc) == message
    cause = exc.__cause__
    assert isinstance(cause, HfHubHTTPError) and cause.response.status_code == 422


def oai(url: str, key: str = "unused-key") -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)


# --- text_generation -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadGeneration:
    """An invalid ``text_generation`` call and what TGI's routes and the task route say about it."""

    kwargs: dict[str, Any]
    tgi: str
    task: str | None
    """``None``: the task route accepts it (it takes the legacy pipelines' ranges too)."""

    @property
    def id(self) -> str:
        return ",".join(f"{k}={v!r}"[:24] for k, v in self.kwargs.items())


BAD_GENERATIONS = [
    BadGeneration({"temperature": -1}, "parameters.temperature: must be > 0", "parameters.temperature: must be >= 0"),
    BadGeneration({"top_p": 1.5}, "parameters.top_p: must be < 1", "parameters.top_p: must be <= 1"),
    BadGeneration(
        {"stop": ["a", "b", "c", "d", "e"]},
        "parameters.stop: must have at most 4 items",
        "parameters.stop: must have at most 4 items",
    ),
    BadGeneration(
        {"max_new_tokens": -3}, "parameters.max_new_tokens: must be >= 1", "parameters.max_new_tokens: must be >= 0"
    ),
    BadGeneration({"top_k": 0}, "parameters.top_k: must be >= 1", "parameters.top_k: must be >= 1"),
    BadGeneration({"repetition_penalty": 0}, "parameters.repetition_penalty: must be > 0", None),
]
GENERATION_TARGETS = {
    "tgi-root": ("tgi", ""),
    "tgi-generate": ("tgi", "/generate"),
    "router-task": ("router", f"/models/{TGI_MODEL}/pipeline/text-generation"),
    "serverless-task": ("serverless", pipeline("text-generation")),
}


@pytest.mark.parametrize("target", GENERATION_TARGETS)
@pytest.mark.parametrize("bad", BAD_GENERATIONS, ids=[b.id for b in BAD_GENERATIONS])
def test_text_generation_invalid_parameter_is_a_validation_error(
    gateway: Callable[..., str], fake: FakeHF, target: str, bad: BadGeneration
) -> None:
    """An out-of-range parameter raises ``ValidationError`` naming ``parameters.<name>``; nothing goes upstream."""
    kind, path = GENERATION_TARGETS[target]
    message = bad.tgi if kind == "tgi" else bad.task
    with InferenceClient(base_url=gateway(kind) + path) as client:
        if message is None:
            assert client.text_generation(PROMPT, **bad.kwargs) == expected_generation(PROMPT)
            assert len(fake.requests) == 1
            return
        with pytest.raises(ValidationError) as err:
            client.text_generation(PROMPT, **bad.kwargs)
    check_validation_error(err.value, message)
    assert fake.requests == []


def test_text_generation_stream_invalid_parameter(gateway: Callable[..., str], fake: FakeHF) -> None:
    """A streamed call is refused before the stream starts, with the same typed error."""
    with InferenceClient(base_url=gateway("tgi")) as client, pytest.raises(ValidationError) as err:
        list(client.text_generation(PROMPT, stream=True, temperature=-1))
    check_validation_error(err.value, "parameters.temperature: must be > 0")
    with InferenceClient(base_url=gateway("tgi") + "/generate_stream") as client, pytest.raises(ValidationError) as s:
        list(client.text_generation(PROMPT, stream=True, details=True, top_p=1.5))
    check_validation_error(s.value, "parameters.top_p: must be < 1")
    assert fake.requests == []


@pytest.mark.anyio
async def test_async_text_generation_invalid_parameter(gateway: Callable[..., str], fake: FakeHF) -> None:
    """``AsyncInferenceClient`` raises the same ``ValidationError``."""
    async with AsyncInferenceClient(base_url=gateway("tgi")) as client:
        with pytest.raises(ValidationError) as err:
            await client.text_generation(PROMPT, stop=["1", "2", "3", "4", "5"])
        with pytest.raises(ValidationError) as typo:
            await client.text_generation(PROMPT, max_new_tokens=0)
    check_validation_error(err.value, "parameters.stop: must have at most 4 items")
    check_validation_error(typo.value, "parameters.max_new_tokens: must be >= 1")
    assert fake.requests == []


def test_text_generation_misspelt_parameter_via_raw_post(gateway: Callable[..., str], fake: FakeHF) -> None:
    """TGI's ``parameters`` is closed: a misspelt knob is refused instead of silently ignored."""
    body = {"inputs": PROMPT, "parameters": {"temprature": 0.5}}
    response = httpx.post(gateway("tgi") + "/generate", json=body)
    assert (response.status_code, response.json()) == (
        422,
        {"error": "parameters.temprature: is not a known parameter (check its spelling)", "error_type": "validation"},
    )
    assert fake.requests == []


# --- chat ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadChat:
    """An invalid chat request, as ``chat_completion`` / ``chat.completions.create`` keyword arguments."""

    id: str
    kwargs: dict[str, Any]
    message: str


BAD_CHATS = [
    BadChat("no-messages", {"messages": []}, "messages: must not be empty"),
    BadChat("temperature-hot", {"temperature": "hot"}, "temperature: must be a number (or null)"),
    BadChat("top_p", {"top_p": 1.5}, "top_p: must be <= 1"),
    BadChat("stop-5", {"stop": ["a", "b", "c", "d", "e"]}, "stop: must have at most 4 items"),
    BadChat(
        "tool-without-name",
        {"tools": [{"type": "function", "function": {"description": "what time is it", "parameters": {}}}]},
        "tools[0].function.name: is required",
    ),
    BadChat(
        "response_format-bogus",
        {"response_format": {"type": "bogus"}},
        "response_format.type: must be one of 'text', 'json_object', 'json_schema', 'json', 'regex'",
    ),
    BadChat(
        "message-without-content",
        {"messages": [{"role": "user"}]},
        "messages[0].content: is required",
    ),
    BadChat(
        "assistant-empty",
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]},
        "messages[1]: an assistant message needs `content` or `tool_calls`",
    ),
]


def _chat_kwargs(bad: BadChat) -> dict[str, Any]:
    return {"messages": MESSAGES, "model": CHAT_MODEL, "max_tokens": 3, **bad.kwargs}


@pytest.mark.parametrize("kind", ["router", "tgi"])
@pytest.mark.parametrize("bad", BAD_CHATS, ids=[b.id for b in BAD_CHATS])
def test_chat_completion_invalid_body(gateway: Callable[..., str], fake: FakeHF, kind: str, bad: BadChat) -> None:
    """``InferenceClient.chat_completion``: a 422 ``HfHubHTTPError`` whose server message is ours."""
    with InferenceClient(base_url=gateway(kind)) as client, pytest.raises(HfHubHTTPError) as err:
        client.chat_completion(**_chat_kwargs(bad))
    check_hub_refusal(err.value, 422, bad.message)
    assert fake.requests == []


def test_chat_completion_invalid_extra_body(gateway: Callable[..., str], fake: FakeHF) -> None:
    """A wrong type sent through ``extra_body`` (the root stays open, but known fields are typed)."""
    with InferenceClient(base_url=gateway("router")) as client, pytest.raises(HfHubHTTPError) as err:
        client.chat_completion(MESSAGES, model=CHAT_MODEL, extra_body={"max_completion_tokens": "ten"})
    check_hub_refusal(err.value, 422, "max_completion_tokens: must be an integer (or null)")
    with InferenceClient(base_url=gateway("router")) as client:  # an unknown vendor extension passes
        out = client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=2, extra_body={"safety_model": "x"})
    assert out.choices[0].message.content == expected_chat(MESSAGES, 2)
    assert fake.last().json["safety_model"] == "x" and len(fake.requests) == 1


@pytest.mark.anyio
async def test_async_chat_completion_invalid_body(gateway: Callable[..., str], fake: FakeHF) -> None:
    """``AsyncInferenceClient.chat_completion`` (streamed or not) shows the same 422."""
    async with AsyncInferenceClient(base_url=gateway("router")) as client:
        with pytest.raises(HfHubHTTPError) as err:
            await client.chat_completion([], model=CHAT_MODEL)
        with pytest.raises(HfHubHTTPError) as streamed:
            await client.chat_completion(MESSAGES, model=CHAT_MODEL, stream=True, top_p=2.0)
    check_hub_refusal(err.value, 422, "messages: must not be empty")
    check_hub_refusal(streamed.value, 422, "top_p: must be <= 1")
    assert fake.requests == []


@pytest.mark.parametrize("kind", ["router", "openai"])
@pytest.mark.parametrize("bad", BAD_CHATS, ids=[b.id for b in BAD_CHATS])
def test_openai_chat_invalid_body(gateway: Callable[..., str], fake: FakeHF, kind: str, bad: BadChat) -> None:
    """``openai``: ``UnprocessableEntityError`` (422) with our message as ``exc.body``."""
    with oai(gateway(kind)) as client, pytest.raises(openai.UnprocessableEntityError) as err:
        client.chat.completions.create(**_chat_kwargs(bad))
    assert err.value.status_code == 422 and err.value.body == bad.message
    assert err.value.response.json() == {"error": bad.message, "error_type": "validation"}
    assert fake.requests == []


def test_openai_completions_and_embeddings_invalid_body(gateway: Callable[..., str], fake: FakeHF) -> None:
    """Legacy completions and embeddings are checked too (here against an OpenAI-compatible upstream)."""
    with oai(gateway("openai")) as client:
        with pytest.raises(openai.UnprocessableEntityError) as completion:
            client.completions.create(model=CHAT_MODEL, prompt="x", max_tokens=-1)
        with pytest.raises(openai.UnprocessableEntityError) as embedding:
            client.embeddings.create(model="org/embedder", input="x", dimensions=0)
        with pytest.raises(openai.UnprocessableEntityError) as empty:
            client.embeddings.create(model="org/embedder", input=[])
    assert completion.value.body == "max_tokens: must be >= 0"
    assert embedding.value.body == "dimensions: must be >= 1"
    assert empty.value.body == (
        "input: must be a string, a list of strings, a list of token ids or a list of lists of token ids"
    )
    assert fake.requests == []


@pytest.mark.anyio
async def test_async_openai_chat_invalid_body(gateway: Callable[..., str], fake: FakeHF) -> None:
    """``AsyncOpenAI`` raises the same ``UnprocessableEntityError``."""
    async with openai.AsyncOpenAI(base_url=gateway("router") + "/v1", api_key="k", max_retries=0) as client:
        with pytest.raises(openai.UnprocessableEntityError) as err:
            await client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user"}])  # type: ignore[misc]
    assert err.value.body == "messages[0].content: is required" and fake.requests == []


# --- task methods ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadTask:
    """An ``InferenceClient`` task method call with an invalid parameter, on its forced-task route."""

    id: str
    task: str
    call: Callable[[InferenceClient], Any]
    message: str


BAD_TASKS = [
    BadTask(
        "text_classification-top_k",
        "text-classification",
        lambda c: c.text_classification(TEXT, top_k=-1),
        "parameters.top_k: must be >= 1",
    ),
    BadTask(
        "text_classification-function",
        "text-classification",
        lambda c: c.text_classification(TEXT, function_to_apply="relu"),  # type: ignore[arg-type]
        "parameters.function_to_apply: must be one of 'sigmoid', 'softmax', 'none' (or null)",
    ),
    BadTask(
        "token_classification-strategy",
        "token-classification",
        lambda c: c.token_classification(TEXT, aggregation_strategy="all"),  # type: ignore[arg-type]
        "parameters.aggregation_strategy: must be one of 'none', 'simple', 'first', 'average', 'max' (or null)",
    ),
    BadTask(
        "question_answering-top_k",
        "question-answering",
        lambda c: c.question_answering(question="Where?", context=TEXT, top_k=0),
        "parameters.top_k: must be >= 1",
    ),
    BadTask(
        "question_answering-max_answer_len",
        "question-answering",
        lambda c: c.question_answering(question="Where?", context=TEXT, max_answer_len="5"),  # type: ignore[arg-type]
        "parameters.max_answer_len: must be an integer (or null)",
    ),
    BadTask(
        "fill_mask-top_k",
        "fill-mask",
        lambda c: c.fill_mask("Paris is the [MASK]", top_k=0),
        "parameters.top_k: must be >= 1",
    ),
    BadTask(
        "zero_shot-no-labels",
        "zero-shot-classification",
        lambda c: c.zero_shot_classification(TEXT, []),
        "parameters.candidate_labels: must not be empty",
    ),
    BadTask(
        "summarization-truncation",
        "summarization",
        lambda c: c.summarization(TEXT, truncation="yes"),  # type: ignore[arg-type]
        "parameters.truncation: must be one of 'do_not_truncate', 'longest_first', 'only_first', 'only_second'"
        " (or null)",
    ),
    BadTask(
        "table_question_answering-list-table",
        "table-question-answering",
        lambda c: c.table_question_answering([["Paris", "France"]], "Which city?"),  # type: ignore[arg-type]
        "inputs.table: must be an object",
    ),
    BadTask(
        "table_question_answering-number-cells",
        "table-question-answering",
        lambda c: c.table_question_answering({"year": [2020, 2021]}, "Which year?"),  # type: ignore[dict-item]
        "inputs.table.year[0]: must be a string",
    ),
    BadTask(
        "sentence_similarity-string",
        "sentence-similarity",
        lambda c: c.sentence_similarity(TEXT, "not a list"),  # type: ignore[arg-type]
        "inputs.sentences: must be a list",
    ),
    BadTask(
        "feature_extraction-direction",
        "feature-extraction",
        lambda c: c.feature_extraction(TEXT, truncation_direction="up"),  # type: ignore[arg-type]
        "truncation_direction: must be one of 'left', 'right' (or null)",
    ),
    BadTask(
        "image_classification-top_k",
        "image-classification",
        lambda c: c.image_classification(PNG, top_k=0),
        "parameters.top_k: must be >= 1",
    ),
    BadTask(
        "object_detection-threshold",
        "object-detection",
        lambda c: c.object_detection(PNG, threshold=1.5),
        "parameters.threshold: must be <= 1",
    ),
    BadTask(
        "audio_classification-top_k",
        "audio-classification",
        lambda c: c.audio_classification(WAV, top_k=0),
        "parameters.top_k: must be >= 1",
    ),
]


@pytest.mark.parametrize("kind", ["router", "serverless"])
@pytest.mark.parametrize("bad", BAD_TASKS, ids=[b.id for b in BAD_TASKS])
def test_task_method_invalid_parameter(gateway: Callable[..., str], fake: FakeHF, kind: str, bad: BadTask) -> None:
    """A task method's invalid parameter: 422 naming the field, on ``/models/{id}/pipeline/{task}``."""
    url = gateway(kind) + f"/models/fake/{bad.task}/pipeline/{bad.task}"
    with InferenceClient(base_url=url) as client, pytest.raises(HfHubHTTPError) as err:
        bad.call(client)
    check_hub_refusal(err.value, 422, bad.message)
    assert fake.requests == []


def test_zero_shot_without_labels_via_raw_post(gateway: Callable[..., str], fake: FakeHF) -> None:
    """The body shape huggingface_hub uses, without the labels it always sends: 422 naming what is missing."""
    url = gateway("serverless") + pipeline("zero-shot-classification")
    missing = httpx.post(url, json={"inputs": TEXT, "parameters": {"multi_label": False}})
    no_parameters = httpx.post(url, json={"inputs": TEXT})
    assert (missing.status_code, missing.json()["error"]) == (422, "parameters.candidate_labels: is required")
    assert (no_parameters.status_code, no_parameters.json()["error"]) == (422, "parameters: is required")
    assert fake.requests == []


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A catalog giving ``fake/text-classification`` its task, so plain ``/models/{id}`` is checked against it."""
    path = tmp_path_factory.mktemp("validation-catalog") / "models.toml"
    path.write_text('[[models]]\nid = "fake/text-classification"\ntask = "text-classification"\n', encoding="utf-8")
    yield path


def test_catalog_task_is_validated_on_the_plain_model_route(
    gateway: Callable[..., str], fake: FakeHF, catalog_file: Path
) -> None:
    """``/models/{id}`` with a catalog task gets that task's schema; without one only ``inputs`` is required."""
    with (
        InferenceClient(
            base_url=gateway("router", models_file=str(catalog_file)) + "/models/fake/text-classification"
        ) as client,
        pytest.raises(HfHubHTTPError) as err,
    ):
        client.text_classification(TEXT, top_k=-1)
    check_hub_refusal(err.value, 422, "parameters.top_k: must be >= 1")
    assert fake.requests == []
    with InferenceClient(base_url=gateway("router") + "/models/fake/text-classification") as client:
        labels = client.text_classification(TEXT, top_k=-1)  # no task known: the upstream decides
    assert [x.label for x in labels] == [x["label"] for x in expected_text_classification(TEXT, top_k=-1)]
    assert fake.last().json == {"inputs": TEXT, "parameters": {"top_k": -1}}


# --- every body the media methods send is accepted -------------------------------------------------------


@dataclass(frozen=True)
class MediaCall:
    """A media (or tabular) ``InferenceClient`` call the validator must let through as sent."""

    id: str
    task: str
    call: Callable[[InferenceClient], Any]
    raw: bytes | None = None
    """The raw body huggingface_hub sends (no parameters); ``None``: a JSON body."""


MEDIA_CALLS = [  # image_to_video, text_to_video, tabular_regression: HFH refuses them for hf-inference itself
    MediaCall("image_classification-raw-png", "image-classification", lambda c: c.image_classification(PNG), PNG),
    MediaCall("image_classification-top_k", "image-classification", lambda c: c.image_classification(PNG, top_k=1)),
    MediaCall("asr-raw-wav", "automatic-speech-recognition", lambda c: c.automatic_speech_recognition(WAV), WAV),
    MediaCall("asr-raw-flac", "automatic-speech-recognition", lambda c: c.automatic_speech_recognition(FLAC), FLAC),
    MediaCall(
        "asr-extra_body",
        "automatic-speech-recognition",
        lambda c: c.automatic_speech_recognition(WAV, extra_body={"return_timestamps": True, "language": "en"}),
    ),
    MediaCall("audio_classification-raw", "audio-classification", lambda c: c.audio_classification(WAV), WAV),
    MediaCall(
        "audio_classification-params",
        "audio-classification",
        lambda c: c.audio_classification(WAV, top_k=2, function_to_apply="softmax"),
    ),
    MediaCall("audio_to_audio-raw", "audio-to-audio", lambda c: c.audio_to_audio(FLAC), FLAC),
    MediaCall("image_to_text-raw", "image-to-text", lambda c: c.image_to_text(PNG), PNG),
    MediaCall(
        "image_segmentation-params",
        "image-segmentation",
        lambda c: c.image_segmentation(PNG, threshold=0.5, subtask="semantic", mask_threshold=0.4),
    ),
    MediaCall("object_detection-params", "object-detection", lambda c: c.object_detection(PNG, threshold=0.5)),
    MediaCall(
        "image_to_image-params",
        "image-to-image",
        lambda c: c.image_to_image(
            PNG, prompt="a hat", target_size=ImageToImageTargetSize(width=8, height=8), num_inference_steps=2
        ),
    ),
    MediaCall(
        "visual_question_answering",
        "visual-question-answering",
        lambda c: c.visual_question_answering(PNG, "What colour?", top_k=1),
    ),
    MediaCall(
        "document_question_answering",
        "document-question-answering",
        lambda c: c.document_question_answering(PNG, "What is the total?", top_k=1, lang="en"),
    ),
    MediaCall(
        "zero_shot_image_classification",
        "zero-shot-image-classification",
        lambda c: c.zero_shot_image_classification(PNG, ["cat", "dog"]),
    ),
    MediaCall(
        "text_to_image",
        "text-to-image",
        lambda c: c.text_to_image("an astronaut", width=64, height=64, seed=1, extra_body={"style": "raw"}),
    ),
    MediaCall("text_to_speech", "text-to-speech", lambda c: c.text_to_speech("hello", do_sample=True, top_k=5)),
    MediaCall(
        "tabular_classification",
        "tabular-classification",
        lambda c: c.tabular_classification({"a": ["1", "2"], "b": ["x", "y"]}),
    ),
]


@pytest.mark.parametrize("case", MEDIA_CALLS, ids=[c.id for c in MEDIA_CALLS])
def test_media_method_bodies_reach_the_upstream(gateway: Callable[..., str], fake: FakeHF, case: MediaCall) -> None:
    """Each media method's body passes the validator as sent; raw bytes go without a Content-Type.

    The fake serves no media task, so it answers ``404 Model fake/<task> does not exist``: the client's
    error carries the fake's message, not ours, and the fake recorded the body.
    """
    model = f"fake/{case.task}"
    url = gateway("serverless") + pipeline(case.task)
    with InferenceClient(base_url=url) as client, pytest.raises(HfHubHTTPError) as err:
        case.call(client)
    check_hub_refusal(err.value, 404, f"Model {model} does not exist")
    assert len(fake.requests) == 1
    sent = fake.last()
    assert sent.path == pipeline(case.task)
    if case.raw is not None:
        assert sent.body == case.raw and sent.json is None
        assert "content-type" not in sent.headers
    else:
        assert isinstance(sent.json, dict) and sent.headers["content-type"] == "application/json"


# --- raw bodies ------------------------------------------------------------------------------------------


def test_png_to_an_audio_task_is_415(gateway: Callable[..., str], fake: FakeHF) -> None:
    """An image sent to speech recognition: 415 saying what was expected and what was found."""
    asr = gateway("serverless") + pipeline("automatic-speech-recognition")
    with InferenceClient(base_url=asr) as client, pytest.raises(HfHubHTTPError) as err:
        client.automatic_speech_recognition(PNG)
    check_hub_refusal(
        err.value,
        415,
        "The automatic-speech-recognition task takes audio bytes (or JSON with base64 inputs); got image/png",
    )
    image = gateway("router") + "/models/fake/x/pipeline/image-classification"
    with InferenceClient(base_url=image) as client, pytest.raises(HfHubHTTPError) as wav:
        client.image_classification(WAV)
    check_hub_refusal(
        wav.value, 415, "The image-classification task takes image bytes (or JSON with base64 inputs); got audio/wav"
    )
    assert fake.requests == []


def test_text_bytes_to_a_json_route_are_415(gateway: Callable[..., str], fake: FakeHF) -> None:
    """``Content-Type: text/plain`` on a JSON route, or raw text to a JSON-only task: 415."""
    url = gateway("router")
    chat = httpx.post(url + "/v1/chat/completions", content=b"Tell me a story", headers={"content-type": "text/plain"})
    assert (chat.status_code, chat.json()) == (
        415,
        {
            "error": "Unsupported Content-Type 'text/plain': this route takes application/json",
            "error_type": "unsupported_media_type",
        },
    )
    task = httpx.post(
        url + "/models/fake/text-classification/pipeline/text-classification",
        content=TEXT.encode(),
        headers={"content-type": "text/plain; charset=utf-8"},
    )
    assert (task.status_code, task.json()["error"]) == (
        415,
        'The text-classification task takes a JSON body ({"inputs": ...}), not raw bytes',
    )
    generate = httpx.post(gateway("tgi") + "/generate", content=PROMPT.encode(), headers={"content-type": "text/plain"})
    assert generate.status_code == 415 and fake.requests == []


@pytest.fixture
def small_gateway(gateway: Callable[..., str]) -> str:
    """A gateway that takes bodies of at most 1 KiB."""
    return gateway("router", max_body_bytes=1024)


def test_body_over_the_limit_is_413(small_gateway: str, fake: FakeHF) -> None:
    """A body over ``max_body_bytes`` is refused while reading (declared or chunked); the upstream sees nothing."""
    message = "The request body is larger than the limit of 1024 bytes"
    big = [{"role": "user", "content": "x" * 2000}]
    with InferenceClient(base_url=small_gateway) as client, pytest.raises(HfHubHTTPError) as hub:
        client.chat_completion(big, model=CHAT_MODEL)
    check_hub_refusal(hub.value, 413, message)
    with oai(small_gateway) as client, pytest.raises(openai.APIStatusError) as from_openai:
        client.chat.completions.create(model=CHAT_MODEL, messages=big)  # type: ignore[arg-type]
    assert from_openai.value.status_code == 413 and from_openai.value.body == message
    image_url = small_gateway + pipeline("image-classification")
    with InferenceClient(base_url=image_url) as client, pytest.raises(HfHubHTTPError) as image:
        client.image_classification(PNG + bytes(2000))
    check_hub_refusal(image.value, 413, message)

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"model": "m", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"y" * 100
        yield b'"}]}'

    chunked = httpx.post(small_gateway + "/v1/chat/completions", content=chunks())
    assert (chunked.status_code, chunked.json()) == (413, {"error": message, "error_type": "payload_too_large"})
    assert fake.requests == []
    with InferenceClient(base_url=small_gateway) as client:  # a small one still goes through
        assert client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=2).choices[0].message.content
    assert len(fake.requests) == 1


def test_malformed_json_and_non_objects_are_400(gateway: Callable[..., str], fake: FakeHF) -> None:
    """Malformed JSON → 400 ``invalid_json``; a JSON array for chat, or an empty body → 400 ``invalid_request``."""
    url = gateway("router") + "/v1/chat/completions"
    malformed = httpx.post(url, content=b'{"messages": [', headers={"content-type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error_type"] == "invalid_json"
    assert malformed.json()["error"].startswith("The request body is not valid JSON: ")
    array = httpx.post(url, json=[{"role": "user", "content": "hi"}])
    assert (array.status_code, array.json()) == (
        400,
        {"error": "The request body must be a JSON object", "error_type": "invalid_request"},
    )
    empty = httpx.post(url, content=b"", headers={"content-type": "application/json"})
    assert (empty.status_code, empty.json()) == (
        400,
        {"error": "The request body is empty: send a JSON object", "error_type": "invalid_request"},
    )
    assert fake.requests == []


# --- per-key caps ----------------------------------------------------------------------------------------

CAPPED = "hfasgi_test_capped_key_0123456789abcdef"
FREE = "hfasgi_test_uncapped_key_fedcba9876543210"


@pytest.fixture(scope="module")
def cap_keys(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A key file: ``capped`` (``max_tokens=16``, ``max_prompt_length=200``) and ``free`` (no caps)."""
    path = tmp_path_factory.mktemp("validation-keys") / "keys.toml"
    write_key_file(
        path,
        [KeyRecord.for_key("capped", CAPPED, max_tokens=16, max_prompt_length=200), KeyRecord.for_key("free", FREE)],
    )
    return str(path)


def test_cap_refuses_a_larger_max_tokens(gateway: Callable[..., str], fake: FakeHF, cap_keys: str) -> None:
    """``max_tokens`` (or ``max_completion_tokens``) over the key's cap: 422 naming the field and the cap."""
    url = gateway(no_auth=False, api_keys_file=cap_keys)
    with InferenceClient(base_url=url, api_key=CAPPED) as client, pytest.raises(HfHubHTTPError) as hub:
        client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=100)
    check_hub_refusal(hub.value, 422, "max_tokens: must be <= 16 for this key")
    with oai(url, CAPPED) as client:
        with pytest.raises(openai.UnprocessableEntityError) as from_openai:
            client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=100)
        with pytest.raises(openai.UnprocessableEntityError) as completion_tokens:
            client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_completion_tokens=17)
    assert from_openai.value.body == "max_tokens: must be <= 16 for this key"
    assert completion_tokens.value.body == "max_completion_tokens: must be <= 16 for this key"
    assert fake.requests == []
    with InferenceClient(base_url=url, api_key=CAPPED) as client:  # at the cap, and another key
        at_cap = client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=16)
    with InferenceClient(base_url=url, api_key=FREE) as client:
        free = client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=100)
    assert at_cap.choices[0].message.content == expected_chat(MESSAGES, 16)
    assert free.choices[0].message.content == expected_chat(MESSAGES, 100)
    assert [r.json["max_tokens"] for r in fake.requests] == [16, 100]


def test_cap_is_given_to_a_request_without_a_maximum(gateway: Callable[..., str], fake: FakeHF, cap_keys: str) -> None:
    """A chat without ``max_tokens`` (or with ``null``) reaches the upstream with the key's cap."""
    url = gateway(no_auth=False, api_keys_file=cap_keys)
    with InferenceClient(base_url=url, api_key=CAPPED) as client:
        out = client.chat_completion(MESSAGES, model=CHAT_MODEL)
    assert fake.last().json["max_tokens"] == 16 and fake.last().json["messages"] == MESSAGES
    assert out.choices[0].message.content == expected_chat(MESSAGES, 16) and out.choices[0].finish_reason == "length"
    with oai(url, CAPPED) as client:
        chunks = list(client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, stream=True))
    assert fake.last().json["max_tokens"] == 16 and len(chunks) == 16
    body = {"model": CHAT_MODEL, "messages": MESSAGES, "max_tokens": None}
    response = httpx.post(url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {CAPPED}"})
    assert response.status_code == 200 and fake.last().json["max_tokens"] == 16
    with InferenceClient(base_url=url, api_key=FREE) as client:  # no cap: nothing is added
        client.chat_completion(MESSAGES, model=CHAT_MODEL)
    assert "max_tokens" not in fake.last().json


def test_cap_counts_maxima_written_as_floats(gateway: Callable[..., str], fake: FakeHF, cap_keys: str) -> None:
    """``100.0`` and ``1e2`` are integers to JSON Schema (and to pydantic upstreams): over the cap they are refused.

    Before the fix, ``"max_completion_tokens": 100.0`` passed a cap of 16 (the gateway added ``max_tokens: 16``
    next to it, and an OpenAI-compatible upstream reads ``max_completion_tokens`` first).
    """
    url = gateway(no_auth=False, api_keys_file=cap_keys)
    headers = {"authorization": f"Bearer {CAPPED}", "content-type": "application/json"}
    messages = '[{"role": "user", "content": "hi"}]'
    for field, raw in (("max_completion_tokens", "100.0"), ("max_completion_tokens", "1e2"), ("max_tokens", "17.0")):
        body = f'{{"model": "{CHAT_MODEL}", "messages": {messages}, "{field}": {raw}}}'
        response = httpx.post(url + "/v1/chat/completions", content=body.encode(), headers=headers)
        assert (response.status_code, response.json()["error"]) == (422, f"{field}: must be <= 16 for this key")
    tgi = gateway("tgi", no_auth=False, api_keys_file=cap_keys)
    generate = b'{"inputs": "hello", "parameters": {"max_new_tokens": 64.0}}'
    response = httpx.post(tgi + "/generate", content=generate, headers=headers)
    assert response.json()["error"] == "parameters.max_new_tokens: must be <= 16 for this key"
    assert fake.requests == []
    body = f'{{"model": "{CHAT_MODEL}", "messages": {messages}, "max_completion_tokens": 1e1}}'
    response = httpx.post(url + "/v1/chat/completions", content=body.encode(), headers=headers)
    assert response.status_code == 200 and fake.last().json["max_completion_tokens"] == 10  # sent on as an int
    assert type(fake.last().json["max_completion_tokens"]) is int


def test_cap_refuses_a_long_prompt(gateway: Callable[..., str], fake: FakeHF, cap_keys: str) -> None:
    """A prompt over ``max_prompt_length`` characters: 422 naming ``messages`` (or ``inputs``)."""
    long = [{"role": "user", "content": "a" * 500}]
    message = "messages: the prompt is 500 characters, more than the 200 this key allows"
    url = gateway(no_auth=False, api_keys_file=cap_keys)
    with InferenceClient(base_url=url, api_key=CAPPED) as client, pytest.raises(HfHubHTTPError) as hub:
        client.chat_completion(long, model=CHAT_MODEL, max_tokens=4)
    check_hub_refusal(hub.value, 422, message)
    parts = [{"role": "user", "content": [{"type": "text", "text": "b" * 150}, {"type": "text", "text": "c" * 60}]}]
    with oai(url, CAPPED) as client, pytest.raises(openai.UnprocessableEntityError) as from_openai:
        client.chat.completions.create(model=CHAT_MODEL, messages=parts)  # type: ignore[arg-type]
    assert from_openai.value.body == "messages: the prompt is 210 characters, more than the 200 this key allows"
    tgi = gateway("tgi", no_auth=False, api_keys_file=cap_keys)
    with InferenceClient(base_url=tgi, api_key=CAPPED) as client, pytest.raises(ValidationError) as generation:
        client.text_generation("w" * 201, max_new_tokens=4)
    check_validation_error(generation.value, "inputs: the prompt is 201 characters, more than the 200 this key allows")
    assert fake.requests == []
    with InferenceClient(base_url=url, api_key=FREE) as client:
        client.chat_completion(long, model=CHAT_MODEL, max_tokens=4)
    assert len(fake.requests) == 1


def test_cap_on_tgi_text_generation(gateway: Callable[..., str], fake: FakeHF, cap_keys: str) -> None:
    """``max_new_tokens`` over the cap: ``ValidationError`` naming ``parameters.max_new_tokens``; absent, it is set."""
    url = gateway("tgi", no_auth=False, api_keys_file=cap_keys)
    with InferenceClient(base_url=url, api_key=CAPPED) as client:
        with pytest.raises(ValidationError) as err:
            client.text_generation(PROMPT, max_new_tokens=100)
        assert fake.requests == []
        text = client.text_generation(PROMPT)
        streamed = list(client.text_generation(PROMPT, stream=True))
    check_validation_error(err.value, "parameters.max_new_tokens: must be <= 16 for this key")
    assert text == expected_generation(PROMPT, 16) and len(streamed) == 16
    assert [r.json["parameters"]["max_new_tokens"] for r in fake.requests] == [16, 16]
    with InferenceClient(base_url=url + "/generate", api_key=CAPPED) as client, pytest.raises(ValidationError):
        client.text_generation(PROMPT, max_new_tokens=17)
    assert len(fake.requests) == 2


# --- HFASGI_VALIDATE=0 -----------------------------------------------------------------------------------


def test_validation_off_forwards_invalid_bodies(gateway: Callable[..., str], fake: FakeHF) -> None:
    """With ``validate=False`` the invalid bodies above reach the upstream, which decides for itself."""
    with InferenceClient(base_url=gateway("router", validate=False)) as client:
        out = client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=2, temperature="hot")  # type: ignore[arg-type]
    assert out.choices[0].message.content == expected_chat(MESSAGES, 2)
    assert fake.last().json["temperature"] == "hot"
    with InferenceClient(base_url=gateway("tgi", validate=False)) as client:
        assert client.text_generation(PROMPT, temperature=-1, max_new_tokens=2) == expected_generation(PROMPT, 2)
        with pytest.raises(ValidationError) as upstream:  # the fake's own TGI check, not ours
            client.text_generation(PROMPT, max_new_tokens=-3)
    assert str(upstream.value) == "Input validation error: `max_new_tokens` must be strictly positive"
    assert fake.requests[1].json["parameters"]["temperature"] == -1
    url = gateway("serverless", validate=False) + pipeline("automatic-speech-recognition")
    with InferenceClient(base_url=url) as client, pytest.raises(HfHubHTTPError) as err:
        client.automatic_speech_recognition(PNG)  # no sniffing either
    assert err.value.response.status_code == 404 and fake.last().body == PNG
    assert len(fake.requests) == 4
