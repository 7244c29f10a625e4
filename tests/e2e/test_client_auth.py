"""Authentication seen through real clients: ``huggingface_hub`` and ``openai`` against the gateway with keys on.

What a caller is shown matters as much as the status: ``InferenceClient`` puts the envelope's ``error`` after
its own first line (``str(exc)``); its ``text_generation`` turns any ``{"error", "error_type"}`` answer into a
typed ``TextGenerationError`` whose ``str`` is our message alone, chained from the ``HfHubHTTPError`` that
carries the status. ``openai`` shows only ``"Error code: 401"`` in ``str(exc)``; our message is ``exc.body``
(it unwraps the envelope's ``error`` string) and the whole envelope is ``exc.response.json()``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError, TextGenerationError

from hfasgi.auth import KeyRecord, write_key_file
from tests.e2e.clients import CHAT_MODEL, MESSAGES, PROMPT
from tests.e2e.conftest import SERVER_TOKEN
from tests.upstream import FakeHF, expected_chat, expected_generation, expected_text_classification

pytestmark = [pytest.mark.socket, pytest.mark.usefixtures("no_ambient_hf_token")]

ALICE = "hfasgi_test_alice_key_0123456789abcdef"
BOB = "hfasgi_test_bob_key_fedcba9876543210"
WRONG = "hfasgi_test_not_a_registered_key"
UNRELATED_HF_TOKEN = "hf_unrelated_token_of_the_user"
"""What ``huggingface_hub`` users often have in ``Authorization`` anyway (their own ``HF_TOKEN``)."""
AUTH: dict[str, Any] = {"no_auth": False, "api_keys": f"alice={ALICE},bob={BOB}"}
"""Gateway settings with two keys from ``HFASGI_API_KEYS``."""

MISSING_MESSAGE = "Missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"
INVALID_MESSAGE = "Invalid API key"
TEXT = "Alice met Bob in Paris yesterday"
TG_MODEL = "fake/text-generation"
TC_MODEL = "fake/text-classification"
FE_MODEL = "fake/feature-extraction"


# --- InferenceClient ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HubCall:
    """One ``InferenceClient`` method: where the client points (relative to the gateway) and the call."""

    name: str
    path: str
    call: Callable[[InferenceClient], Any]
    expected: Any

    def client(self, gateway_url: str, **options: Any) -> InferenceClient:
        if self.path:
            return InferenceClient(model=gateway_url + self.path, **options)
        return InferenceClient(base_url=gateway_url, **options)


HUB_CALLS = [
    HubCall(
        "chat_completion",
        "",
        lambda c: c.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=3).choices[0].message.content,
        expected_chat(MESSAGES, 3),
    ),
    HubCall(
        "text_generation",
        f"/models/{TG_MODEL}",
        lambda c: c.text_generation(PROMPT, max_new_tokens=3),
        expected_generation(PROMPT, 3),
    ),
    HubCall(
        "text_classification",
        f"/models/{TC_MODEL}",
        lambda c: [(e.label, e.score) for e in c.text_classification(TEXT)],
        [(e["label"], e["score"]) for e in expected_text_classification(TEXT)],
    ),
]
hub_calls = pytest.mark.parametrize("case", HUB_CALLS, ids=[c.name for c in HUB_CALLS])


def http_error(exc: BaseException) -> HfHubHTTPError:
    """The ``HfHubHTTPError`` behind what a hub client raised (``text_generation`` chains it)."""
    if isinstance(exc, TextGenerationError):
        assert isinstance(exc.__cause__, HfHubHTTPError), repr(exc.__cause__)
        return exc.__cause__
    assert isinstance(exc, HfHubHTTPError), repr(exc)
    return exc


HUB_HEADLINES = {401: "Client error '401 Unauthorized' for url", 403: "403 Forbidden: "}
"""What ``huggingface_hub`` writes before the server's message, by status (hf_api.md §5.6)."""


def check_hub_refusal(exc: BaseException, status: int, message: str, error_type: str) -> None:
    """What the client shows for a refusal: our message in ``str(exc)``, the status on the HTTP error."""
    cause = http_error(exc)
    assert cause.response is not None and cause.response.status_code == status
    assert cause.response.json() == {"error": message, "error_type": error_type}
    if isinstance(exc, TextGenerationError):  # text_generation shows our message alone
        assert str(exc) == message
    elif status == 403:  # HFH writes "403 Forbidden: <X-Error-Message>." and reads no body message then
        shown = str(exc)
        assert f"403 Forbidden: {message}.\n" in shown, shown
    else:  # HFH's first line, then our message last
        shown = str(exc)
        assert shown.endswith(f"\n{message}") and HUB_HEADLINES[status] in shown, shown


