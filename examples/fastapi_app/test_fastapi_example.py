"""The FastAPI example on a real socket: real HF and OpenAI clients reach the fake upstream through
``/hf``, while the app's own routes and lifespan behave exactly as they did before ``install``."""

from __future__ import annotations

import httpx
import pytest

from examples._checks import (
    Upstream,
    check_environment,
    check_huggingface_hub,
    check_keys_and_limits,
    check_lifespan,
    check_openai,
    environment,
)
from examples.fastapi_app.app import create_app
from tests.servers import serve
from tests.upstream import FakeHF

pytestmark = pytest.mark.socket


def test_hf_and_openai_clients_use_the_gateway_under_hf(upstream: Upstream, fake: FakeHF) -> None:
    with serve(create_app(environment(upstream))) as base:
        check_huggingface_hub(base, fake)
        check_openai(base, fake)
        check_keys_and_limits(base, fake)


def test_its_own_routes_are_untouched(upstream: Upstream) -> None:
    with serve(create_app(environment(upstream))) as base, httpx.Client(base_url=base) as client:
        created = client.post("/notes", json={"text": "buy milk"})
        fetched = client.get("/notes/1")
        missing = client.get("/notes/99")
        invalid = client.post("/notes", json={"txt": "typo"})
    assert (created.status_code, created.json()) == (201, {"id": 1, "text": "buy milk"})
    assert fetched.json() == {"id": 1, "text": "buy milk"}
    assert (missing.status_code, missing.json()) == (404, {"detail": "no note 99"})  # FastAPI's shape, not ours
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == ["body", "text"]
    assert "x-request-id" in created.headers  # the layers are app-wide middleware: they see every request


def test_its_lifespan_still_runs_and_opens_the_gateway(upstream: Upstream) -> None:
    check_lifespan(create_app, upstream)


def test_without_arguments_it_reads_the_process_environment(
    upstream: Upstream, fake: FakeHF, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_environment(create_app, upstream, fake, monkeypatch)
