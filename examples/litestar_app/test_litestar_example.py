"""The Litestar example on a real socket: real HF and OpenAI clients reach the fake upstream through
the plugin's ``/hf`` mount, while the app's own routes and lifespan hooks behave as they did before."""

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
from examples.litestar_app.app import create_app
from tests.servers import serve
from tests.upstream import FakeHF

pytestmark = pytest.mark.socket


def test_hf_and_openai_clients_use_the_gateway_under_hf(upstream: Upstream, fake: FakeHF) -> None:
    with serve(create_app(environment(upstream))) as base:
        check_huggingface_hub(base, fake)
        check_openai(base, fake)
        check_keys_and_limits(base, fake)
        not_ours = httpx.post(f"{base}/hf/not/a/route", json={})
    assert not_ours.status_code == 404 and not_ours.json()["error_type"] == "not_found"  # the gateway's envelope


def test_its_own_routes_are_untouched(upstream: Upstream) -> None:
    with serve(create_app(environment(upstream))) as base, httpx.Client(base_url=base) as client:
        created = client.post("/notes", json={"text": "buy milk"})
        fetched = client.get("/notes/1")
        missing = client.get("/notes/99")
        invalid = client.post("/notes", json={"txt": "typo"})
    assert (created.status_code, created.json()) == (201, {"id": 1, "text": "buy milk"})
    assert fetched.json() == {"id": 1, "text": "buy milk"}
    assert (missing.status_code, missing.json()) == (404, {"status_code": 404, "detail": "no note 99"})  # Litestar's
    assert invalid.status_code == 400 and "Validation failed" in invalid.json()["detail"]
    assert "x-request-id" not in created.headers  # the plugin mounts the layers at /hf only


def test_its_lifespan_still_runs_and_opens_the_gateway(upstream: Upstream) -> None:
    check_lifespan(create_app, upstream)


def test_without_arguments_it_reads_the_process_environment(
    upstream: Upstream, fake: FakeHF, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_environment(create_app, upstream, fake, monkeypatch)