@hub_calls
def test_inference_client_without_key_gets_401(gateway: Callable[..., str], fake: FakeHF, case: HubCall) -> None:
    """No key at all: 401 with the "Missing API key" explanation, and nothing reaches the upstream."""
    with case.client(gateway(**AUTH)) as client, pytest.raises((HfHubHTTPError, TextGenerationError)) as info:
        case.call(client)
    check_hub_refusal(info.value, 401, MISSING_MESSAGE, "authentication")
    assert fake.requests == []


@hub_calls
def test_inference_client_with_wrong_key_gets_401(gateway: Callable[..., str], fake: FakeHF, case: HubCall) -> None:
    """An unknown key: 401 "Invalid API key"."""
    with (
        case.client(gateway(**AUTH), api_key=WRONG) as client,
        pytest.raises((HfHubHTTPError, TextGenerationError)) as info,
    ):
        case.call(client)
    check_hub_refusal(info.value, 401, INVALID_MESSAGE, "authentication")
    assert fake.requests == []


@hub_calls
def test_inference_client_with_api_key(gateway: Callable[..., str], fake: FakeHF, case: HubCall) -> None:
    """``api_key=`` (``Authorization: Bearer``): served, and upstream sees the gateway's token, not the key."""
    with case.client(gateway(**AUTH), api_key=ALICE) as client:
        assert case.call(client) == case.expected
    sent = fake.last()
    assert sent.headers["authorization"] == f"Bearer {SERVER_TOKEN}" and "x-api-key" not in sent.headers


@hub_calls
def test_inference_client_with_x_api_key_next_to_an_unrelated_token(
    gateway: Callable[..., str], fake: FakeHF, case: HubCall
) -> None:
    """``x-api-key`` wins over an ``Authorization`` that holds the user's own HF token; neither goes upstream."""
    with case.client(gateway(**AUTH), api_key=UNRELATED_HF_TOKEN, headers={"x-api-key": BOB}) as client:
        assert case.call(client) == case.expected
    sent = fake.last()
    assert sent.headers["authorization"] == f"Bearer {SERVER_TOKEN}" and "x-api-key" not in sent.headers
    assert UNRELATED_HF_TOKEN not in repr(sent) and BOB not in repr(sent)


def test_x_api_key_wins_even_when_the_bearer_is_valid(gateway: Callable[..., str], fake: FakeHF) -> None:
    """A wrong ``x-api-key`` is refused although ``Authorization`` holds a good key: ``x-api-key`` is the key."""
    with (
        InferenceClient(base_url=gateway(**AUTH), api_key=ALICE, headers={"x-api-key": WRONG}) as client,
        pytest.raises(HfHubHTTPError) as info,
    ):
        client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=2)
    check_hub_refusal(info.value, 401, INVALID_MESSAGE, "authentication")
    assert fake.requests == []


def test_inference_client_with_bearer_colon_form(gateway: Callable[..., str], fake: FakeHF) -> None:
    """The ``Bearer: <key>`` form of the HF task docs (hf_api.md §1.1) is accepted too."""
    with InferenceClient(base_url=gateway(**AUTH), headers={"Authorization": f"Bearer: {ALICE}"}) as client:
        out = client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=2)
    assert out.choices[0].message.content == expected_chat(MESSAGES, 2)
    assert fake.last().headers["authorization"] == f"Bearer {SERVER_TOKEN}"


# --- openai ---------------------------------------------------------------------------------------


def oai(url: str, key: str | None) -> openai.OpenAI:
    """An OpenAI client on the gateway; ``key=None`` sends no ``Authorization`` at all (see :func:`no_auth`)."""
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key or "unused", max_retries=0)


def no_auth(key: str | None) -> dict[str, Any]:
    """``extra_headers`` that drop the ``Authorization`` header when there is no key (openai insists on one)."""
    return {} if key else {"Authorization": openai.omit}


OPENAI_CALLS: dict[str, Callable[[openai.OpenAI, dict[str, Any]], Any]] = {
    "chat": lambda c, h: c.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=2, extra_headers=h),
    "embeddings": lambda c, h: c.embeddings.create(model=FE_MODEL, input="hello", extra_headers=h),
}


@pytest.mark.parametrize(("key", "message"), [(None, MISSING_MESSAGE), (WRONG, INVALID_MESSAGE)], ids=["none", "wrong"])
@pytest.mark.parametrize("call", OPENAI_CALLS)
def test_openai_refused_without_a_valid_key(
    gateway: Callable[..., str], fake: FakeHF, call: str, key: str | None, message: str
) -> None:
    """``openai.AuthenticationError``: ``str(exc)`` is only "Error code: 401"; our message is ``exc.body``."""
    with oai(gateway(**AUTH), key) as client, pytest.raises(openai.AuthenticationError) as info:
        OPENAI_CALLS[call](client, no_auth(key))
    exc = info.value
    assert exc.status_code == 401 and str(exc) == "Error code: 401"
    assert exc.body == message
    assert exc.response.json() == {"error": message, "error_type": "authentication"}
    assert exc.response.headers["www-authenticate"].startswith("Bearer ")
    assert fake.requests == []


