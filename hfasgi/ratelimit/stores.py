"""Limiter stores: fixed-window counters, decided atomically. In memory (the default) or in Redis.

A window starts with the first request of a principal and lasts the limit's window; every counter
of one decision (requests and tokens) is checked before any is charged, so a refused request costs
nothing. A token reservation is later *settled*: the difference between what was reserved and what
was used is added to the window it was charged to (if that window is still the current one).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from hfasgi.limits import Limit
from hfasgi.redis_client import RedisConnection

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = ["Charge", "Decision", "LimiterStore", "MemoryLimiterStore", "RedisLimiterStore", "WindowState"]


@dataclass(frozen=True, slots=True)
class Charge:
    """One counter of a decision: its name (``requests``/``tokens``), its limit and this request's cost."""

    name: str
    limit: Limit
    cost: int


@dataclass(slots=True)
class WindowState:
    """A counter after the decision: units used in the window, seconds until it resets, and its id."""

    used: int
    reset: float
    window_id: int

    def remaining(self, limit: Limit) -> int:
        return max(0, limit.count - self.used)

    def reset_seconds(self) -> int:
        """Whole seconds until the window resets (at least 1)."""
        return max(1, math.ceil(self.reset))


@dataclass(slots=True)
class Decision:
    """The answer for one request: ``refused`` is the index of the charge that did not fit, or ``None``."""

    refused: int | None
    states: tuple[WindowState, ...]

    @property
    def allowed(self) -> bool:
        return self.refused is None


class LimiterStore(Protocol):
    """What :class:`~hfasgi.ratelimit.RateLimiter` asks of a store."""

    async def acquire(self, identity: str, charges: Sequence[Charge]) -> Decision:
        """Charge every counter, or none when one of them would go over its limit."""
        ...

    async def settle(self, identity: str, charge: Charge, window_id: int, delta: int) -> None:
        """Add ``delta`` (may be negative) to the counter of ``charge`` if ``window_id`` is still current."""
        ...

    async def open(self) -> None: ...

    async def aclose(self) -> None: ...


class _Window:
    __slots__ = ("expires", "id", "used")

    def __init__(self, now: float, window: int, window_id: int) -> None:
        self.expires = now + window
        self.id = window_id
        self.used = 0


