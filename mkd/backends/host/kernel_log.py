"""The errno a kernel logged for a write that reported success (a failed overlay, spec 5.4; a
skipped v2 instance, spec 5.2), where the kernel shows it.

A real kernel only logs these to dmesg, so on a host both reads answer None and the client
infers the errno; the simulator shows its log in files of its own (kernel_io.TX_LOG_DIR,
DEVICE_TREE_LOG_PATH), so there the client reports the kernel's exact errno.
"""

from __future__ import annotations

from dataclasses import dataclass

from mkd.backends.kernel_io import DEVICE_TREE_LOG_PATH, TX_LOG_DIR, KernelIO, join
from mkd.errors import errno_value


@dataclass(frozen=True)
class LoggedError:
    errno_code: int
    reason: str


def _parse(name: str, reason: str) -> LoggedError | None:
    try:
        return LoggedError(errno_value(name), reason.strip())
    except ValueError:
        return None


def logged_tx_error(io: KernelIO, tx_id: int) -> LoggedError | None:
    """What the kernel logged when overlays/tx_<N> failed; None when it does not show its log."""
    try:
        text = io.read(join(TX_LOG_DIR, f"tx_{tx_id}")).decode(errors="replace")
    except OSError:
        return None
    name, _, reason = text.partition(":")
    return _parse(name.strip(), reason)


def logged_skips(io: KernelIO) -> dict[str, LoggedError]:
    """Instance name -> why the last device_tree write skipped it; {} when the log is not shown."""
    try:
        text = io.read(DEVICE_TREE_LOG_PATH).decode(errors="replace")
    except OSError:
        return {}
    found: dict[str, LoggedError] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        logged = _parse(code, reason)
        if logged is not None:
            found[name] = logged
    return found
