"""The limiter-store contract, one suite for both stores: the memory store and the Redis store (its Lua script).

``RateLimiter`` relies on exactly this: fixed windows starting at a counter's first charge, all the
charges of one decision taken or none, refusals that cost nothing, settlements only into the window
they were reserved in, and atomic decisions under concurrency.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from hfasgi.limits import Limit
from hfasgi.ratelimit import Charge, Decision, LimiterStore, MemoryLimiterStore, RedisLimiterStore, WindowState

pytestmark = pytest.mark.anyio

MINUTE = 60
EXPIRY_TIMEOUT = 5.0
"""How long a 1-second window may take to be seen expired before the test gives up (a hang detector)."""


def requests(count: int, window: int = MINUTE) -> Charge:
    return Charge("requests", Limit(count, window), 1)


def tokens(count: int, cost: int, window: int = MINUTE) -> Charge:
    return Charge("tokens", Limit(count, window), cost)


def check_reset(state: WindowState, window: int) -> None:
    """``reset`` is within (0, window]: up to float rounding (the memory store's ``now + window - now`` may
    exceed ``window`` by one ulp), and exactly in the whole seconds the headers show."""
    assert 0 < state.reset <= window * (1 + 1e-12), state
    assert 1 <= state.reset_seconds() <= window, state


async def until_new_window(store: LimiterStore, identity: str, charge: Charge, old: int) -> Decision:
    """Poll ``acquire`` (a refusal costs nothing) until ``charge`` lands in a window other than ``old``."""
    deadline = time.monotonic() + EXPIRY_TIMEOUT
    while True:
        decision = await store.acquire(identity, [charge])
        if decision.allowed and decision.states[0].window_id != old:
            return decision
        assert time.monotonic() < deadline, f"the window {old} did not expire within {EXPIRY_TIMEOUT} s"
        await asyncio.sleep(0.05)


async def sleep_past(state: WindowState) -> None:
    """Sleep until the window of ``state`` is over (by the store's own count), without touching the store."""
    await asyncio.sleep(state.reset + 0.05)


async def test_both_stores_run(store: LimiterStore) -> None:
    """The suite really runs against both implementations (not twice against one)."""
    assert isinstance(store, MemoryLimiterStore | RedisLimiterStore)


async def test_a_fresh_window_admits_exactly_the_limit(store: LimiterStore) -> None:
    charge = requests(5)
    for n in range(1, 6):
        decision = await store.acquire("alice", [charge])
        assert decision.allowed and decision.refused is None
        assert len(decision.states) == 1 and decision.states[0].used == n
        assert decision.states[0].remaining(charge.limit) == 5 - n
        check_reset(decision.states[0], MINUTE)
    refused = await store.acquire("alice", [charge])
    assert not refused.allowed and refused.refused == 0
    assert refused.states[0].used == 5 and refused.states[0].remaining(charge.limit) == 0
    check_reset(refused.states[0], MINUTE)


async def test_every_decision_of_a_window_has_its_id(store: LimiterStore) -> None:
    charge = requests(3)
    ids = {(await store.acquire("alice", [charge])).states[0].window_id for _ in range(4)}  # the 4th is refused
    assert len(ids) == 1


async def test_refused_names_the_charge_that_did_not_fit(store: LimiterStore) -> None:
    """``refused`` is the index of the charge over its limit, and the states report every counter."""
    decision = await store.acquire("alice", [requests(100), tokens(10, 11)])
    assert decision.refused == 1 and not decision.allowed
    assert [s.used for s in decision.states] == [0, 0]
    check_reset(decision.states[0], MINUTE)
    check_reset(decision.states[1], MINUTE)
    full = await store.acquire("bob", [requests(1), tokens(10, 1)])
    assert full.allowed
    again = await store.acquire("bob", [requests(1), tokens(10, 1)])
    assert again.refused == 0  # the first charge that does not fit
    assert [s.used for s in again.states] == [1, 1]


async def test_a_refused_decision_charges_nothing(store: LimiterStore) -> None:
    charge = requests(2)
    for _ in range(2):
        assert (await store.acquire("alice", [charge])).allowed
    for _ in range(5):
        refused = await store.acquire("alice", [charge])
        assert refused.refused == 0 and refused.states[0].used == 2  # five refusals later: still 2
    # A lower cost fits again where a higher one did not: the refusals left the counter where it was.
    budget = tokens(10, 8)
    assert (await store.acquire("bob", [budget])).states[0].used == 8
    assert (await store.acquire("bob", [tokens(10, 3)])).refused == 0
    fits = await store.acquire("bob", [tokens(10, 2)])
    assert fits.allowed and fits.states[0].used == 10


async def test_a_charge_that_does_not_fit_leaves_the_others_uncharged(store: LimiterStore) -> None:
    """Requests and tokens in one decision: when the tokens do not fit, the request is not counted either."""
    first = await store.acquire("alice", [requests(10), tokens(100, 60)])
    assert first.allowed and [s.used for s in first.states] == [1, 60]
    refused = await store.acquire("alice", [requests(10), tokens(100, 50)])
    assert refused.refused == 1
    assert [s.used for s in refused.states] == [1, 60]  # nothing charged, requests included
    after = await store.acquire("alice", [requests(10), tokens(100, 40)])
    assert after.allowed and [s.used for s in after.states] == [2, 100]


async def test_a_request_limit_refusal_does_not_charge_tokens(store: LimiterStore) -> None:
    assert (await store.acquire("alice", [requests(1), tokens(100, 10)])).allowed
    refused = await store.acquire("alice", [requests(1), tokens(100, 10)])
    assert refused.refused == 0 and [s.used for s in refused.states] == [1, 10]
    only_tokens = await store.acquire("alice", [tokens(100, 1)])
    assert only_tokens.states[0].used == 11


async def test_identities_are_independent(store: LimiterStore) -> None:
    charge = requests(2)
    for _ in range(2):
        assert (await store.acquire("alice", [charge])).allowed
    assert (await store.acquire("alice", [charge])).refused == 0
    bob = await store.acquire("bob", [charge])
    assert bob.allowed and bob.states[0].used == 1
    carol = await store.acquire("anonymous:10.0.0.7", [charge])
    assert carol.allowed and carol.states[0].used == 1
    assert (await store.acquire("alice", [charge])).refused == 0


async def test_counters_are_independent_by_name_and_window(store: LimiterStore) -> None:
    """``requests`` and ``tokens``, and limits of different windows, are counters of their own."""
    assert (await store.acquire("alice", [requests(1)])).allowed
    assert (await store.acquire("alice", [requests(1)])).refused == 0
    assert (await store.acquire("alice", [tokens(1, 1)])).allowed
    other_window = await store.acquire("alice", [requests(1, window=3600)])
    assert other_window.allowed and other_window.states[0].used == 1
    check_reset(other_window.states[0], 3600)


async def test_windows_expire(store: LimiterStore) -> None:
    charge = requests(2, window=1)
    first = await store.acquire("alice", [charge])
    check_reset(first.states[0], 1)
    assert (await store.acquire("alice", [charge])).allowed
    refused = await store.acquire("alice", [charge])
    assert refused.refused == 0
    check_reset(refused.states[0], 1)
    fresh = await until_new_window(store, "alice", charge, first.states[0].window_id)
    assert fresh.states[0].used == 1  # a new window starts from zero
    check_reset(fresh.states[0], 1)


async def test_the_reset_counts_down_within_a_window(store: LimiterStore) -> None:
    """A fixed window: it starts with the first charge and later decisions (allowed or not) do not move it."""
    charge = requests(2, window=MINUTE)
    first = await store.acquire("alice", [charge])
    await asyncio.sleep(0.2)
    second = await store.acquire("alice", [charge])
    await asyncio.sleep(0.2)
    refused = await store.acquire("alice", [charge])
    assert refused.refused == 0
    assert first.states[0].reset > second.states[0].reset > refused.states[0].reset > 0
    assert first.states[0].window_id == second.states[0].window_id == refused.states[0].window_id
    assert first.states[0].reset > MINUTE - 1  # the window started at the first charge, not before


async def test_a_refusal_starts_no_window(store: LimiterStore) -> None:
    """A refused decision charges nothing, also for a counter whose window had expired: that counter's
    next window starts with its next *admitted* request, as it would have without the refusal.

    Requests per second and tokens per minute: the token budget is spent, the requests window expires,
    a request is refused for its tokens; the next admitted request must find a full second ahead.
    """
    per_second, budget = requests(100, window=1), tokens(10, 10)
    first = await store.acquire("alice", [per_second, budget])
    assert first.allowed
    await sleep_past(first.states[0])  # the requests window is over, the tokens window is not
    refused = await store.acquire("alice", [per_second, tokens(10, 1)])
    assert refused.refused == 1
    await asyncio.sleep(0.5)
    later = await store.acquire("alice", [per_second])
    assert later.allowed and later.states[0].used == 1
    assert later.states[0].reset > 0.9, (
        f"the requests window started with the refused request ({later.states[0].reset:.3f} s left "
        "instead of about 1 s): a refusal must not start a window"
    )


async def test_settle_refunds_and_adds(store: LimiterStore) -> None:
    reserve = tokens(100, 50)
    decision = await store.acquire("alice", [reserve])
    window_id = decision.states[0].window_id
    await store.settle("alice", reserve, window_id, -30)  # the response used 20 of the 50 reserved
    assert (await store.acquire("alice", [tokens(100, 1)])).states[0].used == 21
    await store.settle("alice", reserve, window_id, -1000)  # never below zero
    assert (await store.acquire("alice", [tokens(100, 1)])).states[0].used == 1
    await store.settle("alice", reserve, window_id, 50)  # used more than reserved
    assert (await store.acquire("alice", [tokens(100, 1)])).states[0].used == 52
    await store.settle("alice", reserve, window_id, 100)  # may go over the limit: it was really used
    over = await store.acquire("alice", [tokens(100, 1)])
    assert over.refused == 0 and over.states[0].used == 152 and over.states[0].remaining(reserve.limit) == 0


async def test_settle_touches_only_its_own_counter(store: LimiterStore) -> None:
    both = [requests(10), tokens(100, 40)]
    decision = await store.acquire("alice", both)
    await store.settle("alice", both[1], decision.states[1].window_id, -40)
    after = await store.acquire("alice", both)
    assert [s.used for s in after.states] == [2, 40]
    unrelated = await store.acquire("bob", [tokens(100, 1)])
    assert unrelated.states[0].used == 1


async def test_settle_into_a_rolled_over_window_is_ignored(store: LimiterStore) -> None:
    reserve = tokens(10, 5, window=1)
    old = (await store.acquire("alice", [reserve])).states[0].window_id
    new = await until_new_window(store, "alice", tokens(10, 1, window=1), old)
    assert new.states[0].used == 1
    await store.settle("alice", reserve, old, -1)  # a refund for the old window must not empty the new one
    await store.settle("alice", reserve, old, 7)  # nor may a late overrun fill it
    assert (await store.acquire("alice", [tokens(10, 1, window=1)])).states[0].used == 2


async def test_settle_after_the_window_expired_creates_nothing(store: LimiterStore) -> None:
    reserve = tokens(10, 5, window=1)
    decision = await store.acquire("alice", [reserve])
    await sleep_past(decision.states[0])
    await store.settle("alice", reserve, decision.states[0].window_id, 7)
    fresh = await store.acquire("alice", [tokens(10, 1, window=1)])
    assert fresh.allowed and fresh.states[0].used == 1
    assert fresh.states[0].window_id != decision.states[0].window_id


async def test_settle_with_an_unknown_window_id_is_ignored(store: LimiterStore) -> None:
    reserve = tokens(10, 5)
    window_id = (await store.acquire("alice", [reserve])).states[0].window_id
    await store.settle("alice", reserve, window_id + 1, -5)
    await store.settle("nobody", reserve, window_id, 3)
    assert (await store.acquire("alice", [tokens(10, 1)])).states[0].used == 6
    assert (await store.acquire("nobody", [tokens(10, 1)])).states[0].used == 1


async def test_concurrent_acquires_admit_exactly_the_limit(store: LimiterStore) -> None:
    charge = requests(10)
    decisions = await asyncio.gather(*(store.acquire("alice", [charge]) for _ in range(50)))
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 10
    assert sorted(d.states[0].used for d in allowed) == list(range(1, 11))  # each admitted one saw its own count
    assert all(d.refused == 0 and d.states[0].used == 10 for d in decisions if not d.allowed)
    assert len({d.states[0].window_id for d in decisions}) == 1


async def test_concurrent_multi_charge_decisions_never_overspend(store: LimiterStore) -> None:
    """Concurrent requests + tokens decisions: the token budget caps them, and no refused one counts a request."""
    charges = [requests(1000), tokens(100, 7)]
    decisions = await asyncio.gather(*(store.acquire("alice", charges) for _ in range(40)))
    allowed = sum(d.allowed for d in decisions)
    assert allowed == 100 // 7
    last = await store.acquire("alice", [requests(1000), tokens(100, 100 - 7 * allowed)])
    assert last.allowed and [s.used for s in last.states] == [allowed + 1, 100]
