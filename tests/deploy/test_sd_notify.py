"""`mkd serve` speaks systemd's notify protocol (deploy/mkd.service: Type=notify, WatchdogSec,
Restart=always): READY=1 once it serves, then WATCHDOG=1 pings at half of $WATCHDOG_USEC, on the
datagram socket $NOTIFY_SOCKET names (a path or an abstract "@name")."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import anyio

from mkd.services import sd_notify
from mkd.testing.daemon_process import DaemonProcess

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "mkd.service"


def listener(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(30)
    return sock


def test_a_served_daemon_says_ready_then_pings_the_watchdog(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with listener(path) as sock:
        # 0.4 s watchdog: a ping every 0.2 s. WATCHDOG_PID is left unset (systemd sets it to the
        # main PID, which the test does not know before the start).
        daemon = DaemonProcess(tmp_path / "state", env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        with daemon:
            received = [sock.recv(4096).decode() for _ in range(4)]
    assert received[0] == "READY=1"
    assert received[1:] == ["WATCHDOG=1"] * 3


def test_an_abstract_socket_name_is_understood() -> None:
    name = f"mkd-test-notify-{os.getpid()}"
    with listener("\0" + name) as sock:
        assert sd_notify.notify("READY=1", {"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(4096) == b"READY=1"


def test_without_systemd_nothing_is_sent(tmp_path: Path) -> None:
    assert sd_notify.notify("READY=1", {}) is False
    assert sd_notify.notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "absent.sock")}) is False
    assert sd_notify.watchdog_interval_s({}) is None
    assert sd_notify.watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert sd_notify.watchdog_interval_s({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}) is None  # not ours
    assert sd_notify.watchdog_interval_s({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}) == 5.0
    anyio.run(sd_notify.keep_watchdog, {})  # no watchdog asked: it returns at once


def test_the_unit_restarts_always_under_a_watchdog() -> None:
    directives = dict(line.split("=", 1) for line in UNIT.read_text().splitlines()
                      if "=" in line and not line.startswith("#"))
    assert directives["Type"] == "notify" and directives["Restart"] == "always"
    assert int(directives["WatchdogSec"]) > 0
