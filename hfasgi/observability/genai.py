"""The OpenTelemetry GenAI conventions for a Hugging Face gateway: names, request parameters, response usage.

Pure functions and one watcher, no OpenTelemetry import: :func:`operation_name` maps a route and an HF
task to ``gen_ai.operation.name``; :func:`request_attributes` reads the sampling parameters of a parsed
body (never its content); :class:`ResponseWatch` reads, as the response goes out, its status, whether it
streams, when its first event left, the usage the answer reports, the model it names and the
``error_type`` of an error answer or of the error event that ends a stream.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from typing import Any

from hfasgi.operations import CATALOG_ROUTES, Operation, Route

__all__ = [
    "PROVIDER",
    "ResponseWatch",
    "operation_name",
    "request_attributes",
    "route_template",
    "span_name",
]

PROVIDER = "huggingface"
"""``gen_ai.provider.name`` (not a well-known value of the conventions: a custom one, as they allow)."""

_OPERATION_BY_ROUTE: dict[str, str] = {
    Route.CHAT: "chat",
    Route.COMPLETIONS: "text_completion",
    Route.EMBEDDINGS: "embeddings",
    Route.GENERATE: "text_completion",
    Route.GENERATE_STREAM: "text_completion",
    Route.COMPAT_GENERATE: "text_completion",
}
_OPERATION_BY_TASK = {
    "chat-completion": "chat",
    "conversational": "chat",
    "text-generation": "text_completion",
    "feature-extraction": "embeddings",
}
_TEMPLATES = {
    Route.COMPLETIONS: "/v1/completions",
    Route.EMBEDDINGS: "/v1/embeddings",
    Route.GENERATE: "/generate",
    Route.GENERATE_STREAM: "/generate_stream",
    Route.COMPAT_GENERATE: "/",
    Route.INFO: "/info",
}
_NON_INFERENCE = frozenset(route.value for route in CATALOG_ROUTES)


def operation_name(route: str | None, task: str | None) -> str | None:
    """``gen_ai.operation.name`` of a request: ``chat``, ``text_completion``, ``embeddings`` or the HF task.

    ``None`` for the app's own routes and the catalog routes (model lists, ``/info``).
    """
    if route is None or route in _NON_INFERENCE:
        return None
    fixed = _OPERATION_BY_ROUTE.get(route)
    if fixed is not None:
        return fixed
    if task is None:
        return "task"
    return _OPERATION_BY_TASK.get(task, task)


def span_name(route: str, task: str | None) -> str:
    """The SERVER span's low-cardinality name: the route (``chat``, ``generate_stream``), ``task <hf task>``."""
    if route == Route.TASK and task:
        return f"task {task}"
    return route


def route_template(op: Operation, path: str, prefix: str = "") -> str | None:
    """``http.route``: the path template the request matched (``/models/{model}/pipeline/{task}``).

    ``None`` when the path is not one of the route table's (the provider task API sets its operation itself).
    """
    route = op.route
    fixed = _TEMPLATES.get(route)
    if fixed is not None:
        template = prefix + fixed
        return template if path == template or (fixed == "/" and path == prefix) else None
    if route is Route.CHAT:
        if op.path_model is None:
            return prefix + "/v1/chat/completions" if path == prefix + "/v1/chat/completions" else None
        return prefix + "/models/{model}/v1/chat/completions" if path.startswith(prefix + "/models/") else None
    if route is Route.MODELS:
        if op.path_model is None:
            return prefix + "/v1/models" if path == prefix + "/v1/models" else None
        return prefix + "/v1/models/{model}" if path.startswith(prefix + "/v1/models/") else None
    if route is Route.TASK:
        if path.startswith(prefix + "/pipeline/"):
            return prefix + "/pipeline/{task}/{model}"
        if path.startswith(prefix + "/models/"):
            return prefix + ("/models/{model}/pipeline/{task}" if op.task_forced else "/models/{model}")
    return None


def _number(value: Any) -> float | int | None:
    if type(value) is int or type(value) is float:
        return value
    return None


