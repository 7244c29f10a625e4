"""Shared fixtures: the anyio backend for async tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (aiohttp, the forwarding client, is asyncio-only)."""
    return "asyncio"
