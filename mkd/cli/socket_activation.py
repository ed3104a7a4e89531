"""Sockets handed over by systemd (socket activation, sd_listen_fds(3)): deploy/mkd.socket.

The protocol: LISTEN_PID names the process meant, LISTEN_FDS how many descriptors it gets, starting
at fd 3. The variables are removed once read so that child processes (dtc) do not take them too.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

SD_LISTEN_FDS_START = 3  # sd-daemon.h


def inherited_sockets(env: MutableMapping[str, str] | None = None) -> list[socket.socket]:
    """The listening sockets systemd passed to this process, or [] when it was not socket-activated."""
    env = os.environ if env is None else env
    pid, count = env.get("LISTEN_PID", ""), env.get("LISTEN_FDS", "")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(name, None)
    if not (pid.isdigit() and count.isdigit()) or int(pid) != os.getpid():
        return []
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)):
        os.set_inheritable(fd, False)  # sd_listen_fds sets FD_CLOEXEC: children never hold the listener
        sockets.append(socket.socket(fileno=fd))  # family, type and protocol read from the descriptor
    return sockets


def describe(sock: socket.socket) -> str:
    """Where an inherited socket listens, as `mkd serve` announces it."""
    if sock.family == socket.AF_UNIX:
        return f"unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if sock.family == socket.AF_INET6 else host
    return f"http://{shown}:{port}/"
