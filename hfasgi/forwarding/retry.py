"""When and how long to wait before trying an upstream again (only before the response has started)."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryPolicy", "parse_retry_after"]

_JITTER_RANDOM = random.Random()
"""Jitter comes from a generator of its own, never from the ``random`` module's shared state."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Retries of one upstream request.

    Connection failures and 429s with a short ``Retry-After`` are retried up to ``attempts`` times in
    all, with exponential backoff and jitter; a 503 "model is currently loading" is retried after its
    ``estimated_time`` for up to ``loading_wait`` seconds (up to the whole request timeout when the
    client asked to wait, with ``x-wait-for-model: true`` or ``options.wait_for_model``).
    """

    attempts: int = 3
    """Total attempts for connection errors and 429s (1 means no retry)."""
    backoff: float = 0.2
    """The first backoff in seconds; doubled after each attempt."""
    max_backoff: float = 4.0
    """The longest backoff in seconds."""
    loading_wait: float = 30.0
    """How long to wait for a loading model (503 with ``estimated_time``) when the client did not ask to."""
    max_retry_after: float = 5.0
    """A 429 whose ``Retry-After`` is at most this many seconds is retried; longer ones go to the client."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.attempts}")
        for name in ("backoff", "max_backoff", "loading_wait", "max_retry_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"RetryPolicy.{name} must be >= 0, got {getattr(self, name)}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential, with jitter."""
        ceiling: float = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        return ceiling * _JITTER_RANDOM.uniform(0.5, 1.0)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the delta-seconds form), or ``None``."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
