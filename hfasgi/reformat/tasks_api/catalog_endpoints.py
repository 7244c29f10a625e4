"""The provider task API's model endpoints, answered from the catalog: ``GET models`` and ``POST models/map``.

:class:`~hfasgi.reformat.tasks_api.TasksAPI` marks these requests (``Route.TASK_MODELS``,
``Route.TASK_MODEL_MAP``) so the inner layers authenticate them; the layer that answers locally calls
:func:`send_models` and :func:`map_model`. ``task_type`` is an HF task (``chat-completion``,
``feature-extraction``, ...); the provider names ``conversational`` and ``embedding`` are taken as
those two.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

from hfasgi.body import read_body
from hfasgi.catalog import PLACEHOLDER_MODELS, CatalogWriteError, ModelCatalog, ModelEntry
from hfasgi.context import get_context
from hfasgi.errors import ErrorType, GatewayError
from hfasgi.forwarding.local import send_json
from hfasgi.forwarding.upstream import UpstreamKind
from hfasgi.operations import is_model_id
from hfasgi.reformat.tasks_api.shapes import check_knobs, hf_task
from hfasgi.types import Receive, Scope, Send

__all__ = ["MAP_BODY_LIMIT", "map_model", "send_models"]

MAP_BODY_LIMIT = 64 * 1024
"""The largest ``models/map`` body accepted (a mapping is a few hundred bytes)."""

_TASK = re.compile(r"[a-z][a-z0-9\-]{0,63}")
_MAP_FIELDS = frozenset({"provider_model_id", "hub_model_id", "task_type", "parameters", "upstream"})
_URL_KINDS = (UpstreamKind.ROUTER, UpstreamKind.SERVERLESS)
"""Upstreams that put the model id into their URLs: a hub id there must be a safe id."""


def _bad(message: str) -> GatewayError:
    return GatewayError(400, ErrorType.INVALID_REQUEST, message)


async def send_models(scope: Scope, send: Send, catalog: ModelCatalog, query_string: bytes) -> None:
    """Answer ``GET {prefix}models[?task_type=...]``: the catalog's models, optionally of some task types.

    ``{"models": [{"model_id", "hub_model_id", "task_type"}], "count", "task_types"}``; ``count`` counts
    the models listed, ``task_types`` are those of every model (what a filter can name). The default
    model is listed too when the catalog does not list it (its task is then unknown: ``null``).
    """
    wanted = _task_filter(query_string)
    rows = [
        {"model_id": entry.id, "hub_model_id": entry.upstream_model or entry.id, "task_type": entry.task}
        for entry in catalog.models.values()
    ]
    default = catalog.default_model
    if default is not None and catalog.entry(default) is None:
        rows.insert(0, {"model_id": default, "hub_model_id": default, "task_type": None})
    task_types = sorted({row["task_type"] for row in rows if row["task_type"] is not None})
    if wanted:
        rows = [row for row in rows if row["task_type"] in wanted]
    await send_json(send, 200, {"models": rows, "count": len(rows), "task_types": task_types})


def _task_filter(query_string: bytes) -> set[str]:
    try:
        query = parse_qs(query_string.decode("latin-1"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise _bad("The query string is not valid (UTF-8, percent-encoded)") from None
    wanted = set()
    for value in query.get("task_type", []):
        for name in value.split(","):
            name = name.strip()
            if name and not _TASK.fullmatch(name):
                raise _bad(f"task_type: {name[:64]!r} is not a task name (such as 'text-generation')")
            if name:
                wanted.add(hf_task(name))
    return wanted


async def map_model(
    scope: Scope, receive: Receive, send: Send, catalog: ModelCatalog, *, max_body_bytes: int = MAP_BODY_LIMIT
) -> None:
    """Answer ``POST {prefix}models/map``: add a model to the catalog (and to its file, when it has one).

    The body is ``{"provider_model_id", "hub_model_id", "task_type", "parameters"?, "upstream"?}``;
    ``provider_model_id`` is the id clients will use, ``hub_model_id`` the upstream's id for it, and
    ``parameters`` its default request parameters. A mapping of an id already listed replaces it.

    Only an admin may map: without authentication (no principal) anyone, else an ``admin`` key (403
    ``permission`` otherwise). Raises a :class:`GatewayError` (400 for a bad body, 413, 500 when the
    catalog file cannot be written) for the caller to send; :class:`~hfasgi.body.ClientDisconnected`
    when the client leaves mid-body.
    """
    ctx = get_context(scope)
    principal = ctx.principal
    if principal is not None and not principal.admin:
        raise GatewayError(
            403, "permission", f"Key {principal.id!r} may not map models: that needs an admin key (keys add --admin)"
        )
    await read_body(scope, receive, max_body_bytes)
    entry = _entry(ctx.json(), catalog)
    try:
        catalog.add(entry)
    except ValueError as exc:  # a parameter TOML cannot hold (null, non-finite, huge integer)
        raise _bad(str(exc)) from None
    except CatalogWriteError as exc:
        raise GatewayError(500, ErrorType.INTERNAL, f"The mapping could not be saved: {exc}") from None
    hub = entry.upstream_model or entry.id
    where = "saved in the catalog file" if catalog.path is not None else "kept until the gateway restarts (no file)"
    message = f"Model {entry.id!r} now maps to {hub!r} ({entry.task}) on upstream {entry.upstream!r}, {where}"
    await send_json(
        send, 200, {"success": True, "provider_model_id": entry.id, "hub_model_id": hub, "message": message}
    )


def _entry(document: Any, catalog: ModelCatalog) -> ModelEntry:
    """The catalog entry a ``models/map`` body describes; a 400 naming the field that is wrong."""
    if not isinstance(document, dict):
        raise _bad("The request body must be a JSON object")
    unknown = sorted(set(document) - _MAP_FIELDS)
    if unknown:
        raise _bad(f"Unknown field {unknown[0]!r} (known: {', '.join(sorted(_MAP_FIELDS))})")
    upstream = document.get("upstream", "default")
    if not isinstance(upstream, str) or upstream not in catalog.upstreams:
        raise _bad(
            f"upstream: {str(upstream)[:64]!r} is not an upstream (known: {', '.join(sorted(catalog.upstreams))})"
        )
    model = _required(document, "provider_model_id")
    if model in PLACEHOLDER_MODELS:
        raise _bad(f"provider_model_id: {model!r} means the default model; choose another id")
    if not is_model_id(model):
        raise _bad(f"provider_model_id: {model[:100]!r} is not a model id ('name' or 'org/name')")
    hub = _required(document, "hub_model_id")
    if catalog.upstreams[upstream].kind in _URL_KINDS and not is_model_id(hub):
        raise _bad(f"hub_model_id: {hub[:100]!r} is not a Hub model id ('org/name')")
    if len(hub) > 1024 or any(ord(c) < 0x20 or c == "\x7f" for c in hub):
        raise _bad("hub_model_id: at most 1024 characters, and no control characters")
    task = _required(document, "task_type")
    if not _TASK.fullmatch(task):
        raise _bad(f"task_type: {task[:64]!r} is not a task name (such as 'text-generation')")
    parameters = document.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, dict):
            raise _bad("parameters must be an object (the model's default request parameters)")
        check_knobs(parameters, "parameters")
    return ModelEntry(
        id=model,
        upstream=upstream,
        upstream_model=None if hub == model else hub,
        task=hf_task(task),
        parameters=parameters or None,
    )


def _required(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value:
        raise _bad(f"{name} is required (a non-empty string)")
    return value
