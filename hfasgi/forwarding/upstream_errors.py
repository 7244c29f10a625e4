"""Turn whatever an upstream answers on failure into the error envelope, keeping status and message.

Upstreams answer errors in many shapes (docs/hf_api.md §1.5, §2.3, §3.5, §4): TGI's
``{"error", "error_type"}``, OpenAI's ``{"error": {"message"}}``, FastAPI's ``{"detail"}`` (invisible
to ``huggingface_hub``), the serverless worker's ``{"error": [...]}``, a bare JSON array (which
crashes ``huggingface_hub``), plain text or an HTML page. Clients get one shape.
"""

from __future__ import annotations

import json
from typing import Any

from hfasgi.errors import envelope, error_type_for_status, reason

__all__ = ["normalize_error_body", "parse_loading"]

_MAX_MESSAGE = 4000


def normalize_error_body(status: int, body: bytes, content_type: str, secret: str | None = None) -> bytes:
    """The envelope bytes for an upstream error response.

    A body that already is an envelope (a JSON object with a string ``error``) is kept as it is, extra
    fields (``error_type``, ``estimated_time``) included. ``secret`` (the upstream token) is redacted.
    """
    doc: Any = None
    if body and ("json" in content_type or body[:1] in (b"{", b"[")):
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        if secret:
            redacted = _redact_all(doc, secret)  # anywhere in it, nested too (an echoed request, say)
            if redacted != doc:
                return json.dumps(redacted, separators=(",", ":"), ensure_ascii=False).encode()
        return body
    message, error_type = _extract(doc, body, content_type)
    message = message.strip() or reason(status)
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "…"
    if secret:
        message = _redact(message, secret)
    return envelope(message, error_type or error_type_for_status(status))


def _extract(doc: Any, body: bytes, content_type: str) -> tuple[str, str | None]:
    if isinstance(doc, dict):
        error_type = doc.get("error_type") if isinstance(doc.get("error_type"), str) else None
        error = doc.get("error")
        if isinstance(error, dict):  # OpenAI style
            etype = error.get("type") if isinstance(error.get("type"), str) else None
            return _text(error.get("message", error)), error_type or etype
        if isinstance(error, list):  # api-inference-community pydantic errors
            return "; ".join(_item(e) for e in error), error_type
        if error is not None:
            return _text(error), error_type
        detail = doc.get("detail")
        if isinstance(detail, list):  # FastAPI validation errors
            return "; ".join(_detail_item(d) for d in detail), error_type
        if detail is not None:
            return _text(detail), error_type
        for key in ("message", "error_description", "msg"):
            if isinstance(doc.get(key), str):
                return doc[key], error_type
        return _text(doc), error_type
    if isinstance(doc, list):  # e.g. `[{"error": "..."}]`, which would crash huggingface_hub
        return "; ".join(_item(e) for e in doc), None
    text = body.decode("utf-8", "replace")
    if "html" in content_type or text.lstrip()[:1] == "<":
        return "", None  # an HTML error page says nothing a client can use: the reason phrase will do
    return text, None


def _detail_item(item: Any) -> str:
    if isinstance(item, dict) and "msg" in item:
        loc = item.get("loc")
        where = ".".join(str(p) for p in loc if p != "body") if isinstance(loc, list) else ""
        return f"{where}: {item['msg']}" if where else str(item["msg"])
    return _text(item)


def _item(value: Any) -> str:
    """One error of a list: its message when it is an object carrying one, else its text."""
    if isinstance(value, dict):
        for key in ("error", "message", "msg"):
            if isinstance(value.get(key), str):
                return str(value[key])
    return _text(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "[redacted]")


def _redact_all(value: Any, secret: str) -> Any:
    """``value`` (parsed JSON) with ``secret`` redacted from every string in it."""
    if isinstance(value, str):
        return _redact(value, secret)
    if isinstance(value, dict):
        return {_redact(k, secret): _redact_all(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_all(v, secret) for v in value]
    return value


def parse_loading(body: bytes) -> float | None:
    """``estimated_time`` (seconds) if ``body`` is the 503 "model is currently loading" answer, else ``None``."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    estimate = doc.get("estimated_time")
    error = doc.get("error")
    if isinstance(estimate, int | float) and not isinstance(estimate, bool):
        return max(float(estimate), 0.0)
    if isinstance(error, str) and "currently loading" in error:
        return 1.0
    return None
