"""Pytest fixtures shared by every tier (tests/ and examples/), loaded by the root ``conftest.py``.

* ``anyio_backend``: async tests run on asyncio (aiohttp, the forwarding client, is asyncio-only);
* ``_hub_online`` (autouse): real Hugging Face clients may reach 127.0.0.1 whatever the environment says;
* ``upstream`` (session): one :class:`~tests.upstream.FakeHF` served by uvicorn on a loopback port;
* ``fake``: that fake, cleared for the test (open gates released afterwards). Tests that count
  attempts or watch streams use a distinct ``x-fake-key``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.servers import serve
from tests.upstream.fake_hf import FakeHF

__all__ = ["Upstream"]


@dataclass(frozen=True)
class Upstream:
    """The session's fake upstream and its base URL."""

    fake: FakeHF
    url: str


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio."""
    return "asyncio"


@pytest.fixture(autouse=True, scope="session")
def _scratch_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Run the tests in a scratch folder: apps that keep files by default (``hfasgi-usage.db``) keep them there."""
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    try:
        yield
    finally:
        os.chdir(before)


@pytest.fixture(autouse=True)
def _hub_online(monkeypatch: pytest.MonkeyPatch) -> None:
    """``huggingface_hub`` reads ``HF_HUB_OFFLINE`` at import and then refuses every request, even to 127.0.0.1.

    Only upstream *servers* may run offline; a client process must not (docs/real_upstream.md §5).
    """
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    """One fake HF server for the whole session, on a real loopback socket."""
    fake = FakeHF()
    with serve(fake) as url:
        yield Upstream(fake, url)


@pytest.fixture
def fake(upstream: Upstream) -> Iterator[FakeHF]:
    """The session's fake, cleared for this test; open gates are released afterwards."""
    upstream.fake.clear()
    yield upstream.fake
    upstream.fake.release_all()
