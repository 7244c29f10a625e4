"""The forwarder's Watchdog: deadlines and client disconnects end an exchange, and nothing else is swallowed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hfasgi.forwarding.watchdog import Watchdog

pytestmark = pytest.mark.anyio


class Client:
    """A ``receive`` that blocks until the test hangs up, counting calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.listening = asyncio.Event()
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        self.calls += 1
        self.listening.set()
        await self.gone.wait()
        return {"type": "http.disconnect"}


async def guarded(dog: Watchdog, work: Any) -> str:
    """Run ``work`` under ``dog`` the way the forwarder does; return how it ended."""
    with dog:
        await work
    return dog.reason or "done"


async def test_the_deadline_cancels_and_is_reported_as_a_timeout() -> None:
    dog = Watchdog(Client().receive, timeout=0.05)
    assert await guarded(dog, asyncio.sleep(30)) == "timeout"
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_quick_exchange_never_watches_the_client() -> None:
    client = Client()
    dog = Watchdog(client.receive, timeout=30, watch_after=0.2)
    assert await guarded(dog, asyncio.sleep(0)) == "done"
    await asyncio.sleep(0.3)
    assert client.calls == 0


async def test_a_client_that_leaves_a_slow_exchange_cancels_it() -> None:
    client = Client()
    dog = Watchdog(client.receive, timeout=30, watch_after=0.01)

    async def leave_soon() -> None:
        await client.listening.wait()  # the watcher has started
        client.gone.set()

    leaving = asyncio.ensure_future(leave_soon())
    assert await guarded(dog, asyncio.sleep(30)) == "disconnect"
    await leaving


async def test_the_deadline_moves_earlier_and_later() -> None:
    dog = Watchdog(Client().receive, timeout=30)
    dog.set_timeout(0.05)  # earlier than the first deadline: fires near 0.05 s, not 30 s
    assert await guarded(dog, asyncio.sleep(30)) == "timeout"

    dog = Watchdog(Client().receive, timeout=0.05)

    async def keep_extending() -> None:
        for _ in range(6):  # 0.12 s in all, past the first deadline
            dog.set_timeout(0.05)
            await asyncio.sleep(0.02)

    assert await guarded(dog, keep_extending()) == "done"


async def test_moving_the_deadline_keeps_the_pending_disconnect_watch() -> None:
    client = Client()
    dog = Watchdog(client.receive, timeout=30, watch_after=0.01)
    dog.set_timeout(20)  # before the watch has started: it must still start

    async def leave_once_watched() -> None:
        await client.listening.wait()
        client.gone.set()

    leaving = asyncio.ensure_future(leave_once_watched())
    assert await guarded(dog, asyncio.sleep(30)) == "disconnect"
    await leaving


async def test_someone_elses_cancellation_is_not_absorbed() -> None:
    dog = Watchdog(Client().receive, timeout=30)
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().call_later(0.01, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await guarded(dog, asyncio.sleep(30))
    task.uncancel()


async def test_a_disconnect_after_the_last_message_is_the_normal_end() -> None:
    client = Client()
    dog = Watchdog(client.receive, timeout=30, watch_after=0.01)

    async def finish_then_hang_up() -> None:
        await client.listening.wait()
        dog.finishing()
        client.gone.set()
        await asyncio.sleep(0.05)  # the watcher sees the disconnect and must stay quiet

    assert await guarded(dog, finish_then_hang_up()) == "done"
    assert dog.reason is None


async def test_many_exchanges_share_one_sweep_that_stops_when_idle() -> None:
    from hfasgi.forwarding import watchdog

    dogs = [Watchdog(Client().receive, timeout=30) for _ in range(3)]
    sweep = watchdog._Sweep.of(asyncio.get_running_loop())
    for dog in dogs:
        dog.__enter__()
    assert len(sweep.active) == 3
    assert sweep._handle is not None
    for dog in dogs:
        dog.__exit__(None, None, None)
    assert not sweep.active
    await asyncio.sleep(watchdog.TICK * (watchdog.IDLE_TICKS + 5))
    assert sweep._handle is None  # nothing in flight for a while: no timer left running