def _count(value: Any) -> int | None:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def request_attributes(document: Any, op: Operation) -> dict[str, Any]:
    """``gen_ai.request.*`` of a parsed body: the sampling parameters, never the prompt.

    Reads the OpenAI fields (``max_tokens``, ``temperature``, ...) and the TGI / task ones under
    ``parameters`` (``max_new_tokens``, ...), since a body may have been rewritten into the upstream's dialect.
    """
    out: dict[str, Any] = {}
    streams = op.route is Route.GENERATE_STREAM
    if isinstance(document, dict):
        parameters = document.get("parameters")
        if not isinstance(parameters, dict):
            parameters = {}
        get, inner = document.get, parameters.get
        maximum = _count(get("max_completion_tokens"))
        if maximum is None:
            maximum = _count(get("max_tokens"))
        if maximum is None:
            maximum = _count(inner("max_new_tokens"))
        if maximum is not None:
            out["gen_ai.request.max_tokens"] = maximum
        for name in ("temperature", "top_p", "top_k", "frequency_penalty", "presence_penalty"):
            value = _number(get(name))
            if value is None:
                value = _number(inner(name))
            if value is not None:
                out["gen_ai.request." + name] = value
        seed = _count(get("seed"))
        if seed is None:
            seed = _count(inner("seed"))
        if seed is not None:
            out["gen_ai.request.seed"] = seed
        choices = _count(get("n"))
        if choices is not None and choices != 1:
            out["gen_ai.request.choice.count"] = choices
        streams = streams or get("stream") is True
    if op.route not in CATALOG_ROUTES:
        out["gen_ai.request.stream"] = streams
    return out


_PROMPT = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')
_GENERATED = re.compile(rb'"generated_tokens"\s*:\s*(\d+)')
_INPUT_LENGTH = re.compile(rb'"input_length"\s*:\s*(\d+)')
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,256})"')
_ERROR_TYPE = re.compile(rb'"error_type"\s*:\s*"([^"\\]{1,128})"')
_KEEP = 1024 * 1024
"""Bytes of a plain (not streamed) answer kept to read its usage; beyond, its head and its tail."""
_TAIL = 64 * 1024
_RECENT = 3
"""The last chunks of a stream kept for its usage and its error event."""
_STREAM_TAIL = 4096
"""Bytes at the end of a stream read for its usage and error event (whole events: from an event boundary)."""
_GAP = b"\n"
"""Marks where bytes of a huge answer were skipped (a JSON key never spans a raw newline)."""


