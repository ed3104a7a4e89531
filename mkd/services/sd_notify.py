"""systemd's notify protocol (sd_notify(3)): one datagram per message on the unix socket named by
$NOTIFY_SOCKET (a path, or an abstract name written with a leading "@").

deploy/mkd.service is `Type=notify` with `WatchdogSec`: the daemon says `READY=1` once it serves,
and `WATCHDOG=1` every half of $WATCHDOG_USEC while its event loop runs, so systemd restarts a
daemon that hangs as it restarts one that dies (`Restart=always`). For a fleet node this bounds
how long a daemon can be gone while its kernel keeps running its instances (README "Fleet")."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

import anyio

log = logging.getLogger("mkd.sd_notify")


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send `message` (e.g. "READY=1"); False when not run under systemd's notify."""
    path = (env if env is not None else os.environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify %s: %s", message, exc)
        return False
    return True


def watchdog_interval_s(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings (half of $WATCHDOG_USEC), or None when systemd set no
    watchdog for this process ($WATCHDOG_PID names another one)."""
    found = env if env is not None else os.environ
    usec, pid = found.get("WATCHDOG_USEC"), found.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 2_000_000


async def keep_watchdog(env: Mapping[str, str] | None = None) -> None:
    """Ping systemd's watchdog while the event loop runs (a hung loop stops the pings)."""
    interval = watchdog_interval_s(env)
    if interval is None:
        return
    while True:
        notify("WATCHDOG=1", env)
        await anyio.sleep(interval)
