"""M1-M9 (spec 8.1-8.4): status without notification, transactions never pending, halts, and a
spawn that powers off, panics or hangs on its own."""

from __future__ import annotations

import asyncio
import errno
import threading
import time
from pathlib import Path

import pytest
from conftest import BackendFactory, MiB, kernel_of, load_flags, spec, tree_baseline
from mk2_setup import HALT, HALT_FORCE, START, WEB, active_web, errno_of, load_web, machine, write_overlay

from mkd.backends.simulated import boot_log
from mkd.backends.simulated.kernel import SimulatedKernel
from mkd.config import SimulatorSettings
from mkd.kernel_types import KernelEvent


class SteppedClock:
    """The kernel's clock, moved by the test instead of sleeping."""

    def __init__(self, kernel: SimulatedKernel) -> None:
        self.now = kernel.clock()
        kernel.clock = lambda: self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _kimage_ids(kernel: SimulatedKernel) -> list[int]:
    """Instance ids of /proc/kimage rows (the first column of each row after the header)."""
    rows = kernel.proc_kimage().splitlines()[1:]
    return [int(row.split()[0]) for row in rows if row.split() and row.split()[0].isdigit()]


def _events_until_close(kernel: SimulatedKernel, stream: object) -> list[KernelEvent]:
    kernel.close()

    async def drain() -> list[KernelEvent]:
        return [event async for event in stream]  # type: ignore[attr-defined]

    return asyncio.run(drain())


