"""The in-process event bus: fan-out, and slow subscribers dropped rather than sent a subset."""

from __future__ import annotations

import asyncio
import threading

from mkd.services.event_bus import BusEvent, EventBus


def test_events_published_from_another_thread_arrive_in_order() -> None:
    async def scenario() -> list[int]:
        bus = EventBus(queue_size=10)
        sub = bus.subscribe()
        worker = threading.Thread(target=bus.publish, args=([BusEvent(i, "state", {}) for i in (1, 2, 3)],))
        worker.start()
        worker.join()
        got = [await asyncio.wait_for(sub.queue.get(), 1) for _ in range(3)]
        bus.unsubscribe(sub)
        assert bus.subscribers == 0
        return [e.id for e in got if e is not None]

    assert asyncio.run(scenario()) == [1, 2, 3]


def test_a_slow_subscriber_is_cut_off_not_sent_a_subset() -> None:
    async def scenario() -> tuple[list[BusEvent | None], list[BusEvent | None]]:
        bus = EventBus(queue_size=4)
        slow, fast = bus.subscribe(), bus.subscribe()
        bus.publish([BusEvent(i, "state", {}) for i in range(1, 4)])
        await asyncio.sleep(0)
        drained = [fast.queue.get_nowait() for _ in range(3)]
        bus.publish([BusEvent(i, "state", {}) for i in range(4, 10)])  # slow never reads
        await asyncio.sleep(0)
        slow_items = []
        while not slow.queue.empty():
            slow_items.append(slow.queue.get_nowait())
        return drained, slow_items

    drained, slow_items = asyncio.run(scenario())
    assert [e.id for e in drained if e] == [1, 2, 3]
    assert slow_items == [None]  # only the end-of-stream marker: the stream closes, the client reconnects


def test_close_ends_every_stream() -> None:
    async def scenario() -> BusEvent | None:
        bus = EventBus()
        sub = bus.subscribe()
        bus.close()
        return await asyncio.wait_for(sub.queue.get(), 1)

    assert asyncio.run(scenario()) is None


def test_the_daemons_own_followers_are_not_client_streams() -> None:
    async def scenario() -> tuple[int, int]:
        bus = EventBus()
        bus.subscribe(client=False)  # the reconciler's
        client = bus.subscribe()
        counted = bus.subscribers
        bus.unsubscribe(client)
        return counted, bus.subscribers

    assert asyncio.run(scenario()) == (1, 0)
