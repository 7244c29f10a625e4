"""Answers the gateway gives itself, without an upstream: the catalog's model list and a TGI-style info."""

from __future__ import annotations

import json
from typing import Any

from hfasgi.catalog import ModelCatalog
from hfasgi.types import Send

__all__ = ["info_document", "models_document", "send_json"]


def models_document(catalog: ModelCatalog, only: str | None = None) -> dict[str, Any] | None:
    """The OpenAI ``/v1/models`` list of the catalog's models (one model when ``only`` is given)."""
    ids = list(catalog.models) or ([catalog.default_model] if catalog.default_model else [])
    entries = [
        {
            "id": model_id,
            "object": "model",
            "created": 0,
            "owned_by": catalog.resolve(model_id).upstream.name,
        }
        for model_id in ids
    ]
    if only is not None:
        return next((e for e in entries if e["id"] == only), None)
    return {"object": "list", "data": entries}


def info_document(catalog: ModelCatalog, version: str) -> dict[str, Any]:
    """A TGI ``Info`` for the default model (what ``InferenceClient.get_endpoint_info`` returns)."""
    model = catalog.default_model
    task = catalog.resolve(model).task if model else None
    return {
        "model_id": model or "hfasgi",
        "model_sha": None,
        "model_pipeline_tag": task,
        "max_concurrent_requests": 128,
        "max_best_of": 1,
        "max_stop_sequences": 4,
        "max_input_tokens": None,
        "max_total_tokens": None,
        "validation_workers": 1,
        "max_client_batch_size": 1,
        "router": "hfasgi",
        "version": version,
        "sha": None,
        "docker_label": None,
    }


async def send_json(send: Send, status: int, doc: Any) -> None:
    """Send ``doc`` as a complete JSON response."""
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