def test_openai_with_a_good_key(gateway: Callable[..., str], fake: FakeHF) -> None:
    """Chat and embeddings with ``api_key=`` (on an OpenAI-compatible upstream, which serves embeddings)."""
    with oai(gateway("openai", **AUTH), ALICE) as client:
        chat = client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, max_tokens=2)
        assert fake.last().headers["authorization"] == f"Bearer {SERVER_TOKEN}"
        embedding = client.embeddings.create(model=FE_MODEL, input="hello", encoding_format="float")
    assert chat.choices[0].message.content == expected_chat(MESSAGES, 2)
    assert len(embedding.data) == 1 and len(embedding.data[0].embedding) > 0
    assert all(ALICE not in repr(r) for r in fake.requests) and len(fake.requests) == 2


# --- the 401 challenge and open routes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "challenge", "message"),
    [
        ({}, 'Bearer realm="hfasgi"', MISSING_MESSAGE),
        ({"authorization": f"Bearer {WRONG}"}, 'Bearer realm="hfasgi", error="invalid_token"', INVALID_MESSAGE),
        ({"x-api-key": WRONG}, 'Bearer realm="hfasgi", error="invalid_token"', INVALID_MESSAGE),
        ({"authorization": f"Basic {ALICE}"}, 'Bearer realm="hfasgi"', MISSING_MESSAGE),
    ],
    ids=["missing", "wrong-bearer", "wrong-x-api-key", "not-bearer"],
)
def test_401_carries_www_authenticate(
    gateway: Callable[..., str], fake: FakeHF, headers: dict[str, str], challenge: str, message: str
) -> None:
    """Every 401 names the scheme (RFC 9110 §11.6.1); a bad key adds ``error="invalid_token"`` (RFC 6750)."""
    body = {"model": CHAT_MODEL, "messages": MESSAGES}
    response = httpx.post(f"{gateway(**AUTH)}/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == challenge
    assert response.json() == {"error": message, "error_type": "authentication"}
    assert fake.requests == []


def test_options_and_health_need_no_key(gateway: Callable[..., str]) -> None:
    """CORS preflights (``OPTIONS``) and ``/health`` are answered without a key; inference next to them is not."""
    url = gateway(**AUTH)
    with httpx.Client(base_url=url) as client:
        preflight = client.options(
            "/v1/chat/completions",
            headers={"origin": "https://app.example", "access-control-request-method": "POST"},
        )
        health = client.get("/health")
        refused = client.get("/v1/models/org/name")
    assert preflight.status_code != 401 and "www-authenticate" not in preflight.headers
    assert health.status_code == 200 and health.json()["status"] == "healthy"
    assert refused.status_code == 401


# --- scoped keys from a key file ------------------------------------------------------------------

ALLOWED_MODEL = "org/allowed-chat"
OTHER_MODEL = "org/other-model"
SCOPED = "hfasgi_test_scoped_chat_only_key_42"
OPEN = "hfasgi_test_unscoped_key_in_the_same_file"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """A TOML key file: a key limited to ``org/allowed-*`` chat, and an unrestricted one."""
    path = tmp_path / "keys.toml"
    write_key_file(
        path,
        [
            KeyRecord.for_key("chat-only", SCOPED, models=("org/allowed-*",), tasks=("chat-completion",)),
            KeyRecord.for_key("anything", OPEN),
        ],
    )
    return path


def test_scoped_key_may_use_its_models(gateway: Callable[..., str], fake: FakeHF, key_file: Path) -> None:
    """A model matching the key's pattern, for the key's task, through both clients."""
    url = gateway(no_auth=False, api_keys_file=str(key_file))
    with InferenceClient(base_url=url, api_key=SCOPED) as client:
        out = client.chat_completion(MESSAGES, model=ALLOWED_MODEL, max_tokens=2)
    with InferenceClient(base_url=f"{url}/models/{ALLOWED_MODEL}", api_key=SCOPED) as client:
        scoped_url = client.chat_completion(MESSAGES, max_tokens=2)
    with oai(url, SCOPED) as client:
        chat = client.chat.completions.create(model=ALLOWED_MODEL, messages=MESSAGES, max_tokens=2)
    assert out.model == scoped_url.model == chat.model == ALLOWED_MODEL
    assert [r.json["model"] for r in fake.requests] == [ALLOWED_MODEL] * 3


def test_scoped_key_refused_other_models(gateway: Callable[..., str], fake: FakeHF, key_file: Path) -> None:
    """Another model: 403 ``permission`` naming the model, wherever the model is given (body or URL)."""
    url = gateway(no_auth=False, api_keys_file=str(key_file))
    message = f"This key may not use model {OTHER_MODEL!r}"
    with InferenceClient(base_url=url, api_key=SCOPED) as client, pytest.raises(HfHubHTTPError) as in_body:
        client.chat_completion(MESSAGES, model=OTHER_MODEL, max_tokens=2)
    check_hub_refusal(in_body.value, 403, message, "permission")
    with (
        InferenceClient(base_url=f"{url}/models/{OTHER_MODEL}", api_key=SCOPED) as client,
        pytest.raises(HfHubHTTPError) as in_url,
    ):
        client.chat_completion(MESSAGES, max_tokens=2)
    check_hub_refusal(in_url.value, 403, message, "permission")
    with oai(url, SCOPED) as client, pytest.raises(openai.PermissionDeniedError) as from_openai:
        client.chat.completions.create(model=OTHER_MODEL, messages=MESSAGES, max_tokens=2)
    assert from_openai.value.status_code == 403 and from_openai.value.body == message
    assert str(from_openai.value) == "Error code: 403"
    assert fake.requests == []
    with InferenceClient(base_url=url, api_key=OPEN) as client:  # the same request with an unscoped key
        assert client.chat_completion(MESSAGES, model=OTHER_MODEL, max_tokens=2).model == OTHER_MODEL


def test_scoped_key_refused_other_tasks(gateway: Callable[..., str], fake: FakeHF, key_file: Path) -> None:
    """A task outside the key's tasks (feature extraction with a chat-only key): 403 naming the task."""
    url = gateway(no_auth=False, api_keys_file=str(key_file))
    message = "This key may not use task 'feature-extraction'"
    pipeline = f"{url}/models/{ALLOWED_MODEL}/pipeline/feature-extraction"
    with InferenceClient(model=pipeline, api_key=SCOPED) as client, pytest.raises(HfHubHTTPError) as hub:
        client.feature_extraction("hello")
    check_hub_refusal(hub.value, 403, message, "permission")
    with oai(url, SCOPED) as client, pytest.raises(openai.PermissionDeniedError) as from_openai:
        client.embeddings.create(model=ALLOWED_MODEL, input="hello")
    assert from_openai.value.status_code == 403 and from_openai.value.body == message
    with (  # a task route whose task is unknown is refused too
        InferenceClient(model=f"{url}/models/{ALLOWED_MODEL}", api_key=SCOPED) as client,
        pytest.raises(TextGenerationError) as generation,
    ):
        client.text_generation(PROMPT, max_new_tokens=2)
    check_hub_refusal(generation.value, 403, "This key may not use this route (its task is unknown)", "permission")
    assert fake.requests == []


# --- revocation -----------------------------------------------------------------------------------


def poll_status(call: Callable[[], int], wanted: int, timeout: float = 5.0) -> Iterator[int]:
    """Statuses of ``call()`` until one is ``wanted`` (yielded last); ``TimeoutError`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        status = call()
        yield status
        if status == wanted:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"still {status} after {timeout}s, expected {wanted}")
        time.sleep(0.05)


def test_revoked_key_is_refused_by_the_running_gateway(
    gateway: Callable[..., str], fake: FakeHF, tmp_path: Path
) -> None:
    """``write_key_file`` with the record revoked: the served gateway refuses the key within about a second."""
    path = tmp_path / "keys.toml"
    doomed = KeyRecord.for_key("doomed", SCOPED)
    survivor = KeyRecord.for_key("survivor", OPEN)
    write_key_file(path, [doomed, survivor])
    url = gateway(no_auth=False, api_keys_file=str(path))

    def chat(key: str) -> int:
        body = {"model": CHAT_MODEL, "messages": MESSAGES, "max_tokens": 1}
        headers = {"authorization": f"Bearer {key}"}
        return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers).status_code

    assert chat(SCOPED) == 200
    write_key_file(path, [doomed.revoke(), survivor])
    statuses = list(poll_status(lambda: chat(SCOPED), 401))
    assert set(statuses) <= {200, 401}  # served until the file was re-read, refused from then on
    with InferenceClient(base_url=url, api_key=SCOPED) as client, pytest.raises(HfHubHTTPError) as info:
        client.chat_completion(MESSAGES, model=CHAT_MODEL, max_tokens=1)
    check_hub_refusal(info.value, 401, INVALID_MESSAGE, "authentication")
    assert chat(OPEN) == 200  # the other key of the file is untouched
