"""When a console is read again (console_pace) and how ConsoleHistory keeps to it: one-shot
readiness armed again after the console's pace, eager after a boot began and while followed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mkd.backends.host.backend import HostBackend
from mkd.services.console_history import ConsoleHistory
from mkd.services.console_pace import EAGER_S, GATHER_S, MAX_PACE_S, READ_BYTES, due_at, pace_s

MiB = 1 << 20
UID = "6f1c0c36-0000-4000-8000-000000000002"


def test_a_console_waits_until_a_quarter_of_its_buffer_would_have_filled() -> None:
    assert pace_s(60, 1.0, eager=False) == MAX_PACE_S  # a line a second: fills in 4.5 minutes
    assert pace_s(1000, 1.0, eager=False) == pytest.approx(READ_BYTES / 1000 / 4)  # 1 kB/s: 4 s
    assert pace_s(4000, 10.0, eager=False) == GATHER_S  # over a KiB since the last read: busy
    assert pace_s(1 << 20, 1.0, eager=False) == 0.0  # fills within four gathering times: at once
    assert pace_s(60, 1.0, eager=True) == GATHER_S  # a boot began, or somebody follows
    assert pace_s(1 << 20, 1.0, eager=True) == 0.0
    assert pace_s(0, 1.0, eager=False) == MAX_PACE_S
    assert pace_s(READ_BYTES, 0.0, eager=False) == 0.0  # no time passed: as fast as it gets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _print(client: HostBackend, data: bytes) -> None:
    client.io.kernel.spawn_print(1, data)  # type: ignore[attr-defined]


def _ready(history: ConsoleHistory, timeout_s: float = 0.2) -> list[int]:
    """What one wait reports, after a wait that only took the hurried ids (the wake descriptor)."""
    for _ in range(2):
        ready = history.wait_ready(timeout_s)
        assert ready is not None
        if ready:
            return ready
    return []


def test_a_slow_console_is_reported_again_only_after_its_pace(tmp_path: Path, client: HostBackend) -> None:
    history = ConsoleHistory(tmp_path / "console", cap_bytes=1 << 20, open_console=client.open_console)
    clock = history.clock = Clock()
    try:
        history.attach(1, UID, new_boot=True)
        client.start(1)
        assert _ready(history) == [1]  # a boot began: its log is read as soon as it comes
        history.drain_some([1])
        clock.now += EAGER_S + GATHER_S
        _print(client, b"one line\n")
        assert _ready(history) == [1]  # eager when it was read: armed again after GATHER_S
        history.drain_some([1])  # a line in over 10 s: its next read waits MAX_PACE_S

        _print(client, b"two\n")
        assert _ready(history, 0.1) == []  # readable, not reported: its pace has not passed
        clock.now += MAX_PACE_S
        assert _ready(history) == [1]
        history.drain_some([1])
        assert history.tail(1, 1 << 20).endswith("one line\ntwo\n")

        _print(client, b"three\n")
        assert _ready(history, 0.1) == []
        history.hurry(1)  # somebody follows it: reported at once
        assert _ready(history) == [1]
        history.drain_some([1])
        _print(client, b"four\n")
        assert _ready(history) == [1]  # and it stays eager for a while
    finally:
        history.close()


def test_a_new_boot_makes_a_paced_console_eager(tmp_path: Path, client: HostBackend) -> None:
    history = ConsoleHistory(tmp_path / "console", cap_bytes=1 << 20, open_console=client.open_console)
    clock = history.clock = Clock()
    try:
        history.attach(1, UID, new_boot=True)
        client.start(1)
        assert _ready(history) == [1]
        clock.now += EAGER_S + 1
        history.drain_some([1])  # paced: MAX_PACE_S
        client.stop(1, force=True)
        history.attach(1, UID, new_boot=True)
        client.start(1)
        assert _ready(history) == [1]  # the next boot's log is read at once
        history.drain_some([1])
        assert history.tail(1, 1 << 20).count("booting on mktty0") == 1  # the current boot's
    finally:
        history.close()


def test_hurry_after_close_writes_nothing(tmp_path: Path, client: HostBackend) -> None:
    history = ConsoleHistory(tmp_path / "console", cap_bytes=1 << 20, open_console=client.open_console)
    history.attach(1, UID, new_boot=True)
    history.close()
    spare = os.eventfd(0, os.EFD_NONBLOCK)  # may take the number the wake-up descriptor had
    try:
        history.hurry(1)
        with pytest.raises(BlockingIOError):
            os.eventfd_read(spare)  # nothing was written to it
    finally:
        os.close(spare)


def test_slow_consoles_are_read_again_on_whole_seconds() -> None:
    assert due_at(100.3, 10.0) == 110.0  # never later than its pace
    assert due_at(100.7, 10.0) == 110.0  # read together with the one above
    assert due_at(100.3, 0.05) == pytest.approx(100.35)  # a fast one keeps its own pace
    assert due_at(100.9, 1.0) == pytest.approx(101.4)  # at least half a second after the read