class MemoryLimiterStore:
    """Counters in this process: limits per replica, nothing to run.

    A plain dict of windows, swept of expired ones whenever it reaches ``maxsize`` (then the oldest
    live windows go first). Measured against ``cachetools.TLRUCache``, which does the same with a
    timer call and a linked-list update on every access, this halves the cost of a decision.
    """

    def __init__(self, *, maxsize: int = 100_000) -> None:
        if maxsize < 1:
            raise ValueError(f"MemoryLimiterStore.maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._windows: dict[str, _Window] = {}
        self._serial = 0

    def _make_room(self, now: float) -> None:
        windows = self._windows
        for key in [k for k, w in windows.items() if w.expires <= now]:
            del windows[key]
        while len(windows) >= self.maxsize:  # all live: the oldest started windows go first
            del windows[next(iter(windows))]

    async def acquire(self, identity: str, charges: Sequence[Charge]) -> Decision:
        now = time.monotonic()
        windows = self._windows
        found: list[_Window] = []
        fresh: list[tuple[str, _Window]] = []
        refused = None
        for i, charge in enumerate(charges):
            key = f"{identity}\x00{charge.name}\x00{charge.limit.window}"
            window = windows.get(key)
            if window is None or window.expires <= now:
                self._serial += 1
                window = _Window(now, charge.limit.window, self._serial)
                fresh.append((key, window))
            found.append(window)
            if refused is None and window.used + charge.cost > charge.limit.count:
                refused = i
        if refused is None:  # a refusal starts no window (as in Redis): only an admitted request does
            for key, window in fresh:
                if len(windows) >= self.maxsize:
                    self._make_room(now)
                windows.pop(key, None)  # re-inserted: dict order stays the order windows started
                windows[key] = window
            for window, charge in zip(found, charges, strict=True):
                window.used += charge.cost
        return Decision(
            refused,
            tuple(
                WindowState(w.used, min(w.expires - now, c.limit.window), w.id)  # min: float rounding
                for w, c in zip(found, charges, strict=True)
            ),
        )

    async def settle(self, identity: str, charge: Charge, window_id: int, delta: int) -> None:
        window = self._windows.get(f"{identity}\x00{charge.name}\x00{charge.limit.window}")
        if window is not None and window.id == window_id and window.expires > time.monotonic():
            window.used = max(0, window.used + delta)

    async def open(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


# One round trip per decision. KEYS: one hash per counter; ARGV: limit, window (ms), cost per counter.
# Returns {refused index or 0, then used, ms to reset and window id (its start, ms) per counter}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local starts, used, fresh = {}, {}, {}
local refused = 0
for i = 1, n do
  local limit, window, cost = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local v = redis.call('HMGET', KEYS[i], 's', 'u')
  local s, u = tonumber(v[1]), tonumber(v[2]) or 0
  if s == nil or now >= s + window then s = now; u = 0; fresh[i] = true end
  starts[i], used[i] = s, u
  if refused == 0 and u + cost > limit then refused = i end
end
local out = {refused}
for i = 1, n do
  local window, cost = tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  if refused == 0 then
    if fresh[i] then
      redis.call('HSET', KEYS[i], 's', starts[i], 'u', cost)
      redis.call('PEXPIRE', KEYS[i], window)
    else
      redis.call('HINCRBY', KEYS[i], 'u', cost)
    end
    used[i] = used[i] + cost
  end
  out[#out + 1] = used[i]
  out[#out + 1] = starts[i] + window - now
  out[#out + 1] = starts[i]
end
return out
"""

_SETTLE = """
local s = redis.call('HGET', KEYS[1], 's')
if s and tonumber(s) == tonumber(ARGV[1]) then
  if redis.call('HINCRBY', KEYS[1], 'u', ARGV[2]) < 0 then redis.call('HSET', KEYS[1], 'u', 0) end
  return 1
end
return 0
"""


class RedisLimiterStore:
    """Counters in Redis, shared by every replica: one atomic script, one round trip per decision.

    Keys are ``<prefix>rl:{<identity>}:<name>:<window>`` (the braces keep one principal's counters in
    one Redis Cluster slot); they expire with their window. Time is Redis's own clock, so replicas
    with skewed clocks still agree.

    A call that times out on the client (Redis hung, not down) may still run when Redis resumes: the
    request was refused or served uncounted, yet its charge lands later. Limits then err on the
    strict side by at most the requests that timed out.
    """

    def __init__(self, redis: RedisConnection, *, prefix: str = "hfasgi:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._acquire: AsyncScript | None = None
        self._settle: AsyncScript | None = None

    async def open(self) -> None:
        self._acquire = self._settle = None  # scripts are bound to a client: a reopened one needs new ones
        await self.redis.open()

    async def aclose(self) -> None:
        await self.redis.aclose()

    def _key(self, identity: str, charge: Charge) -> str:
        return f"{self.prefix}rl:{{{identity}}}:{charge.name}:{charge.limit.window}"

    async def acquire(self, identity: str, charges: Sequence[Charge]) -> Decision:
        script = self._acquire
        if script is None:
            script = self._acquire = self.redis.client.register_script(_ACQUIRE)
        args: list[int] = []
        for charge in charges:
            args += (charge.limit.count, charge.limit.window * 1000, charge.cost)
        reply = await script(keys=[self._key(identity, c) for c in charges], args=args)
        refused = int(reply[0])
        states = tuple(
            WindowState(int(reply[i]), int(reply[i + 1]) / 1000, int(reply[i + 2])) for i in range(1, len(reply), 3)
        )
        return Decision(refused - 1 if refused else None, states)

    async def settle(self, identity: str, charge: Charge, window_id: int, delta: int) -> None:
        script = self._settle
        if script is None:
            script = self._settle = self.redis.client.register_script(_SETTLE)
        await script(keys=[self._key(identity, charge)], args=[window_id, delta])
