"""M32-M37 (spec 8.8): the console device /dev/mktty, and what a simulated spawn prints on it
(issue 10 item 4: a deterministic boot log, a line per second, a panic trace)."""

from __future__ import annotations

import select
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import BackendFactory
from mk2_setup import HALT, HALT_FORCE, START, active_web, load_web, ready_web

from mkd.backends.simulated import boot_log
from mkd.backends.simulated.kernel import SimulatedKernel
from mkd.backends.simulated.mktty import USABLE_BYTES, MkttyFile, parse_id
from mkd.errors import KernelError, errno_name


class SteppedClock:
    def __init__(self, kernel: SimulatedKernel) -> None:
        self.now = kernel.clock()
        kernel.clock = lambda: self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _errno(call: object, *args: object) -> str:
    with pytest.raises(KernelError) as exc:
        call(*args)  # type: ignore[operator]
    return errno_name(exc.value.errno_code)


def _read_all(fd: MkttyFile) -> bytes:
    out = b""
    while fd.readable():
        out += fd.read()
    return out


def test_m32_read_before_connecting(make_backend: BackendFactory) -> None:
    kernel = ready_web(make_backend)
    fd = kernel.console.open()
    assert _errno(fd.read) == "ENOTCONN"
    assert not fd.readable()  # poll: writable only


def test_m33_the_first_write_must_name_an_instance(make_backend: BackendFactory) -> None:
    kernel = ready_web(make_backend)
    fd = kernel.console.open()
    assert _errno(fd.write, b"0\n") == "EINVAL"
    assert _errno(fd.write, b"abc") == "EINVAL"
    assert _errno(fd.write, b"99\n") == "ENODEV"
    assert _errno(fd.write, b"99999999999\n") == "ERANGE"
    assert _errno(fd.read) == "ENOTCONN"  # none of these connected it


def test_kstrtoint_reads_15_bytes_and_one_newline() -> None:
    assert parse_id(b"1\n") == 1
    assert parse_id(b"+7") == 7
    assert parse_id(b"000000000000001" + b"junk") == 1
    with pytest.raises(KernelError):
        parse_id(b"1\n\n")


def test_m34_input_needs_a_kimage(make_backend: BackendFactory) -> None:
    kernel = ready_web(make_backend)
    fd = kernel.console.open()
    assert fd.write(b"1\n") == 2  # READY is accepted
    assert _errno(fd.write, b"ls\n") == "ENODEV"