def test_m1_status_changes_raise_no_notification(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = machine(make_backend)
    stream = kernel.watch()  # what poll()/inotify on the status file would deliver
    assert write_overlay(
        kernel, "/instances",
        'instance-create { instance-name = "web"; id = <1>; resources { cpus = /bits/ 64 <1 2>; '
        "memory-bytes = /bits/ 64 <0x10000000>; }; };",
    ) == "applied"
    load_web(kernel, images["vmlinux"])
    kernel.reboot(START, 1)
    assert kernel.status_file("web") == "active\n"
    kernel.reboot(HALT, 1)
    assert kernel.status_file("web") == "loaded\n"
    kernel.reboot(START, 1)
    kernel.spawn_exit(1, "poweroff")
    assert kernel.status_file("web") == "loaded\n"
    assert _events_until_close(kernel, stream) == []


def test_m2_a_transaction_is_never_seen_pending(make_backend: BackendFactory) -> None:
    kernel = machine(make_backend)
    seen = [
        write_overlay(kernel, "/resources", "cpu-add { cpu@5 { reg = /bits/ 64 <5>; }; };"),
        write_overlay(kernel, "/resources", "cpu-remove { cpu@9 { reg = /bits/ 64 <9>; }; };"),
        write_overlay(kernel, "/instances/nobody", "cpu-add { cpu@5 { reg = /bits/ 64 <5>; }; };"),
    ]
    assert seen == ["applied", "failed EBUSY", "failed ENOENT"]
    for tx_id in kernel.overlay_ids():
        assert kernel.tx_status(tx_id) in ("applied", "failed")


def test_m3_graceful_halt_without_ack_times_out(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    assert SimulatorSettings().halt_ack_timeout_s == 30  # the release's wait (core.c)
    kernel = active_web(make_backend, images["vmlinux"], faults={"instances": {"web": {"ack": False}}})
    assert errno_of(kernel.reboot, HALT, 1) == "ETIMEDOUT"
    assert kernel.status_file("web") == "active\n"


def test_m4_force_halt_after_a_timed_out_halt(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = active_web(make_backend, images["vmlinux"], faults={"instances": {"web": {"ack": False}}})
    assert errno_of(kernel.reboot, HALT, 1) == "ETIMEDOUT"
    assert kernel.reboot(HALT_FORCE, 1) == 0
    assert kernel.status_file("web") == "loaded\n"
    assert kernel.reboot(HALT_FORCE, 1) == 0  # force halt works from loaded too (8.3.2)
    assert errno_of(kernel.reboot, HALT, 1) == "EINVAL"  # graceful needs ACTIVE


def test_m5_poweroff_or_reboot_by_the_spawn_ends_loaded(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = active_web(make_backend, images["vmlinux"])
    for how in ("poweroff", "reboot", "halt"):
        kernel.spawn_exit(1, how)  # type: ignore[arg-type]
        assert kernel.status_file("web") == "loaded\n"
        assert _kimage_ids(kernel) == [1]  # the kimage stays loaded
        assert kernel.reboot(START, 1) == 0  # a respawn needs no new load (8.4.2)


def test_m5_poweroff_after_a_delay_from_the_fault_settings(
    make_backend: BackendFactory, images: dict[str, Path]
) -> None:
    faults = {"instances": {"web": {"after_start": "poweroff", "delay_s": 2}}}
    kernel = machine(make_backend, faults=faults)
    clock = SteppedClock(kernel)
    write_overlay(kernel, "/instances", WEB.replace("{extra}", ""))
    load_web(kernel, images["vmlinux"])
    kernel.reboot(START, 1)
    clock.advance(1.9)
    assert kernel.status_file("web") == "active\n"
    clock.advance(0.1)
    assert kernel.status_file("web") == "loaded\n"


def test_m6_a_panic_ends_loaded_and_restarts(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = active_web(make_backend, images["vmlinux"])
    kernel.spawn_exit(1, "panic")
    assert kernel.status_file("web") == "loaded\n"  # panic_timeout 0 is forced to immediate
    assert kernel.reboot(START, 1) == 0
    assert kernel.status_file("web") == "active\n"


def test_m7_panic_waits_for_the_spawns_panic_timeout(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = active_web(make_backend, images["vmlinux"], cmdline=b"console=mktty0 panic=30")
    clock = SteppedClock(kernel)
    kernel.spawn_exit(1, "panic")
    clock.advance(29.9)
    assert kernel.status_file("web") == "active\n"
    clock.advance(0.1)
    assert kernel.status_file("web") == "loaded\n"


def test_m7_panic_fault_adds_its_delay(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    faults = {"instances": {"web": {"after_start": "panic", "delay_s": 5}}}
    kernel = machine(make_backend, faults=faults)
    clock = SteppedClock(kernel)
    write_overlay(kernel, "/instances", WEB.replace("{extra}", ""))
    load_web(kernel, images["vmlinux"], b"panic=30")
    kernel.reboot(START, 1)
    clock.advance(34.9)
    assert kernel.status_file("web") == "active\n"
    clock.advance(0.1)
    assert kernel.status_file("web") == "loaded\n"


def test_m8_a_hung_spawn_stays_active_until_forced(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = active_web(make_backend, images["vmlinux"])
    clock = SteppedClock(kernel)
    kernel.spawn_exit(1, "hang")
    clock.advance(3600)
    assert kernel.status_file("web") == "active\n"
    assert errno_of(kernel.reboot, HALT, 1) == "ETIMEDOUT"  # a hung spawn never ACKs
    assert kernel.reboot(HALT_FORCE, 1) == 0
    assert kernel.status_file("web") == "loaded\n"


def test_m8_hang_from_the_fault_settings(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = active_web(make_backend, images["vmlinux"], faults={"instances": {"web": {"after_start": "hang"}}})
    assert kernel.status_file("web") == "active\n"
    assert write_overlay(kernel, "/instances/web", "cpu-add { cpu@3 { reg = /bits/ 64 <3>; }; };") == "failed ETIMEDOUT"


def test_m9_the_host_id_is_never_an_instance(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    """M9 is variant 14213ee5 (own id -> EINVAL); the simulator models 00ff7b01, where id 0 has no
    instance to halt: the host is never halted either way."""
    kernel = active_web(make_backend, images["vmlinux"])
    assert errno_of(kernel.reboot, HALT_FORCE, 0) == "ENOENT"
    assert kernel.status_file("web") == "active\n"


def test_status_reads_go_on_while_an_op_waits_for_its_ack(
    make_backend: BackendFactory, images: dict[str, Path]
) -> None:
    kernel = active_web(
        make_backend, images["vmlinux"], faults={"instances": {"web": {"ack": False}}}, resource_ack_timeout_s=300
    )
    result: list[str] = []
    writer = threading.Thread(
        target=lambda: result.append(
            write_overlay(kernel, "/instances/web", "cpu-add { cpu@3 { reg = /bits/ 64 <3>; }; };")
        )
    )
    writer.start()
    while writer.is_alive() and not kernel._resources.locked():
        time.sleep(0.001)  # until the write is in the kernel
    assert kernel.status_file("web") == "active\n"  # not blocked behind the 300 s wait
    kernel.spawn_exit(1, "poweroff")  # the spawn's own exit is not blocked either
    assert kernel.status_file("web") == "loaded\n"
    assert writer.is_alive()
    kernel.close()  # ends the wait
    writer.join()
    assert result == ["failed ETIMEDOUT"]


def test_a_reopened_kernel_keeps_a_scheduled_spawn_end(
    make_backend: BackendFactory, images: dict[str, Path]
) -> None:
    faults = {"instances": {"web": {"after_start": "panic", "delay_s": 60}}}
    first = active_web(make_backend, images["vmlinux"], faults=faults)
    first.close()
    again = kernel_of(make_backend(kernel_profile="tree", faults=faults))  # the same state directory
    clock = SteppedClock(again)
    assert again.status_file("web") == "active\n"
    clock.advance(61)
    assert again.status_file("web") == "loaded\n"


def test_an_unknown_spawn_fault_is_refused(make_backend: BackendFactory) -> None:
    with pytest.raises(ValueError, match="after_start"):
        make_backend(kernel_profile="tree", faults={"instances": {"web": {"after_start": "explode"}}})


def test_a_status_file_read_again_follows_the_instance_it_names(
    make_backend: BackendFactory, images: dict[str, Path]
) -> None:
    """The status poll reads the same paths each second (a remembered path skips the walk): the
    file still says what the instance is now, is gone with it, and names a new one of the name."""
    backend = make_backend(kernel_profile="tree")
    backend.apply_pool(tree_baseline())
    backend.create_instances([spec(1, "web", (1,), 64 * MiB)])
    io = backend.io
    path = "/sys/fs/multikernel/instances/web/status"
    assert io.read(path) == b"ready\n"
    kernel_of(backend).kexec_file_load(images["vmlinux"], None, None, load_flags(1))
    assert io.read(path) == b"loaded\n"
    backend.unload(1)
    backend.delete_instance(1)
    with pytest.raises(OSError) as gone:
        io.read(path)
    assert gone.value.errno == errno.ENOENT
    backend.create_instances([spec(2, "web", (2,), 64 * MiB)])
    assert io.read(path) == b"ready\n"
    assert io.read("/sys/fs/multikernel/instances/web/id") == b"2\n"


@pytest.mark.parametrize("second", [0, 1, 59, 99_999, 100_000, 1_234_567])
def test_uptime_lines_are_stamped_like_printk(second: int) -> None:
    stamp = f"[{float(second):12.6f}]"
    assert boot_log.uptime_line("web", second) == f"{stamp} web: up {second} s\n".encode()
