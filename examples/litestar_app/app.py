"""A small notes service (its own routes and lifespan) that also serves a Hugging Face gateway under ``/hf``.

Run it from the repository root::

    HFASGI_UPSTREAM_URL=http://127.0.0.1:8080 HFASGI_UPSTREAM_KIND=tgi HFASGI_API_KEYS_FILE=keys.toml \\
        uvicorn --factory examples.litestar_app.app:create_app

The gateway is configured from the environment like ``hfasgi serve`` (``HFASGI_UPSTREAM_URL``,
``HFASGI_UPSTREAM_KIND``, ``HF_TOKEN``, the keys and limits ``HFASGI_API_KEYS_FILE``,
``HFASGI_RATE_LIMIT``, ``HFASGI_TOKEN_LIMIT``, ``HFASGI_REDIS_URL``, ... see :mod:`hfasgi.settings`) and
added by one plugin.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from litestar import Litestar, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, JSONBody

from hfasgi.app import build_catalog, layers_from_settings
from hfasgi.contrib.litestar import HFPlugin
from hfasgi.forwarding.forwarder import ForwarderConfig
from hfasgi.operations import Routes
from hfasgi.settings import Settings

__all__ = ["GATEWAY_PREFIX", "create_app"]

GATEWAY_PREFIX = "/hf"
"""Where the gateway lives: clients use ``http://host:port/hf`` (HF) or ``http://host:port/hf/v1`` (OpenAI)."""


@dataclass
class NoteIn:
    text: str


@dataclass
class Note:
    id: int
    text: str


def create_app(environ: Mapping[str, str] | None = None) -> Litestar:
    """The notes app with the gateway plugin (settings from ``environ``, by default the process environment)."""
    settings = Settings.load(environ=environ)
    gateway = ForwarderConfig(
        catalog=build_catalog(settings), routes=Routes(GATEWAY_PREFIX), max_body_bytes=settings.max_body_bytes
    )
    notes: dict[int, Note] = {}
    events: list[str] = []

    async def startup() -> None:
        events.append("startup")  # the app's own lifespan hooks keep running next to the plugin's

    async def shutdown() -> None:
        events.append("shutdown")

    @get("/status")
    async def status() -> dict[str, object]:
        return {"ready": events == ["startup"], "notes": len(notes), "gateway_open": gateway.pool.is_open}

    @post("/notes")
    async def add_note(data: JSONBody[NoteIn]) -> Note:
        created = notes[len(notes) + 1] = Note(id=len(notes) + 1, text=data.text)
        return created

    @get("/notes/{note_id:int}")
    async def get_note(note_id: FromPath[int]) -> Note:
        if note_id not in notes:
            raise NotFoundException(f"no note {note_id}")
        return notes[note_id]

    return Litestar(
        route_handlers=[status, add_note, get_note],
        on_startup=[startup],
        on_shutdown=[shutdown],
        plugins=[HFPlugin(layers_from_settings(settings, gateway))],  # at GATEWAY_PREFIX; stores open at startup
        state=State({"events": events, "gateway": gateway}),
    )