def test_m35_only_the_newest_reader_gets_output(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = active_web(make_backend, images["vmlinux"])
    SteppedClock(kernel)
    first, second = kernel.console.open(), kernel.console.open()
    assert second.write(b"1\n") == 2
    assert first.write(b"1\n") == 2  # connected later, but opened first
    kernel.spawn_print(1, b"hi")
    assert second.read() == b"hi"
    assert _errno(first.read) == "EAGAIN"
    second.close()
    kernel.spawn_print(1, b"again")
    assert first.read() == b"again"


def test_m36_a_full_buffer_drops_the_newest_bytes(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = active_web(make_backend, images["vmlinux"])
    SteppedClock(kernel)
    fd = kernel.console.open()
    fd.write(b"1\n")
    printed = bytes(index % 251 for index in range(20_000))
    assert kernel.spawn_print(1, printed) == USABLE_BYTES == 16_383
    assert _read_all(fd) == printed[:16_383]


def test_output_with_no_reader_is_dropped(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = active_web(make_backend, images["vmlinux"])
    SteppedClock(kernel)
    assert kernel.spawn_print(1, b"lost") == 0
    fd = kernel.console.open()
    fd.write(b"1\n")
    assert _errno(fd.read) == "EAGAIN"


def test_m37_input_queued_while_loaded_is_lost_at_start(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = ready_web(make_backend)
    load_web(kernel, images["vmlinux"])
    fd = kernel.console.open()
    fd.write(b"1\n")
    assert fd.write(b"x") == 1
    kernel.reboot(START, 1)
    assert kernel.spawn_console_input(1) == b""
    assert fd.write(b"ls\n") == 3
    assert kernel.spawn_console_input(1) == b"ls\n"


def test_a_full_ring_refuses_input(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    """spec 8.8.3: messages of 4080 bytes into a ring of 63; a partial write returns what was sent."""
    kernel = ready_web(make_backend)
    load_web(kernel, images["vmlinux"])
    fd = kernel.console.open()
    fd.write(b"1\n")
    assert fd.write(b"y" * 4080 * 62) == 4080 * 62
    assert fd.write(b"z" * 4080 * 2) == 4080  # the 63rd message fits, the 64th does not
    assert _errno(fd.write, b"w") == "ENOSPC"


def _booted(make_backend: BackendFactory, images: dict[str, Path]) -> tuple[SimulatedKernel, MkttyFile, SteppedClock]:
    kernel = ready_web(make_backend)
    load_web(kernel, images["vmlinux"], b"console=mktty0 quiet")
    clock = SteppedClock(kernel)
    fd = kernel.console.open()
    fd.write(b"1\n")  # a reader attached before the start sees the whole boot
    kernel.reboot(START, 1)
    return kernel, fd, clock


def test_the_boot_log_names_the_instance(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel, fd, clock = _booted(make_backend, images)
    web = kernel.read_instance(1)
    chunks = ", ".join(f"{chunk.base:#x}+{chunk.bytes:#x}" for chunk in web.memory)
    assert fd.read().decode().splitlines() == [
        "[    0.000000] multikernel: instance 1 (web) booting on mktty0",
        "[    0.000000] multikernel: cpus 1,2",
        f"[    0.000000] multikernel: memory {chunks}",
        "[    0.000000] Kernel command line: console=mktty0 quiet",
    ]
    clock.advance(3.5)
    assert fd.read() == b"".join(boot_log.uptime_line("web", second) for second in (1, 2, 3))
    assert not fd.readable()  # the fourth second has not passed
    clock.advance(1)
    assert fd.read() == b"[    4.000000] web: up 4 s\n"


def test_the_boot_log_is_the_same_every_time(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel, fd, clock = _booted(make_backend, images)
    logs = []
    for _ in range(2):
        clock.advance(2)
        logs.append(_read_all(fd))
        kernel.reboot(HALT_FORCE, 1)
        kernel.reboot(START, 1)
    assert logs[0] == logs[1] and logs[0].count(b"\n") == 6


def test_a_reader_connected_later_gets_no_old_lines(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = active_web(make_backend, images["vmlinux"])
    clock = SteppedClock(kernel)
    clock.advance(5)
    fd = kernel.console.open()
    fd.write(b"1\n")
    assert _errno(fd.read) == "EAGAIN"
    clock.advance(1)
    assert fd.read() == boot_log.uptime_line("web", 6)


def test_an_injected_panic_prints_a_trace(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel, fd, clock = _booted(make_backend, images)
    fd.read()
    clock.advance(2)
    kernel.spawn_exit(1, "panic")
    text = _read_all(fd).decode()
    assert "Kernel panic - not syncing" in text and "MK_SYS_HALTED" in text
    assert text.splitlines()[0] == "[    1.000000] web: up 1 s"
    assert kernel.status_file("web") == "loaded\n"
    clock.advance(5)
    assert not fd.readable()  # a parked spawn prints nothing


def test_a_panic_fault_with_panic_timeout_says_when_it_reboots(
    make_backend: BackendFactory, images: dict[str, Path]
) -> None:
    kernel = ready_web(make_backend, faults={"instances": {"web": {"after_start": "panic", "delay_s": 3}}})
    load_web(kernel, images["vmlinux"], b"panic=10")
    clock = SteppedClock(kernel)
    fd = kernel.console.open()
    fd.write(b"1\n")
    kernel.reboot(START, 1)
    fd.read()
    clock.advance(4)
    text = _read_all(fd).decode()
    assert "[    3.000000] Rebooting in 10 seconds.." in text
    assert "up 3 s" not in text.split("Kernel panic")[1]  # nothing after the panic
    assert kernel.status_file("web") == "active\n"
    clock.advance(9)
    assert kernel.status_file("web") == "loaded\n"


def test_a_ring_full_of_input_refuses_the_graceful_halt(
    make_backend: BackendFactory, images: dict[str, Path]
) -> None:
    """spec 8.3.1: the shutdown message cannot be sent into a full ring (ENOSPC); force still works."""
    kernel = active_web(make_backend, images["vmlinux"])
    kernel.spawn_exit(1, "hang")  # a hung spawn no longer drains its ring
    fd = kernel.console.open()
    fd.write(b"1\n")
    assert fd.write(b"q" * 4080 * 63) == 4080 * 63
    assert _errno(kernel.reboot, HALT, 1) == "ENOSPC"
    assert kernel.status_file("web") == "active\n"
    assert kernel.reboot(HALT_FORCE, 1) == 0


def _polls_readable(fd: MkttyFile) -> bool:
    return bool(select.select([fd.fileno()], [], [], 0)[0])


def _ticker(kernel: SimulatedKernel, monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[list[int]]]:
    """A tick of the console's ticker that answers what it asked of the kernel (reads and
    connects sync on their own, so only the tick's own calls are counted)."""
    asked: list[list[int]] = []
    real = kernel.console_sync_all

    def console_sync_all(instance_ids: list[int]) -> None:
        asked.append(list(instance_ids))
        real(instance_ids)

    monkeypatch.setattr(kernel, "console_sync_all", console_sync_all)

    def tick() -> list[list[int]]:
        asked.clear()
        kernel.console.tick()
        return list(asked)

    return tick


def test_the_ticker_produces_lines_only_for_a_reader_with_nothing_buffered(
    make_backend: BackendFactory, images: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel, fd, clock = _booted(make_backend, images)
    tick = _ticker(kernel, monkeypatch)
    assert _polls_readable(fd)  # the boot log waits to be read
    clock.advance(2)
    assert tick() == []  # it polls readable already: more lines would tell its reader nothing
    log = fd.read().decode().splitlines()
    assert log[-2:] == [boot_log.uptime_line("web", s).decode().rstrip("\n") for s in (1, 2)]  # in order
    assert not _polls_readable(fd)
    clock.advance(1)
    assert tick()[-1] == [1] and _polls_readable(fd)  # the third second's line, seen by poll
    assert fd.read() == boot_log.uptime_line("web", 3)


def test_the_ticker_follows_the_newest_reader_as_readers_come_and_go(
    make_backend: BackendFactory, images: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel, older, clock = _booted(make_backend, images)  # the boot log waits in `older`
    tick = _ticker(kernel, monkeypatch)
    newer = kernel.console.open()
    newer.write(b"1\n")  # the newest connected file gets the output (8.8.4); it holds nothing yet
    clock.advance(1)
    assert tick() == [[1]] and newer.read() == boot_log.uptime_line("web", 1)
    clock.advance(1)
    newer.close()  # the older file is the newest again, and it still holds the boot log
    assert tick() == []
    _read_all(older)
    clock.advance(1)
    assert tick() == [[1]] and _polls_readable(older)
    older.close()
    assert tick() == []  # nobody reads: nothing to produce


def test_lines_produced_at_the_read_drop_as_they_would_have_when_printed(
    make_backend: BackendFactory, images: dict[str, Path]
) -> None:
    kernel, fd, clock = _booted(make_backend, images)
    boot = fd.read()
    filler = b"f" * (USABLE_BYTES - 10)
    assert kernel.spawn_print(1, filler) == len(filler)
    clock.advance(3)
    kernel.console.tick()  # the buffer is not empty: seconds 1-3 are produced by the read
    # Printed at once, the first line would have filled the last 10 bytes and the others dropped.
    assert _read_all(fd) == filler + boot_log.uptime_line("web", 1)[:10]
    assert boot.startswith(b"[    0.000000] multikernel: instance 1 (web)")
