"""``GET /health``: liveness plus whether the upstreams answer; 503 in TGI's shape when none does."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from hfasgi.app import create_app
from hfasgi.settings import Settings
from tests.e2e.conftest import Upstream
from tests.upstream import FakeHF, dropping_server

pytestmark = pytest.mark.anyio


async def health(settings: Settings) -> httpx.Response:
    """``GET /health`` once the background probes have judged every upstream (bounded wait, no timing asserted)."""
    settings = dataclasses.replace(settings, health_interval=0.2)
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                response = await client.get("/health")
                judged = "unknown" not in response.json()["provider_status"].values()
                if judged or asyncio.get_running_loop().time() > deadline:
                    return response
                await asyncio.sleep(0.02)


@pytest.mark.parametrize("kind", ["tgi", "openai", "router"])
async def test_healthy_when_the_upstream_answers(upstream: Upstream, fake: FakeHF, kind: str) -> None:
    response = await health(Settings(upstream_url=upstream.url, upstream_kind=kind, no_auth=True))
    assert response.status_code == 200
    doc = response.json()
    assert doc["status"] == "healthy"
    assert doc["provider_status"] == {"default": "healthy"}
    expected_path = "/" if kind == "router" else "/health"
    # the session's fake is shared: an app of an earlier test may still be probing it, so look for this one's
    probes = [p for p in fake.probes if p.method == "GET" and p.path == expected_path]
    assert probes and all(p.headers["user-agent"].startswith("hfasgi-health/") for p in probes)
    assert not any(r.headers.get("user-agent", "").startswith("hfasgi-health/") for r in fake.requests)


async def test_unhealthy_is_a_503_that_hf_clients_can_read() -> None:
    with dropping_server() as url:
        response = await health(Settings(upstream_url=url, upstream_kind="tgi", no_auth=True))
    assert response.status_code == 503
    doc = response.json()
    assert (doc["error"], doc["error_type"], doc["status"]) == ("unhealthy", "healthcheck", "unhealthy")
    assert doc["provider_status"] == {"default": "unhealthy"}


async def test_degraded_when_only_some_upstreams_answer(upstream: Upstream, fake: FakeHF, tmp_path: Path) -> None:
    with dropping_server() as dead:
        catalog = tmp_path / "models.toml"
        catalog.write_text(f'[upstreams.spare]\nkind = "tgi"\nurl = "{dead}"\n')
        response = await health(
            Settings(upstream_url=upstream.url, upstream_kind="tgi", models_file=str(catalog), no_auth=True)
        )
    assert response.status_code == 200
    doc = response.json()
    assert doc["status"] == "degraded"
    assert doc["provider_status"] == {"default": "healthy", "spare": "unhealthy"}
