"""The audit log: one JSON line per finished request, to a file or standard output.

:meth:`AuditLog.sink` is a sink of :class:`~hfasgi.observability.Tracing`: it snapshots the request's
:class:`~hfasgi.observability.record.RequestRecord` (and, when bodies are on, a bounded prefix of the
request body) into a bounded queue and returns; a background task builds the lines, redacts, and writes
them in batches from a worker thread, so a slow disk or a stalled stdout pipe never slows a request (the
queue fills, and lines are dropped and counted instead).

A line holds no secret: the caller is its principal id, the query string is never logged (it may carry
``?api_key=``), configured secrets are redacted from every field, and a body (only with
``bodies=True``) is also scrubbed of credential-looking strings: bearer, ``hf_``, gateway and ``sk-``
keys, JWTs, values of secret-named JSON keys and ``name=value`` pairs. JSON strings are checked as
decoded, so escapes cannot hide a secret. ``time`` is when the request arrived; ``request_body`` is the
body as the inner layers last set it (what went upstream), ``<N bytes of binary>`` for binary bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, TypeAlias

from hfasgi.auth.keys import KEY_PREFIX
from hfasgi.context import encode_json

if TYPE_CHECKING:
    from hfasgi.context import RequestContext
    from hfasgi.observability.record import RequestRecord

__all__ = ["AuditConfig", "AuditLog"]

logger = logging.getLogger("hfasgi.audit")

_REDACTED = "[redacted]"
_WITHHELD = "<withheld: it still held a secret after redaction>"
_BATCH = 1024
"""Most lines written by one write."""
_SLACK = 256
"""Characters dropped at the end of a body prefix cut short (so no secret is left half-cut there)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditConfig:
    """Configuration of :class:`AuditLog`."""

    destination: str = "-"
    """``-``: standard output; anything else: a file path, appended to (created with mode 0600)."""
    bodies: bool = False
    """Also log the request body (``request_body``), redacted. Off: no prompt ever reaches the log."""
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Strings redacted wherever they appear (the upstream tokens, the configured API keys)."""
    max_body_chars: int = 4096
    """The longest ``request_body`` logged, in characters; longer bodies are cut and marked."""
    queue_size: int = 10000
    """Lines waiting to be written; when full, new lines are dropped (counted in :attr:`AuditLog.dropped`)."""

    def __post_init__(self) -> None:
        if not isinstance(self.destination, str) or not self.destination or "\0" in self.destination:
            raise ValueError(f"AuditConfig.destination must be '-' or a file path, got {self.destination!r}")
        if not isinstance(self.bodies, bool):
            raise ValueError(f"AuditConfig.bodies must be a bool, got {type(self.bodies).__name__}")
        if isinstance(self.secrets, str) or not isinstance(self.secrets, tuple | list | frozenset | set):
            raise ValueError("AuditConfig.secrets must be a tuple of strings")
        if not all(isinstance(s, str) and s for s in self.secrets):
            raise ValueError("AuditConfig.secrets must hold non-empty strings only")
        object.__setattr__(self, "secrets", tuple(dict.fromkeys(self.secrets)))
        for name in ("max_body_chars", "queue_size"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"AuditConfig.{name} must be a positive integer, got {value!r}")


_Entry: TypeAlias = "tuple[RequestRecord, tuple[bytes, int] | None]"
"""What :meth:`AuditLog.sink` queues: the record and (bodies on, a body was read) a body prefix and its full size."""


class AuditLog:
    """One JSON line per finished request; a shared resource (:meth:`open` / :meth:`aclose`).

    Pass :meth:`sink` to the tracing layer's sinks and the log itself to the app's lifespan. Lines sent
    before :meth:`open` or after :meth:`aclose`, or while the queue is full, are dropped and counted in
    :attr:`dropped` (one warning per burst on the ``hfasgi.audit`` logger).
    """

    __slots__ = (
        "_accepting",
        "_close",
        "_dropping",
        "_emit",
        "_queue",
        "_redactor",
        "_scan_bytes",
        "_writer",
        "config",
        "dropped",
        "written",
    )

    def __init__(self, config: AuditConfig | None = None) -> None:
        self.config = config or AuditConfig()
        self.dropped = 0
        """Lines lost: sent while closed or while the queue was full, or failed to build or write."""
        self.written = 0
        """Lines written."""
        self._redactor = _Redactor(self.config.secrets)
        self._scan_bytes = 4 * (self.config.max_body_chars + self._redactor.slack)
        self._queue: asyncio.Queue[_Entry] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._emit: Callable[[bytes], None] | None = None
        self._close: Callable[[], None] | None = None
        self._accepting = False
        self._dropping = False

    async def open(self) -> None:
        """Open the destination and start the writer (idempotent). A file that cannot be opened raises ``OSError``."""
        if self._writer is not None:
            return
        self._emit, self._close = _destination(self.config.destination)
        self._queue = asyncio.Queue(self.config.queue_size)
        self._writer = asyncio.get_running_loop().create_task(self._run(), name="hfasgi-audit-writer")
        self._dropping = False
        self._accepting = True

    async def flush(self) -> None:
        """Wait until every line queued so far is written (or counted as dropped)."""
        writer, queue = self._writer, self._queue
        if writer is None or queue is None or writer.done():
            return
        drained = asyncio.ensure_future(queue.join())
        await asyncio.wait((drained, writer), return_when=asyncio.FIRST_COMPLETED)
        drained.cancel()

    async def aclose(self) -> None:
        """Stop accepting lines, write every queued one, close the destination (idempotent)."""
        self._accepting = False
        await self.flush()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # the writer's own failure: counted below
                await writer
        queue = self._queue
        while queue is not None and not queue.empty():  # only when the writer itself died
            queue.get_nowait()
            self.dropped += 1
        close, self._close, self._emit = self._close, None, None
        if close is not None:
            close()

    def sink(self, record: RequestRecord, ctx: RequestContext) -> None:
        """Queue the line of a finished request; never blocks (drops and counts when closed or full)."""
        queue = self._queue
        if not self._accepting or queue is None:
            self._drop("the audit log is not open")
            return
        try:
            queue.put_nowait((record, self._snapshot(ctx)))
        except asyncio.QueueFull:
            self._drop(f"its queue of {self.config.queue_size} lines is full")

    def line(self, record: RequestRecord, ctx: RequestContext) -> bytes:
        """The audit line of ``record`` (with ``ctx``'s body when bodies are on), ``\\n``-terminated."""
        return self._line(record, self._snapshot(ctx))

    def _snapshot(self, ctx: RequestContext) -> tuple[bytes, int] | None:
        body = ctx.body
        if not self.config.bodies or body is None:
            return None
        return body[: self._scan_bytes], len(body)  # bounded: a queued line never pins a whole large body

    def _line(self, record: RequestRecord, body: tuple[bytes, int] | None) -> bytes:
        r = record
        scrub = self._redactor.scrub
        doc: dict[str, Any] = {
            "time": _timestamp(r.started),
            "request_id": scrub(r.request_id),
            "method": scrub(r.method),
            "path": scrub(r.path),
            "route": r.route,
            "key_id": scrub(r.key_id),
            "model": scrub(r.model),
            "upstream": r.upstream,
            "upstream_model": scrub(r.upstream_model),
            "task": r.task,
            "status": r.status,
            "upstream_status": r.upstream_status,
            "latency_ms": _ms(r.duration),
            "upstream_ms": _ms(r.upstream_duration),
            "ttft_ms": _ms(r.time_to_first_token),
            "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens,
            "retries": max(r.attempts - 1, 0),
            "stream": r.stream,
            "cache_hit": r.cache_hit,
            "error_type": scrub(r.error_type),
        }
        if self.config.bodies:
            doc["request_body"] = None if body is None else self._redactor.body(*body, self.config.max_body_chars)
        return encode_json(doc) + b"\n"

    async def _run(self) -> None:
        queue = self._queue
        assert queue is not None
        while True:
            batch = [await queue.get()]
            while len(batch) < _BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self._write(batch)
            finally:
                for _ in batch:
                    queue.task_done()
            if self._dropping and queue.empty():
                self._dropping = False  # caught up: the next drop starts a new burst (and warns again)

    async def _write(self, batch: list[_Entry]) -> None:
        lines: list[bytes] = []
        for record, body in batch:
            try:
                lines.append(self._line(record, body))
            except Exception as exc:  # a bad record must not stop the writer
                self._drop(f"a line could not be built ({type(exc).__name__})")
        emit = self._emit
        if not lines or emit is None:
            return
        try:
            await asyncio.to_thread(emit, b"".join(lines))
        except Exception as exc:  # disk full, a closed stdout, ...: counted, and the writer goes on
            self._drop(f"writing failed ({type(exc).__name__}: {exc})", len(lines))
        else:
            self.written += len(lines)

    def _drop(self, why: str, count: int = 1) -> None:
        self.dropped += count
        if not self._dropping:
            self._dropping = True
            logger.warning("hfasgi: audit lines dropped: %s (counting further drops silently until it recovers)", why)


def _destination(destination: str) -> tuple[Callable[[bytes], None], Callable[[], None] | None]:
    """A function writing (and flushing) bytes to ``destination``, and the one closing it (``None``: stdout)."""
    stream: BinaryIO
    close: Callable[[], None] | None = None
    if destination != "-":
        fd = os.open(destination, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        stream = os.fdopen(fd, "ab")
        close = stream.close
    elif (buffer := getattr(sys.stdout, "buffer", None)) is not None:
        stream = buffer  # bytes as they are: no encoding error whatever the locale
    else:  # a text-only replacement of stdout
        out = sys.stdout

        def emit_text(data: bytes) -> None:
            out.write(data.decode("utf-8", "replace"))
            out.flush()

        return emit_text, None

    def emit(data: bytes) -> None:
        stream.write(data)
        stream.flush()

    return emit, close


def _timestamp(seconds: float) -> str:
    """``2024-05-01T12:00:00.250Z``: UTC, milliseconds."""
    whole, millis = divmod(round(seconds * 1000), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


# -- redaction --------------------------------------------------------------------------------------------

_NAMES = r"api[_-]?key|private[_-]?key|token(?![si])|authori[sz]ation|passw(?:or)?d|secret|credential"
_SECRET_NAME = re.compile(_NAMES, re.IGNORECASE)
"""Names whose values are secret (``token`` but not ``max_tokens`` nor ``tokenizer``)."""
_SECRET_NAME_LOWER = re.compile(_NAMES)
"""The same, on lower-cased text (a tenth of the case-insensitive search's time)."""
_CREDENTIALS = tuple(
    (marker, re.compile(pattern))
    for marker, pattern in (
        ("bearer", r"(?P<scheme>\b(?i:bearer)\s+)[A-Za-z0-9._~+/-]{16,}=*"),
        ("hf_", r"hf_[A-Za-z0-9]{16,}"),
        (KEY_PREFIX.lower(), re.escape(KEY_PREFIX) + r"[A-Za-z0-9_-]{16,}"),
        ("sk-", r"sk-(?<![A-Za-z0-9]sk-)[A-Za-z0-9_-]{16,}"),
        ("eyj", r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]*"),
    )
)
"""Bearer tokens, Hugging Face tokens, the gateway's own keys, OpenAI-style ``sk-`` keys, JWTs; each run
only when its marker is in the lower-cased text (each but the first starts with a literal: a fast search)."""
_ASSIGNMENT = (
    rf"(?<![\w-])(?=[\w-]*?(?:{_NAMES}))(?P<name>[\w-]++)(?P<sep>\s*[=:]\s*)"
    r"(?P<value>(?:(?:bearer|basic|token)\s+)?[^\s&,;\"'<>\\]+)"
)
_ASSIGNMENT_LOWER = re.compile(_ASSIGNMENT)
_ASSIGNMENT_ANY_CASE = re.compile(_ASSIGNMENT, re.IGNORECASE)
"""``password=...``, ``api_key: ...``, ``Authorization: Bearer ...`` in free text (forms, headers, YAML)."""
_STRING = re.compile(r'"[^"\\]*(?:\\(?:.|\Z)[^"\\]*)*(?P<end>"|\Z)', re.DOTALL)
"""A JSON string, or an unterminated one running to the end (a body cut short)."""
_COLON = re.compile(r"\s*:\s*")
_VALUE = re.compile(_STRING.pattern + r'|[^\s,{}\[\]"]+', re.DOTALL)
_DECODER = json.JSONDecoder(strict=False)


def _credential(match: re.Match[str]) -> str:
    return (match.groupdict().get("scheme") or "") + _REDACTED


def _assignments(text: str, lowered: str) -> str:
    """``text`` with the values of secret-named assignments redacted (matched on ``lowered`` when it lines up)."""
    if len(lowered) != len(text):  # lower-casing moved characters (a rare letter such as "İ")
        return _ASSIGNMENT_ANY_CASE.sub(lambda m: m.group("name") + m.group("sep") + _REDACTED, text)
    out: list[str] = []
    pos = 0
    for match in _ASSIGNMENT_LOWER.finditer(lowered):
        out.append(text[pos : match.start("value")])
        out.append(_REDACTED)
        pos = match.end()
    out.append(text[pos:])
    return "".join(out)


def _looks_binary(head: bytes) -> bool:
    """A NUL byte, or about one character in 16 not UTF-8 (a stray Latin-1 byte in text is not enough)."""
    if b"\0" in head:
        return True
    text = head.decode("utf-8", "replace")
    return text.count("\ufffd") * 16 > len(text) + 16


class _Redactor:
    """Redacts configured secrets and credential-looking strings from text and JSON bodies."""

    __slots__ = ("_secrets", "slack")

    def __init__(self, secrets: tuple[str, ...]) -> None:
        ordered = sorted(secrets, key=len, reverse=True)  # a secret holding another goes first
        self._secrets = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self.slack = max([_SLACK, *(6 * len(s) + 6 for s in secrets)])  # room for a secret as JSON escapes

    def scrub(self, value: str | None) -> str | None:
        """``value`` with every configured secret redacted (everything but bodies gets only this)."""
        if value is None or self._secrets is None:
            return value
        return self._final(value)

    def body(self, head: bytes, size: int, max_chars: int) -> str:
        """The logged form of a body of ``size`` bytes starting with ``head``."""
        if not head:
            return ""
        if _looks_binary(head[:1024]):
            return f"<{size} bytes of binary>"
        text = self._json_strings(head.decode("utf-8", "replace"))
        text = self._text(text)
        cut = size > len(head)
        if cut:  # a credential may straddle the cut: what is left of it is in this tail
            text = text[: max(len(text) - self.slack, 0)]
        if cut or len(text) > max_chars:
            text = f"{text[:max_chars]}…[truncated: {size} bytes]"
        return self._final(text, strings=True)

    def _text(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(_REDACTED, text)
        lowered = text.lower()
        for marker, pattern in _CREDENTIALS:
            if marker in lowered:
                text = pattern.sub(_credential, text)
        if _SECRET_NAME_LOWER.search(lowered) is None:
            return text
        return _assignments(text, text.lower())

    def _final(self, text: str, *, strings: bool = False) -> str:
        """Configured secrets out, also any a replacement formed next to another; withheld if that does not end.

        ``strings``: also check the JSON strings of ``text`` as decoded (a redaction that moved a quote
        could make escapes that spell a secret part of a string).
        """
        pattern = self._secrets
        if pattern is None:
            return text
        for _ in range(3):
            if pattern.search(text) is None:
                break
            text = pattern.sub(_REDACTED, text)
        else:
            if pattern.search(text) is not None:
                return _WITHHELD
        if strings:
            for match in _STRING.finditer(text):
                if "\\" in match.group() and pattern.search(_decode(match) or "") is not None:
                    return _WITHHELD
        return text

    def _json_strings(self, text: str) -> str:
        """Every JSON string of ``text`` redacted as decoded (escapes cannot hide a secret), secret-named values too."""
        out: list[str] = []
        pos = 0
        while (match := _STRING.search(text, pos)) is not None:
            out.append(text[pos : match.start()])
            out.append(self._string(match))
            pos = match.end()
            colon = _COLON.match(text, pos)
            if colon is not None and _SECRET_NAME.search(_decode(match) or match.group()):
                out.append(colon.group())
                value = _VALUE.match(text, colon.end())
                pos = colon.end()
                if value is not None:  # a string or a scalar; an object or array has its own keys looked at
                    out.append(f'"{_REDACTED}"')
                    pos = value.end()
        out.append(text[pos:])
        return "".join(out)

    def _string(self, match: re.Match[str]) -> str:
        """A string with escapes, redacted as decoded; any other is left to the pass over the whole text."""
        token = match.group()
        decoded = _decode(match) if "\\" in token else None
        if decoded is None:
            return token
        redacted = self._text(decoded)
        if redacted == decoded:
            return token
        encoded = json.dumps(redacted, ensure_ascii=False)
        return encoded if match.group("end") else encoded[:-1]


def _decode(match: re.Match[str]) -> str | None:
    """The value of a matched JSON string (``None`` when it does not decode)."""
    token = match.group()
    try:
        value = _DECODER.decode(token if match.group("end") else token + '"')
    except ValueError:
        return None
    return value if isinstance(value, str) else None
