"""The route table: which requests are inference operations, and what they are."""

from __future__ import annotations

import pytest

from hfasgi.context import get_context
from hfasgi.errors import GatewayError
from hfasgi.operations import Dialect, Operation, Route, Routes

ROUTES = Routes()


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v1/chat/completions", Operation(Route.CHAT, "chat-completion")),
        ("POST", "/v1/completions", Operation(Route.COMPLETIONS, "text-generation")),
        ("POST", "/v1/embeddings", Operation(Route.EMBEDDINGS, "feature-extraction")),
        ("GET", "/v1/models", Operation(Route.MODELS)),
        ("GET", "/v1/models/meta-llama/Llama-3.1-8B", Operation(Route.MODELS, None, "meta-llama/Llama-3.1-8B")),
        ("POST", "/models/gpt2", Operation(Route.TASK, None, "gpt2")),
        ("POST", "/models/org/name", Operation(Route.TASK, None, "org/name")),
        (
            "POST",
            "/models/org/name/pipeline/feature-extraction",
            Operation(Route.TASK, "feature-extraction", "org/name", task_forced=True),
        ),
        (
            "POST",
            "/pipeline/sentence-similarity/org/name",
            Operation(Route.TASK, "sentence-similarity", "org/name", task_forced=True),
        ),
        (
            "POST",
            "/models/meta-llama/Llama-3.1-8B-Instruct/v1/chat/completions",
            Operation(Route.CHAT, "chat-completion", "meta-llama/Llama-3.1-8B-Instruct"),
        ),
        (
            "POST",
            "/models/org/name:groq/v1/chat/completions",
            Operation(Route.CHAT, "chat-completion", "org/name:groq"),
        ),
        ("POST", "/generate", Operation(Route.GENERATE, "text-generation")),
        ("POST", "/generate_stream", Operation(Route.GENERATE_STREAM, "text-generation")),
        ("POST", "/", Operation(Route.COMPAT_GENERATE, "text-generation")),
        ("GET", "/info", Operation(Route.INFO)),
    ],
)
def test_inference_routes_are_recognised(method: str, path: str, expected: Operation) -> None:
    assert ROUTES.match(method, path) == expected


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/v1/chat/completions"),
        ("POST", "/v1/models"),
        ("GET", "/health"),
        ("GET", "/models/gpt2"),
        ("POST", "/items"),
        ("POST", "/v1/chat/completions/extra"),
        ("PUT", "/generate"),
    ],
)
def test_other_requests_are_not_ours(method: str, path: str) -> None:
    assert ROUTES.match(method, path) is None


@pytest.mark.parametrize(
    "path",
    [
        "/models/../admin",
        "/models/a//b",
        "/models/",
        "/models/org/name/",
        "/models/-bad",
        "/models/a b",
        "/models/" + "x" * 300,
        "/pipeline/Bad_Task/gpt2",
        "/pipeline/text-classification/",
    ],
)
def test_malformed_model_paths_are_refused_with_400(path: str) -> None:
    with pytest.raises(GatewayError) as info:
        ROUTES.match("POST", path)
    assert info.value.status == 400
    assert info.value.error_type == "invalid_request"


def test_dialects() -> None:
    assert ROUTES.match("POST", "/v1/chat/completions").dialect is Dialect.OPENAI  # type: ignore[union-attr]
    assert ROUTES.match("POST", "/generate").dialect is Dialect.TGI  # type: ignore[union-attr]
    assert ROUTES.match("POST", "/models/gpt2").dialect is Dialect.TASK  # type: ignore[union-attr]


def test_model_in_body_only_without_a_path_model() -> None:
    assert ROUTES.match("POST", "/v1/chat/completions").model_in_body  # type: ignore[union-attr]
    assert not ROUTES.match("POST", "/models/a/b/v1/chat/completions").model_in_body  # type: ignore[union-attr]
    assert not ROUTES.match("POST", "/generate").model_in_body  # type: ignore[union-attr]


def test_prefix() -> None:
    routes = Routes("/hf/")
    assert routes.prefix == "/hf"
    assert routes.match("POST", "/hf/v1/chat/completions") == Operation(Route.CHAT, "chat-completion")
    assert routes.match("POST", "/hf") == Operation(Route.COMPAT_GENERATE, "text-generation")
    assert routes.match("POST", "/hf/models/org/m") == Operation(Route.TASK, None, "org/m")
    assert routes.match("POST", "/v1/chat/completions") is None
    with pytest.raises(ValueError, match="must start with '/'"):
        Routes("hf")


def test_allowed_methods() -> None:
    assert ROUTES.allowed_methods("/v1/chat/completions") == ["POST"]
    assert ROUTES.allowed_methods("/v1/models") == ["GET"]
    assert ROUTES.allowed_methods("/models/gpt2") == ["POST"]
    assert ROUTES.allowed_methods("/") == ["POST"]
    assert ROUTES.allowed_methods("/elsewhere") == []


def test_recognition_happens_once_per_request() -> None:
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions"}
    first = ROUTES.recognize(scope)
    scope["path"] = "/generate"  # a later change of path does not re-route the request
    assert ROUTES.recognize(scope) is first
    assert get_context(scope).operation is first


def test_non_http_scopes_have_no_operation() -> None:
    assert ROUTES.recognize({"type": "websocket", "path": "/v1/chat/completions"}) is None
