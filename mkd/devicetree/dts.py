"""DTS text ↔ DTB through Debian's `dtc`, run as a bounded subprocess.

dtc is the only DTS parser: mkd never parses DTS text itself. Input DTS may come from clients,
so dtc must not read host files on their behalf: `/include/` and `/incbin/` are refused before
dtc runs (`/incbin/("/etc/shadow")` would otherwise become a property value).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from mkd.config import LimitSettings
from mkd.devicetree.fdt import FDT_MAGIC, invalid, open_dtb
from mkd.errors import MkdError, OverLimit

_FILE_DIRECTIVES = ("/include/", "/incbin/")
# dtc locates errors as "<stdin>:LINE.COL-ENDCOL" or "<stdin>:LINE.COL-ENDLINE.ENDCOL".
_DTC_LOCATION = re.compile(r"<stdin>:(\d+)\.(\d+)(?:-\d+(?:\.\d+)?)?:?")
# Summary lines dtc adds after the real errors; they say nothing a client can act on.
_DTC_NOISE = ("FATAL ERROR: Unable to parse input tree", "ERROR: Input tree has errors")
_MAX_DETAIL_LINES = 8
_CAP_SETPCAP = 8  # linux/capability.h


class DtcUnavailable(MkdError):
    """The host lacks a working dtc: a deployment fault, not the client's."""

    status = 503
    title = "Device-tree compiler unavailable"
    slug = "dtc-unavailable"


def is_dtb(data: bytes) -> bool:
    """True when `data` starts with the FDT magic 0xd00dfeed (DESIGN: the bytes decide)."""
    return data[:4] == FDT_MAGIC.to_bytes(4, "big")


class DtcGate:
    """At most `concurrency` dtc children at once and `queue` callers waiting for one (DESIGN
    "Limits" dtc_concurrency / dtc_queue); past that, 503 + Retry-After at once. Callers are worker
    threads (dtc never runs on the event loop), so a waiting caller holds a thread, not the loop."""

    def __init__(self, concurrency: int, queue: int) -> None:
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._waiting = 0
        self.queue = queue

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(blocking=False):
            with self._lock:
                if self._waiting >= self.queue:
                    raise OverLimit("dtc_queue", "the device-tree compiler is busy (all of its slots and its "
                                    "queue are taken); retry shortly", status=503, retry_after_s=1)
                self._waiting += 1
            try:
                self._slots.acquire()
            finally:
                with self._lock:
                    self._waiting -= 1
        try:
            yield
        finally:
            self._slots.release()


_limits = LimitSettings()
_gate = DtcGate(_limits.dtc_concurrency, _limits.dtc_queue)


def configure_dtc(limits: LimitSettings) -> None:
    """Apply the daemon's [limits] to every later dtc run (called once by create_app)."""
    global _limits, _gate
    _limits = limits
    _gate = DtcGate(limits.dtc_concurrency, limits.dtc_queue)


def _has_cap_setpcap() -> bool:
    """Dropping the bounding set needs CAP_SETPCAP; under the systemd unit the daemon lacks it and
    SecureBits=noroot (deploy/mkd.service) keeps exec from handing root's capabilities back."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SETPCAP & 1)
    except OSError:
        pass
    return False


def confined(command: list[str], limits: LimitSettings) -> list[str]:
    """`command` run without capabilities (ambient, inheritable and, where the daemon may, the
    bounding set; no new privileges) and with CPU, address-space and core limits (DESIGN
    "Security": child processes that parse input). util-linux's setpriv and prlimit do it by
    exec, so nothing runs between fork and exec in this multi-threaded process."""
    setpriv, prlimit = shutil.which("setpriv"), shutil.which("prlimit")
    if setpriv is None or prlimit is None:
        raise DtcUnavailable("setpriv and prlimit (util-linux) are needed to run dtc confined")
    drop = [setpriv, "--no-new-privs", "--inh-caps=-all", "--ambient-caps=-all"]
    if _has_cap_setpcap():
        drop.append("--bounding-set=-all")
    bounds = [prlimit, f"--cpu={limits.dtc_cpu_s}", f"--as={limits.dtc_memory_bytes}", "--core=0", "--nofile=64"]
    return [*drop, "--", *bounds, "--", *command]


def _dtc(args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    limits = _limits
    dtc = str(limits.dtc_path) if limits.dtc_path is not None else shutil.which("dtc")
    if dtc is None:
        raise DtcUnavailable("dtc (device-tree-compiler) is not installed")
    with _gate.slot():
        try:
            result = subprocess.run(
                confined([dtc, "-q", *args, "-o", "-", "-"], limits),
                input=data,
                capture_output=True,
                timeout=limits.dtc_timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise invalid(f"dtc did not finish within {limits.dtc_timeout_s:g} s") from exc
    if result.returncode in (-signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGXCPU):
        raise invalid(f"dtc went over its limits ({limits.dtc_cpu_s} s CPU, "
                      f"{limits.dtc_memory_bytes >> 20} MiB): the input is too costly to compile")
    return result


def _dtc_errors(stderr: bytes) -> str:
    """dtc's own messages, with '<stdin>:L.C-E' rewritten as 'line L:C'."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(_DTC_NOISE)] or lines
    cleaned = [
        _DTC_LOCATION.sub(lambda m: f"line {m.group(1)}:{m.group(2)}:", line).replace("Error: ", "")
        for line in useful[:_MAX_DETAIL_LINES]
    ]
    return "; ".join(cleaned) or "dtc failed without a message"


def dts_to_dtb(text: str) -> bytes:
    """Compile DTS text; a syntax error → EINVAL carrying dtc's message and its line:col."""
    for directive in _FILE_DIRECTIVES:
        if directive in text:
            raise invalid(f"DTS input must not use {directive}: it would read files on the host")
    result = _dtc(["-I", "dts", "-O", "dtb"], text.encode())
    if result.returncode != 0:
        detail = _dtc_errors(result.stderr)
        if "memory exhausted" in detail:
            detail += " (dtc's parser stops at about 10,000 sibling or nested nodes)"
        raise invalid(f"DTS does not compile: {detail}")
    return result.stdout


def dtb_to_dts(dtb: bytes) -> str:
    """Decompile a DTB (validated first, so dtc never sees a corrupt blob)."""
    open_dtb(dtb)
    result = _dtc(["-I", "dtb", "-O", "dts"], dtb)
    if result.returncode != 0:
        raise invalid(f"DTB does not decompile: {_dtc_errors(result.stderr)}")
    return result.stdout.decode()
