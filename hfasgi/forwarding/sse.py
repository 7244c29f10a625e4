"""Server-sent events as Hugging Face clients need them (docs/hf_api.md §8.1–8.2), chunk by chunk.

``huggingface_hub`` parses SSE line by line and stops only on exactly ``data: [DONE]``: an old TGI's
``data:[DONE]`` crashes it, an OpenAI stream without ``[DONE]`` (``transformers serve``) is fine for
it but not for every client, and a ``[DONE]`` on a TGI stream is wrong. Errors inside a stream must
be one ``data: {"error": "...", "error_type": "..."}`` event. :class:`SSEFramer` applies these rules
to an upstream stream as it passes through, without holding back anything but an incomplete line.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["SSEFramer", "error_event", "normalize_stream_error"]

DONE = b"data: [DONE]\n\n"


def error_event(message: str, error_type: str) -> bytes:
    """One SSE event carrying an error in the envelope shape."""
    payload = json.dumps({"error": message, "error_type": error_type}, separators=(",", ":"), ensure_ascii=False)
    return b"data: " + payload.encode() + b"\n\n"


_STATUS_TYPES = {400: "validation", 422: "validation", 424: "generation", 429: "overloaded"}


def normalize_stream_error(payload: bytes, secret: str | None = None) -> bytes:
    """Rewrite an upstream in-stream error payload as ``{"error": str, "error_type": str}`` JSON.

    ``secret`` (the upstream token), if the upstream echoed it in the message, is redacted.
    """
    message: Any = None
    error_type: Any = None
    try:
        doc = json.loads(payload)
    except ValueError:
        # transformers serve builds `{"error": "<msg>"}` with an f-string: the message is not escaped.
        text = payload.decode("utf-8", "replace").strip()
        start = text.find('"error"')
        colon = text.find(":", start)
        message = text[colon + 1 :].strip().rstrip("}").strip().strip('"') if start >= 0 and colon > 0 else text
    else:
        if isinstance(doc, dict):
            error = doc.get("error")
            error_type = doc.get("error_type")
            if isinstance(error, dict):
                message = error.get("message")
                error_type = error_type or error.get("type")
                status = error.get("http_status_code") or error.get("code")
                if not error_type and isinstance(status, int):
                    error_type = _STATUS_TYPES.get(status)
            else:
                message = error
        else:
            message = doc
    if not isinstance(message, str):
        message = json.dumps(message) if message is not None else "Upstream error during generation"
    if secret:
        message = message.replace(secret, "[redacted]")
    if not isinstance(error_type, str) or not error_type:
        error_type = "generation"
    return json.dumps({"error": message, "error_type": error_type}, separators=(",", ":"), ensure_ascii=False).encode()


class SSEFramer:
    """Normalises one upstream SSE stream for the client.

    ``openai=True`` (OpenAI routes): ``data: [DONE]`` is guaranteed to end a stream that did not fail.
    ``openai=False`` (TGI and task routes): any ``[DONE]`` is dropped. Both: one space after ``data:``,
    ``\\n`` line endings, in-stream errors normalised; comments and other fields pass unchanged. An
    error event ends the stream: nothing the upstream sends after it is passed on. ``secret`` (the
    upstream token) is redacted from error messages.
    """

    __slots__ = ("_drop_blank", "_openai", "_pending", "_secret", "done", "errored")

    def __init__(self, *, openai: bool, secret: str | None = None) -> None:
        self._openai = openai
        self._secret = secret
        self._pending = b""
        self._drop_blank = False
        self.done = False
        """``[DONE]`` has been sent."""
        self.errored = False
        """An error event has been sent."""

    def feed(self, chunk: bytes) -> bytes:
        """The bytes to send for this upstream chunk (an incomplete last line is kept for later)."""
        if self.errored:
            return b""
        if (
            not self._pending
            and not self._drop_blank
            and chunk.endswith(b"\n")
            and chunk.count(b"data:") == chunk.count(b"data: ")
            and b"[DONE]" not in chunk
            and b'"error"' not in chunk
            and b"\r" not in chunk
        ):
            return chunk
        data = self._pending + chunk
        cut = data.rfind(b"\n") + 1
        self._pending = data[cut:]
        return self._lines(data[:cut].split(b"\n")[:-1]) if cut else b""

    def end(self) -> bytes:
        """The bytes to send when the upstream stream has ended normally."""
        out = b""
        if self._pending and not self.errored:
            out = self._lines([self._pending])
            self._pending = b""
            if not out.endswith(b"\n\n"):
                out += b"\n"
        if self._openai and not self.done and not self.errored:
            self.done = True
            out += DONE
        return out

    def fail(self, message: str, error_type: str) -> bytes:
        """The bytes to send when the stream breaks: one error event (an incomplete line is dropped).

        Nothing when an error event was sent already: it was the last event.
        """
        self._pending = b""
        if self.errored:
            return b""
        self.errored = True
        return error_event(message, error_type)

    def _lines(self, lines: list[bytes]) -> bytes:
        out: list[bytes] = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._drop_blank:
                    self._drop_blank = False
                else:
                    out.append(b"")
                continue
            self._drop_blank = False
            if line.startswith(b"data:"):
                payload = line[6:] if line.startswith(b"data: ") else line[5:]
                stripped = payload.strip()
                if stripped == b"[DONE]":
                    if self._openai and not self.done and not self.errored:
                        self.done = True
                        out.append(b"data: [DONE]")
                    else:
                        self._drop_blank = True
                    continue
                if stripped.startswith(b"{") and b'"error"' in stripped[:12]:
                    try:
                        probe = json.loads(stripped)
                        is_error = isinstance(probe, dict) and probe.get("error") is not None
                    except ValueError:
                        is_error = True  # an unescaped `{"error": ...}` (transformers serve)
                    if is_error:  # the last event: what follows it is dropped
                        self.errored = True
                        out += [b"data: " + normalize_stream_error(stripped, self._secret), b""]
                        break
                out.append(b"data: " + payload)
            else:
                out.append(line)
        return b"\n".join(out) + b"\n" if out else b""
