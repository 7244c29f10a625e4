"""Where each operation goes on each kind of upstream (docs/hf_api.md §1-4)."""

from __future__ import annotations

import pytest

from hfasgi.errors import GatewayError
from hfasgi.forwarding.upstream import Upstream, UpstreamKind
from hfasgi.operations import Routes

ROUTES = Routes()
M = "org/model"


def call(kind: str, method: str, path: str, task: str | None = None) -> tuple[str, str | None]:
    upstream = Upstream(kind=UpstreamKind(kind), url="http://up:1/")
    op = ROUTES.match(method, path)
    assert op is not None
    result = upstream.call(op, M, task or op.task)
    return result.url, result.body_model


@pytest.mark.parametrize(
    ("kind", "method", "path", "task", "url", "body_model"),
    [
        ("router", "POST", "/v1/chat/completions", None, "http://up:1/v1/chat/completions", M),
        ("router", "POST", f"/models/{M}", "text-classification", f"http://up:1/hf-inference/models/{M}", None),
        (
            "router",
            "POST",
            f"/models/{M}",
            "feature-extraction",
            f"http://up:1/hf-inference/models/{M}/pipeline/feature-extraction",
            None,
        ),
        (
            "router",
            "POST",
            f"/pipeline/sentence-similarity/{M}",
            None,
            f"http://up:1/hf-inference/models/{M}/pipeline/sentence-similarity",
            None,
        ),
        ("router", "POST", "/", None, f"http://up:1/hf-inference/models/{M}", None),
        ("router", "GET", "/v1/models", None, "http://up:1/v1/models", None),
        ("serverless", "POST", "/v1/chat/completions", None, f"http://up:1/models/{M}/v1/chat/completions", M),
        ("serverless", "POST", f"/models/{M}", None, f"http://up:1/models/{M}", None),
        (
            "serverless",
            "POST",
            f"/models/{M}/pipeline/feature-extraction",
            None,
            f"http://up:1/pipeline/feature-extraction/{M}",
            None,
        ),
        ("tgi", "POST", "/generate", None, "http://up:1/generate", None),
        ("tgi", "POST", "/generate_stream", None, "http://up:1/generate_stream", None),
        ("tgi", "POST", "/", None, "http://up:1/", None),
        ("tgi", "POST", f"/models/{M}", None, "http://up:1/", None),
        ("tgi", "POST", "/v1/chat/completions", None, "http://up:1/v1/chat/completions", M),
        ("tgi", "POST", "/v1/completions", None, "http://up:1/v1/completions", M),
        ("tgi", "GET", "/info", None, "http://up:1/info", None),
        ("openai", "POST", "/v1/chat/completions", None, "http://up:1/v1/chat/completions", M),
        ("openai", "POST", "/v1/completions", None, "http://up:1/v1/completions", M),
        ("openai", "POST", "/v1/embeddings", None, "http://up:1/v1/embeddings", M),
        ("openai", "GET", "/v1/models", None, "http://up:1/v1/models", None),
    ],
)
def test_upstream_urls(kind: str, method: str, path: str, task: str | None, url: str, body_model: str | None) -> None:
    assert call(kind, method, path, task) == (url, body_model)


@pytest.mark.parametrize(
    ("kind", "method", "path"),
    [
        ("router", "POST", "/generate"),
        ("router", "POST", "/v1/embeddings"),
        ("serverless", "POST", "/generate_stream"),
        ("openai", "POST", f"/models/{M}"),
        ("openai", "POST", "/generate"),
        ("openai", "POST", "/"),
        ("tgi", "POST", "/v1/embeddings"),
    ],
)
def test_unsupported_combinations_are_a_clear_400(kind: str, method: str, path: str) -> None:
    with pytest.raises(GatewayError) as info:
        call(kind, method, path)
    assert (info.value.status, info.value.error_type) == (400, "unsupported_operation")
    assert kind in info.value.message


def test_openai_base_urls_may_end_in_v1() -> None:
    assert Upstream(kind=UpstreamKind.OPENAI, url="http://h:8000/v1/").base == "http://h:8000"


@pytest.mark.parametrize("url", ["ftp://x", "localhost:8000", "http://"])
def test_bad_upstream_urls_fail_at_construction(url: str) -> None:
    with pytest.raises(ValueError, match="http\\(s\\) URL"):
        Upstream(url=url)
