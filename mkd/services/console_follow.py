"""Console followers (SSE streams of an instance's console): how many are open, how they wait for
new bytes without polling, and how stored bytes become `line` events (DESIGN "Desired state").

The reader thread tells `ConsoleFollowers` which instances got output; it wakes only the
followers of those instances, through the event loop (one call per round of reads, and none
when nobody follows).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import anyio.to_thread

from mkd.errors import OverLimit
from mkd.services.console_history import ConsoleHistory

log = logging.getLogger("mkd.console")

READ_CHUNK_BYTES = 64 << 10
# A line the console has not ended yet (a prompt, or a line cut between two reads) is sent once
# no more bytes came for this long; a longer line is sent in pieces of at most this many bytes.
PARTIAL_LINE_S = 0.5
MAX_LINE_BYTES = 16 << 10
STREAM_RETRY_AFTER_S = 5


@dataclass(frozen=True)
class ConsoleLine:
    """One `line` event: the text without its line end, and the global offset just past it."""

    text: str
    offset: int


class ConsoleFollowers:
    """The open console streams of one daemon and their wake-ups; bound to the event loop."""

    def __init__(self, history: ConsoleHistory, loop: asyncio.AbstractEventLoop, *, limit: int) -> None:
        self.history = history
        self.limit = limit
        self.streams = 0
        self.closed = history.closed
        self._loop = loop
        self._events: dict[int, asyncio.Event] = {}
        self._waiting: dict[int, int] = {}
        history.listener = self._heard

    def check_room(self) -> None:
        """Past `[limits] max_console_streams` open streams: 429 + Retry-After."""
        if self.streams >= self.limit:
            raise OverLimit("max_console_streams", f"{self.limit} console streams are open, the daemon's "
                            "maximum ([limits] max_console_streams)", retry_after_s=STREAM_RETRY_AFTER_S)

    async def wait_beyond(self, instance_id: int, offset: int, timeout_s: float | None) -> bool:
        """Until the console holds bytes past `offset`, the instance is forgotten or the daemon
        stops (True), or `timeout_s` passes (False)."""
        event = self._events.get(instance_id)
        if event is None:
            event = self._events[instance_id] = asyncio.Event()
        self._waiting[instance_id] = self._waiting.get(instance_id, 0) + 1
        self.history.hurry(instance_id)  # followed: read as soon as it prints, not at its idle pace
        try:
            # Checked after the event is in place, so output stored meanwhile is not missed.
            end = self.history.stored_end(instance_id)
            if self.closed or end is None or end > offset:
                return True
            if timeout_s is None:
                await event.wait()
                return True
            with anyio.move_on_after(timeout_s):
                await event.wait()
                return True
            return False
        finally:
            self._waiting[instance_id] -= 1
            if not self._waiting[instance_id]:
                del self._waiting[instance_id]
                self._events.pop(instance_id, None)

    def _heard(self, ids: set[int] | None) -> None:
        """From the reader thread (or any): these instances got output; None: closing."""
        if ids is not None and not any(i in self._waiting for i in ids):
            return
        try:
            self._loop.call_soon_threadsafe(self._wake, ids)
        except RuntimeError:  # the loop is gone: nobody follows any more
            pass

    def _wake(self, ids: set[int] | None) -> None:
        if ids is None:
            self.closed = True
            ids = set(self._events)
        for instance_id in ids:
            event = self._events.pop(instance_id, None)
            if event is not None:
                event.set()  # its waiters return; the next wait makes a fresh event


async def follow(followers: ConsoleFollowers, instance_id: int, after: int) -> AsyncIterator[ConsoleLine]:
    """The console's lines from global offset `after` on, then as they come, until the instance
    is forgotten or the daemon stops."""
    history = followers.history
    sent = after  # where the next event starts
    pending = b""  # bytes from `sent` on that end no line yet
    while True:
        start, data = await anyio.to_thread.run_sync(history.read_from, instance_id, sent + len(pending),
                                                     READ_CHUNK_BYTES)
        if data:
            if start != sent + len(pending):  # those bytes are no longer kept
                sent, pending = start, b""
            lines, pending = split_lines(pending + data, sent)
            for line in lines:
                yield line
                sent = line.offset
            while len(pending) >= MAX_LINE_BYTES:
                piece, pending = _cut(pending, MAX_LINE_BYTES)
                sent += len(piece)
                yield ConsoleLine(_text(piece), sent)
            continue
        if followers.closed or history.stored_end(instance_id) is None:
            return
        grew = await followers.wait_beyond(instance_id, sent + len(pending), PARTIAL_LINE_S if pending else None)
        if not grew and pending:
            piece, pending = _cut(pending, len(pending))
            if piece:
                sent += len(piece)
                yield ConsoleLine(_text(piece), sent)


def split_lines(data: bytes, start: int) -> tuple[list[ConsoleLine], bytes]:
    """The ended lines of `data` (whose first byte is at global `start`) and the unended rest."""
    lines: list[ConsoleLine] = []
    offset = start
    begin = 0
    while True:
        end = data.find(b"\n", begin)
        if end < 0:
            return lines, data[begin:]
        offset += end + 1 - begin
        lines.append(ConsoleLine(_text(data[begin:end]), offset))
        begin = end + 1


def history_text(history: ConsoleHistory, instance_id: int) -> str:
    """The kept boots' output, oldest first, as text (UTF-8 with replacement characters), with
    what the console holds now (it may be read only every few seconds)."""
    history.drain_some([instance_id])
    parts = []
    for span in history.spans(instance_id):
        offset = span.start
        while offset < span.end:
            start, data = history.read_from(instance_id, offset, span.end - offset)
            if not data:
                break
            parts.append(data)
            offset = start + len(data)
    return b"".join(parts).decode(errors="replace")


def _text(line: bytes) -> str:
    return line.removesuffix(b"\r").decode(errors="replace")


def _cut(data: bytes, size: int) -> tuple[bytes, bytes]:
    """The first `size` bytes or fewer, never ending inside a UTF-8 character, and the rest."""
    cut = size
    for back in range(1, 4):  # a lead byte of a character that needs more bytes than are left
        if cut - back < 0:
            break
        byte = data[cut - back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: look further back
        needed = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
        if needed > back:
            cut -= back
        break
    if cut == 0:  # nothing but a cut character: send it as is rather than never
        cut = size
    return data[:cut], data[cut:]
