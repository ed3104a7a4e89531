"""Event streams send what is ready in one write (mkd.services.event_stream, issue 15 item 4):
a burst reaches a stream as one batch, in order."""

from __future__ import annotations

import asyncio

from fastapi.testclient import TestClient

from mkd.services.context import Daemon
from mkd.services.event_bus import BusEvent
from mkd.services.event_stream import StreamEvent, stream_events
from tests.helpers import create


def test_a_burst_reaches_a_stream_as_one_batch_in_order(client: TestClient) -> None:
    daemon: Daemon = client.app.state.daemon  # type: ignore[attr-defined]
    create(client, "web", cpus=[2])  # an event in the log: the stream starts after it

    async def scenario() -> list[list[StreamEvent]]:
        stream = stream_events(daemon, None)
        first = asyncio.ensure_future(anext(stream))
        while daemon.bus.subscribers == 0:
            await asyncio.sleep(0)
        after = 10**9  # ids far above the log's: live events, not yet replayed
        daemon.bus.publish([BusEvent(after + n, "test", {"n": n}) for n in (1, 2, 3)])
        batches = [await first]
        daemon.bus.publish([BusEvent(after + 4, "test", {"n": 4})])
        batches.append(await anext(stream))
        await stream.aclose()
        return batches

    batches = client.portal.call(scenario)  # type: ignore[union-attr]
    assert [[event.id - 10**9 for event in batch if event.id] for batch in batches] == [[1, 2, 3], [4]]
    assert batches[0][0].data == '{"n": 1}' and batches[0][0].event == "test"