class ResponseWatch:
    """What a response said about itself, read as it passes (feed it every ``http.response.*`` message).

    Nothing is parsed while the response flows: a plain answer's chunks are kept (up to 1 MiB, then its
    head and tail), a stream's first chunk and its last three, and :meth:`close` reads them once the
    response has ended: the usage and the error event come last in every dialect, the model first. A
    quote inside a JSON string is escaped, so the keys looked for (``"prompt_tokens"``, ``"error"``)
    cannot be faked by generated text.
    """

    __slots__ = (
        "_head",
        "_count",
        "_parts",
        "_size",
        "complete",
        "error_type",
        "events",
        "failed",
        "first_event",
        "input_tokens",
        "model",
        "output_tokens",
        "recent",
        "status",
        "stream",
    )

    def __init__(self, *, count_events: bool = False) -> None:
        self.status = 0
        """The response status (0: not started)."""
        self.stream = False
        """The answer is server-sent events."""
        self.complete = False
        """The last body message has been sent."""
        self.first_event: float | None = None
        """``time.perf_counter()`` when the first body bytes of a stream left."""
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.model: str | None = None
        """The model the answer names (``gen_ai.response.model``)."""
        self.error_type: str | None = None
        self.failed = False
        """A stream ended with an error event."""
        self.events = 0
        """With ``count_events``: the events of a stream but ``[DONE]`` (``data:`` fields), counted as they pass
        (a ``data:`` inside generated text counts too: it is an estimate, used only when the stream reports
        no usage)."""
        self._count = count_events
        self.recent: deque[bytes] = deque(maxlen=_RECENT)
        """A stream's last chunks (its usage and its error event are in them)."""
        self._head: bytes | None = None
        self._parts: list[bytes] = []
        self._size = 0

    def start(self, message: Any) -> None:
        """An ``http.response.start``."""
        self.status = message["status"]
        for name, value in message.get("headers", ()):
            if name == b"content-type" or name.lower() == b"content-type":
                self.stream = value.startswith(b"text/event-stream")
                break

    def body(self, message: Any) -> None:
        """An ``http.response.body``."""
        chunk: bytes = message.get("body", b"")
        if chunk:
            self.add(chunk)
        if not message.get("more_body", False):
            self.complete = True

    def add(self, chunk: bytes) -> None:
        """A non-empty body chunk (the hot path of a stream: two list operations)."""
        if self.stream:
            if self._head is None:
                self.first_event = time.perf_counter()
                self._head = chunk
            self.recent.append(chunk)
            if self._count:
                self.events += chunk.count(b"data:")  # "[DONE]" is taken off once, at the end
            return
        parts = self._parts
        parts.append(chunk)
        self._size += len(chunk)
        if self._size > _KEEP:  # a huge answer (embeddings of a long list): its head and a tail, where usage is
            if parts[1] is not _GAP:
                parts.insert(1, _GAP)
            while len(parts) > 3 and self._size - len(parts[0]) - len(parts[2]) >= _TAIL:
                self._size -= len(parts.pop(2))

    def close(self) -> None:
        """Read what the response said, once it has ended (or stopped); idempotent."""
        if self.stream:
            recent = self.recent
            if recent:
                if self._count and self.events and any(b"[DONE]" in chunk for chunk in recent):
                    self.events -= 1
                self._close_stream(list(recent))
                recent.clear()
            return
        parts = self._parts
        if not parts:
            return
        self._parts = []
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        if self.status >= 400:
            found = _ERROR_TYPE.search(data, 0, _TAIL)
            if found is not None:
                self.error_type = found.group(1).decode("utf-8", "replace")
            return
        self._usage(data)
        model = _MODEL.search(data)
        if model is not None:
            self.model = model.group(1).decode("utf-8", "replace")

    def _close_stream(self, recent: list[bytes]) -> None:
        head = self._head
        if head is not None and b'"model"' in head:
            model = _MODEL.search(head)
            if model is not None:
                self.model = model.group(1).decode("utf-8", "replace")
        tail = b"".join(recent)  # whole events, even when one was split across chunks
        if len(tail) > _STREAM_TAIL:  # a replayed stream comes as one message: its usage is in its last events
            start = tail.rfind(b"\n\n", 0, len(tail) - _STREAM_TAIL)
            tail = tail[start + 2 :] if start != -1 else tail
        if b"_tokens" in tail:
            self._usage(tail)
        if b'"error"' in tail:
            self._stream_error(tail)

    def _usage(self, data: bytes) -> None:
        completion = _COMPLETION.findall(data)
        if completion:
            self.output_tokens = int(completion[-1])
            prompt = _PROMPT.findall(data)
            if prompt:
                self.input_tokens = int(prompt[-1])
            return
        generated = _GENERATED.findall(data)
        if generated:  # TGI's details (its stream's also carry the prompt's length)
            self.output_tokens = int(generated[-1])
            length = _INPUT_LENGTH.findall(data)
            if length:
                self.input_tokens = int(length[-1])
            return
        prompt = _PROMPT.findall(data)  # embeddings: prompt tokens only
        if prompt:
            self.input_tokens = int(prompt[-1])

    def _stream_error(self, data: bytes) -> None:
        for line in data.split(b"\n"):
            if not line.startswith(b"data:") or b'"error"' not in line:
                continue
            try:
                event = json.loads(line[5:])
            except ValueError:
                continue
            if not isinstance(event, dict) or "error" not in event:
                continue
            self.failed = True
            kind = event.get("error_type")
            error = event.get("error")
            if not isinstance(kind, str) and isinstance(error, dict):
                kind = error.get("type")
            self.error_type = kind if isinstance(kind, str) and kind else "generation"
