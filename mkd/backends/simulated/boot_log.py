"""What a simulated spawn prints on its console (issue 10 item 4): deterministic text only.

At start: the instance's id, name, CPUs, memory chunks and command line. While it runs: one
line per second of uptime, produced on demand from the clock (no thread per instance). On an
injected panic: a panic trace. Timestamps are uptime seconds, printk style.
"""

from __future__ import annotations

from collections.abc import Sequence


def _stamp(uptime_s: float) -> str:
    return f"[{uptime_s:12.6f}]"


def _cmdline_text(cmdline: bytes) -> str:
    """The kept command line up to its NUL terminator."""
    return cmdline.split(b"\0", 1)[0].decode(errors="replace")


def boot_banner(
    instance_id: int, name: str, cpus: Sequence[int], chunks: Sequence[tuple[int, int]], cmdline: bytes
) -> bytes:
    memory = ", ".join(f"{base:#x}+{size:#x}" for base, size in chunks) or "none"
    lines = [
        f"{_stamp(0)} multikernel: instance {instance_id} ({name}) booting on mktty0",
        f"{_stamp(0)} multikernel: cpus {','.join(str(cpu) for cpu in cpus) or 'none'}",
        f"{_stamp(0)} multikernel: memory {memory}",
        f"{_stamp(0)} Kernel command line: {_cmdline_text(cmdline)}",
    ]
    return ("\n".join(lines) + "\n").encode()


def uptime_line(name: str, second: int) -> bytes:
    # _stamp() of a whole second, without float formatting: 2,047 consoles print one a second
    return f"[{second:5d}.000000] {name}: up {second} s\n".encode()


def uptime_lines(name: str, first: int, last: int) -> bytes:
    """The lines of seconds first..last (inclusive), as one chunk of output."""
    return b"".join(uptime_line(name, second) for second in range(first, last + 1))


def panic_trace(instance_id: int, uptime_s: float, panic_timeout_s: int) -> bytes:
    stamp = _stamp(uptime_s)
    reboot = (
        f"{stamp} Rebooting in {panic_timeout_s} seconds.."
        if panic_timeout_s > 0
        else f"{stamp} multikernel: instance {instance_id} parking its CPUs (MK_SYS_HALTED)"
    )
    lines = [
        f"{stamp} sysrq: Trigger a crash",
        f"{stamp} Kernel panic - not syncing: sysrq triggered crash (simulator fault injection)",
        f"{stamp} CPU: 0 PID: 1 Comm: init Not tainted 7.0.0-mk2 #1",
        f"{stamp} Call Trace:",
        f"{stamp}  <TASK>",
        f"{stamp}  dump_stack_lvl+0x48/0x70",
        f"{stamp}  panic+0x118/0x2f0",
        f"{stamp}  machine_restart+0x2e/0x40 (mk_halt_to_pool)",
        f"{stamp}  </TASK>",
        reboot,
    ]
    return ("\n".join(lines) + "\n").encode()


def exit_line(how: str, uptime_s: float) -> bytes:
    """A spawn that powers off, reboots or halts says so before it parks."""
    words = {"poweroff": "Power down", "reboot": "Restarting system", "halt": "System halted"}
    return f"{_stamp(uptime_s)} reboot: {words.get(how, how)}\n".encode()


def panic_timeout(cmdline: bytes) -> int:
    """The spawn's `panic=N`; 0 (the default) is forced to -1, i.e. immediate (spec 8.2.2)."""
    value = 0
    for word in cmdline.split(b"\0", 1)[0].split():
        if word.startswith(b"panic="):
            try:
                value = int(word.removeprefix(b"panic="))
            except ValueError:
                value = 0
    return max(value, 0)
