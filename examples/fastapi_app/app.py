"""A small notes service (its own routes and lifespan) that also serves a Hugging Face gateway under ``/hf``.

Run it from the repository root::

    HFASGI_UPSTREAM_URL=http://127.0.0.1:8080 HFASGI_UPSTREAM_KIND=tgi HFASGI_API_KEYS_FILE=keys.toml \\
        uvicorn --factory examples.fastapi_app.app:create_app

The gateway is configured from the environment like ``hfasgi serve`` (``HFASGI_UPSTREAM_URL``,
``HFASGI_UPSTREAM_KIND``, ``HF_TOKEN``, the keys and limits ``HFASGI_API_KEYS_FILE``,
``HFASGI_RATE_LIMIT``, ``HFASGI_TOKEN_LIMIT``, ``HFASGI_REDIS_URL``, ... see :mod:`hfasgi.settings`); the
app's own code does not change, apart from the one ``install`` call.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from hfasgi.app import build_catalog, layers_from_settings
from hfasgi.contrib.fastapi import install
from hfasgi.forwarding.forwarder import ForwarderConfig
from hfasgi.operations import Routes
from hfasgi.settings import Settings

__all__ = ["GATEWAY_PREFIX", "create_app"]

GATEWAY_PREFIX = "/hf"
"""Where the gateway lives: clients use ``http://host:port/hf`` (HF) or ``http://host:port/hf/v1`` (OpenAI)."""


class NoteIn(BaseModel):
    text: str


class Note(NoteIn):
    id: int


def create_app(environ: Mapping[str, str] | None = None) -> FastAPI:
    """The notes app with the gateway installed (settings from ``environ``, by default the process environment)."""
    settings = Settings.load(environ=environ)
    gateway = ForwarderConfig(
        catalog=build_catalog(settings), routes=Routes(GATEWAY_PREFIX), max_body_bytes=settings.max_body_bytes
    )
    notes: dict[int, Note] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.events.append("startup")  # the app's own lifespan keeps running with the gateway installed
        yield
        app.state.events.append("shutdown")

    app = FastAPI(title="notes", lifespan=lifespan)
    app.state.events = []
    app.state.gateway = gateway

    @app.get("/status")
    async def status() -> dict[str, object]:
        return {"ready": app.state.events == ["startup"], "notes": len(notes), "gateway_open": gateway.pool.is_open}

    @app.post("/notes", status_code=201)
    async def add_note(note: NoteIn) -> Note:
        created = notes[len(notes) + 1] = Note(id=len(notes) + 1, text=note.text)
        return created

    @app.get("/notes/{note_id}")
    async def get_note(note_id: int) -> Note:
        if note_id not in notes:
            raise HTTPException(404, f"no note {note_id}")
        return notes[note_id]

    install(app, layers_from_settings(settings, gateway))  # keys, limits, forwarder; stores open with the app
    return app
