"""Ending an upstream exchange early: at its deadline, or as soon as the client has gone.

:class:`Watchdog` does what ``asyncio.timeout()`` plus a task watching ``receive()`` for
``http.disconnect`` would do, at a fraction of the cost on the hot path. Under uvloop a timer
created and cancelled per request, and a task per request, cost ~47,000 instructions (callgrind; a
whole bare aiohttp proxy hop in process is ~440,000). So no watchdog owns a timer: one *sweep* per
event loop runs every :data:`TICK` seconds, fires the deadlines that have passed and starts the
disconnect-watching task of the exchanges that have lasted ``watch_after`` seconds; it stops after
:data:`IDLE_TICKS` sweeps with nothing in flight. A quick exchange costs a dict insertion and
removal; a slow one (generation, a stream) is cancelled within about ``watch_after + TICK`` of its
client leaving, and deadlines are kept to within ``TICK``.
"""

from __future__ import annotations

import asyncio
import weakref
from types import TracebackType
from typing import Literal

from hfasgi.types import Receive

__all__ = ["IDLE_TICKS", "TICK", "WATCH_AFTER", "Watchdog"]

Reason = Literal["timeout", "disconnect"]

TICK = 0.02
"""Seconds between two sweeps of the in-flight exchanges (the precision of deadlines)."""
WATCH_AFTER = 0.05
"""Seconds an exchange runs before its client's connection is watched."""
IDLE_TICKS = 50
"""Sweeps the timer keeps running with nothing in flight before it stops (so a steady trickle of
requests does not create a timer each)."""


class Watchdog:
    """Cancels the current task at a deadline, or when the client disconnects.

    A context manager around the awaits it guards; its own cancellation ends the block quietly::

        with Watchdog(receive, timeout=300.0) as dog:
            ...  # awaits
        if dog.reason is not None:
            ...  # "timeout" or "disconnect"; anyone else's cancellation propagates as usual

    ``receive`` must not be used by anyone else while the watchdog lives (the request body has been
    read already).
    """

    __slots__ = (
        "_cancelling",
        "_deadline",
        "_loop",
        "_quiet",
        "_receive",
        "_sweep",
        "_task",
        "_watch_at",
        "_watcher",
        "reason",
    )

    def __init__(self, receive: Receive, timeout: float, *, watch_after: float = WATCH_AFTER) -> None:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Watchdog must be created inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._receive = receive
        loop = self._loop = asyncio.get_running_loop()
        self._sweep = _Sweep.of(loop)
        now = loop.time()
        self._deadline = now + timeout
        self._watch_at: float | None = now + watch_after
        self._watcher: asyncio.Task[None] | None = None
        self._quiet = False
        self.reason: Reason | None = None
        """Why the watchdog cancelled the task, once it has."""

    def __enter__(self) -> Watchdog:
        self._sweep.add(self, self._loop)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        self.close()
        # Whatever ends the block once the watchdog has fired comes from its cancellation (aiohttp may
        # turn a CancelledError into a connection error): consume the cancel and end quietly.
        return self.reason is not None and self.absorb() is not None

    def set_timeout(self, seconds: float) -> None:
        """Move the deadline to ``seconds`` from now."""
        self._deadline = self._loop.time() + seconds

    def finishing(self) -> None:
        """The last response message is about to be sent: a disconnect from now on is the normal end."""
        self._quiet = True

    def close(self) -> None:
        """Stop watching (idempotent); a cancellation already requested still arrives."""
        self._sweep.discard(self)
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    def absorb(self) -> Reason | None:
        """After a ``CancelledError``: the reason if this watchdog caused it (the cancel is then consumed)."""
        if self.reason is None or self._task.uncancel() > self._cancelling:
            return None
        return self.reason

    def _check(self, now: float) -> None:
        """Called by the sweep: fire a passed deadline, or start watching the client when it is time."""
        if now >= self._deadline:
            self._fire("timeout")
        elif self._watch_at is not None and now >= self._watch_at:
            self._watch_at = None
            self._watcher = self._loop.create_task(self._watch())

    async def _watch(self) -> None:
        try:
            while (await self._receive())["type"] != "http.disconnect":
                pass
        except Exception:  # a server whose receive fails after the body: nothing to watch
            return
        if not self._quiet:
            self._fire("disconnect")

    def _fire(self, reason: Reason) -> None:
        if self.reason is None and self._sweep.discard(self):
            self.reason = reason
            self._task.cancel()


class _Sweep:
    """The in-flight watchdogs of one event loop, checked every :data:`TICK` seconds while there are any.

    It holds no reference to its loop (only its pending timer does), so the per-loop registry lets
    a finished loop go.
    """

    __slots__ = ("_handle", "_idle", "active")

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sweep] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self.active: dict[Watchdog, None] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._idle = 0

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _Sweep:
        sweep = cls._by_loop.get(loop)
        if sweep is None:
            sweep = cls._by_loop[loop] = cls()
        return sweep

    def add(self, dog: Watchdog, loop: asyncio.AbstractEventLoop) -> None:
        self.active[dog] = None
        if self._handle is None:
            self._handle = loop.call_later(TICK, self._tick)

    def discard(self, dog: Watchdog) -> bool:
        """Forget ``dog``; whether it was still in flight."""
        return self.active.pop(dog, 0) is None

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.active:
            self._idle = 0
            for dog in list(self.active):
                dog._check(now)
        else:
            self._idle += 1
        self._handle = loop.call_later(TICK, self._tick) if self.active or self._idle < IDLE_TICKS else None
