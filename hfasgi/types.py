"""ASGI type aliases shared by every layer.

The boundary types are deliberately permissive (``Any`` scope, ``ASGIApp`` taking ``Any``) so that
one class registers cleanly, under ``mypy --strict``, in Starlette, FastAPI, Litestar and plain ASGI
(Litestar's ``Scope`` is a union of TypedDicts, not a ``MutableMapping``). Narrow once inside.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["ASGIApp", "Headers", "Message", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
