"""What one request was, once it has ended: the one record spans, metrics and the audit log are made from."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RequestRecord"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRecord:
    """One finished request, as the outermost layer (:class:`~hfasgi.observability.Tracing`) saw it.

    Nothing secret is ever in it: the caller is its key *id*, never the key; bodies are not part of it.
    """

    request_id: str
    started: float
    """Wall-clock start, seconds since the epoch."""
    duration: float
    """Seconds from the request's arrival to the end of its response (a stream: its last byte)."""
    method: str
    path: str
    route: str | None
    """The operation's route (``chat``, ``task``, ``generate_stream``, ...); ``None`` for the app's own routes."""
    status: int
    """The status the client got (0: no response started)."""
    model: str | None = None
    """The model id the client asked for (after defaults)."""
    upstream: str | None = None
    """The name of the upstream that served it."""
    upstream_model: str | None = None
    task: str | None = None
    key_id: str | None = None
    """The caller's principal id (a key's name, ``jwt:<sub>``); never the key."""
    upstream_status: int | None = None
    upstream_duration: float | None = None
    attempts: int = 0
    """Upstream attempts (retries = attempts - 1)."""
    stream: bool = False
    """The answer was server-sent events."""
    time_to_first_token: float | None = None
    """Seconds to the first event of a stream."""
    input_tokens: int | None = None
    output_tokens: int | None = None
    error_type: str | None = None
    """The envelope's ``error_type`` of an error answer (4xx/5xx, or an error event ending a stream)."""
    cache_hit: bool | None = None
