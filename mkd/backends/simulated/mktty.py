"""The console device /dev/mktty of the tree kernel at v7.0-mk2 (spec 8.8), in process.

Use it as a client would use the file:

    tty = kernel.console          # the one Mktty of a SimulatedKernel (the misc device)
    fd = tty.open()               # an unconnected connection (open(2))
    fd.write(b"1\\n")              # the first write selects instance 1 (returns 2)
    fd.read()                     # non-blocking read(2): bytes, or KernelError EAGAIN / ENOTCONN
    fd.readable()                 # poll(2) for POLLIN, without blocking
    fd.fileno()                   # an fd that polls readable while output is buffered (epoll it)
    fd.wait_readable(timeout)     # blocks the calling thread (run it in a worker thread)
    fd.write(b"ls\\n")             # later writes are input for the instance
    fd.close()

Every error is a KernelError with the kernel's errno. The rules:
- `read` before connecting is ENOTCONN (8.8.1). The first write is parsed like `kstrtoint`
  (base 10, the first 15 bytes, one trailing newline): a parse error EINVAL (ERANGE on
  overflow), an id < 1 EINVAL, an unknown id ENODEV; any state is accepted (8.8.2).
- Later writes are input, split into messages of at most 4080 bytes for the instance's ring:
  ENODEV without a kimage or CPUs, ENOSPC when the ring (63 slots) is full; after a partial
  failure the bytes sent so far are returned. Input queued before a start is discarded by it
  (8.8.3).
- Output goes only to the most recently opened fd connected to the instance, into its 16 KiB
  buffer (16 383 usable); what does not fit is dropped, and with no connected fd everything is
  (8.8.4).

The kernel side (`ConsoleHost`) produces output lazily: before every read, and before the set
of connected readers of an instance changes, the device asks the host to emit what the spawn
printed up to now (`console_sync`), so a running spawn needs no thread of its own. So that a
reader waiting in poll/epoll sees a spawn's uptime lines without reading first, one ticker
thread (started with the first connection) asks the host every second for what the instances
whose newest reader has nothing buffered (a set kept as buffers fill and empty) printed
(`console_sync_all`), all in one call. A reader
that already polls readable learns nothing from more lines, so those wait for the read that
takes them: the same bytes in the same order, and the same drops, since nothing was read in
between. A reader that reads every few seconds thus costs the ticker one line per read.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from mkd.errors import KernelError

BUFFER_BYTES = 16_384  # one byte stays unused: a full ring holds 16 383
USABLE_BYTES = BUFFER_BYTES - 1
MESSAGE_BYTES = 4096 - 16  # MK_MAX_DATA_SIZE minus the message header
RING_SLOTS = 63  # 64 slots, one kept empty (spec 8.10.1)
ID_PARSE_BYTES = 15
TICK_S = 1.0  # the spawns' uptime lines come once a second (boot_log)


@dataclass(frozen=True)
class ConsoleTarget:
    """What the console needs to know of an instance when input is written to it."""

    has_ring: bool  # a kimage and CPUs: the IPI ring exists (spec 8.3.1 send errnos)
    consuming: bool  # a spawn runs and drains its ring


class ConsoleHost(Protocol):
    def console_target(self, instance_id: int) -> ConsoleTarget | None:
        """The instance, or None when there is no such id."""

    def console_sync(self, instance_id: int) -> None:
        """Emit (via Mktty.emit) what the spawn has printed up to now."""

    def console_sync_all(self, instance_ids: list[int]) -> None:
        """console_sync of each of the instances, under one hold of the kernel."""


def parse_id(data: bytes) -> int:
    """kstrtoint(base 10) over the first 15 bytes; one trailing newline is allowed (8.8.2)."""
    text = data[:ID_PARSE_BYTES]
    if text.endswith(b"\n"):
        text = text[:-1]
    body = text[1:] if text[:1] in (b"+", b"-") else text
    if not body or not body.isdigit():
        raise KernelError(errno.EINVAL, f"mktty: {data[:ID_PARSE_BYTES]!r} is not an instance id")
    value = int(text)
    if not -(2**31) <= value < 2**31:
        raise KernelError(errno.ERANGE, f"mktty: {value} does not fit an int")
    return value


@dataclass
class _Ring:
    """The instance's IPI ring as the console input sees it (spec 8.10.1)."""

    queued: list[bytes] = field(default_factory=list)  # messages nobody consumed yet
    received: bytearray = field(default_factory=bytearray)  # what the running spawn has read


class MkttyFile:
    """One open file of /dev/mktty."""

    def __init__(self, device: Mktty, serial: int) -> None:
        self._device = device
        self.serial = serial  # open order: the newest connected file gets the output
        self.instance_id: int | None = None
        self.buffer = bytearray()
        self.closed = False
        # Readable (counter > 0) exactly while the buffer holds output: what poll(2) on the
        # device's fd says; changed only under the device's lock, together with the buffer.
        self.ready_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def write(self, data: bytes) -> int:
        if self.closed:
            raise KernelError(errno.EBADF, "mktty: file is closed")
        if self.instance_id is None:
            return self._device.connect(self, data)
        return self._device.send_input(self.instance_id, data)

    def read(self, size: int = BUFFER_BYTES) -> bytes:
        """Non-blocking read: what is buffered (up to `size`), else EAGAIN."""
        if self.closed:
            raise KernelError(errno.EBADF, "mktty: file is closed")
        if self.instance_id is None:
            raise KernelError(errno.ENOTCONN, "mktty: write an instance id first")
        self._device.sync(self.instance_id)  # appended after what is buffered: read in order
        with self._device.lock:
            if not self.buffer:
                raise KernelError(errno.EAGAIN, "mktty: nothing to read")
            out = bytes(self.buffer[:size])
            del self.buffer[:size]
            if not self.buffer:
                self._clear_ready()
                self._device.look_quiet(self.instance_id)
            return out

    def fileno(self) -> int:
        """A descriptor that polls readable while output is buffered (POLLIN of the device)."""
        return self.ready_fd

    def signal_ready(self) -> None:
        """Under the device lock, when the buffer stops being empty."""
        os.eventfd_write(self.ready_fd, 1)

    def _clear_ready(self) -> None:
        try:
            os.eventfd_read(self.ready_fd)
        except BlockingIOError:
            pass

    def readable(self) -> bool:
        """poll(2) POLLIN: an unconnected file is writable only (8.8.1)."""
        if self.closed or self.instance_id is None:
            return False
        self._device.sync(self.instance_id)
        with self._device.lock:
            return bool(self.buffer)

    def wait_readable(self, timeout: float) -> bool:
        """Block the calling thread until there is output or `timeout` passes; the spawn's
        lazily produced lines are looked for every 100 ms at most."""
        deadline = self._device.clock() + timeout
        while True:
            if self.readable():
                return True
            remaining = deadline - self._device.clock()
            if remaining <= 0 or self.closed:
                return False
            with self._device.changed:
                self._device.changed.wait(min(remaining, 0.1))

    def close(self) -> None:
        if self.closed:
            return
        if self.instance_id is not None:
            self._device.sync(self.instance_id)  # output up to now went to the readers of then
        self._device.release(self)


class Mktty:
    """The misc device: its open files and the console side of each instance's ring."""

    def __init__(self, host: ConsoleHost) -> None:
        self._host = host
        self.clock = time.monotonic
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self._serials = itertools.count(1)
        self._files: list[MkttyFile] = []
        self._readers: dict[int, list[MkttyFile]] = {}  # connected files by instance, oldest first
        # Instances whose newest reader has nothing buffered: what the ticker syncs, kept as the
        # buffers change so a tick costs the quiet consoles, not a look at every reader.
        self._quiet: set[int] = set()
        self._rings: dict[int, _Ring] = {}
        self._stopping = threading.Event()
        self._ticker: threading.Thread | None = None

    def open(self) -> MkttyFile:
        with self.lock:
            opened = MkttyFile(self, next(self._serials))
            self._files.append(opened)
            return opened

    def sync(self, instance_id: int) -> None:
        self._host.console_sync(instance_id)

    def connect(self, opened: MkttyFile, data: bytes) -> int:
        instance_id = parse_id(data)
        if instance_id < 1:
            raise KernelError(errno.EINVAL, f"mktty: id {instance_id} is not an instance")
        if self._host.console_target(instance_id) is None:
            raise KernelError(errno.ENODEV, f"mktty: no instance {instance_id}")
        self.sync(instance_id)  # what the spawn printed before now belongs to the readers of then
        with self.lock:
            opened.instance_id = instance_id
            self._readers.setdefault(instance_id, []).append(opened)
            self.look_quiet(instance_id)
            if self._ticker is None and not self._stopping.is_set():
                self._ticker = threading.Thread(target=self._tick, name="mktty-ticker", daemon=True)
                self._ticker.start()
        return len(data)

    def release(self, opened: MkttyFile) -> None:
        with self.lock:
            opened.closed = True
            if opened in self._files:
                self._files.remove(opened)
            readers = self._readers.get(opened.instance_id or 0, [])
            if opened in readers:
                readers.remove(opened)
                if not readers:
                    del self._readers[opened.instance_id or 0]
                self.look_quiet(opened.instance_id or 0)
            os.close(opened.ready_fd)
            self.changed.notify_all()

    def _tick(self) -> None:
        """Every second, in one call, what the spawns printed meanwhile whose newest reader has
        nothing buffered (the others poll readable already; their read produces the rest)."""
        while not self._stopping.wait(TICK_S):
            self.tick()

    def tick(self) -> None:
        """One second's work of the ticker."""
        with self.lock:
            quiet = sorted(self._quiet)
        if quiet:
            self._host.console_sync_all(quiet)

    def close(self) -> None:
        """The kernel goes away: the ticker stops."""
        self._stopping.set()
        ticker = self._ticker
        if ticker is not None and ticker is not threading.current_thread():
            ticker.join()

    def send_input(self, instance_id: int, data: bytes) -> int:
        target = self._host.console_target(instance_id)
        sent = 0
        with self.lock:
            ring = self._rings.setdefault(instance_id, _Ring())
            for start in range(0, len(data), MESSAGE_BYTES):
                message = data[start : start + MESSAGE_BYTES]
                try:
                    self._queue(ring, target, instance_id, message)
                except KernelError:
                    if sent:
                        return sent
                    raise
                sent += len(message)
        return sent

    @staticmethod
    def _queue(ring: _Ring, target: ConsoleTarget | None, instance_id: int, message: bytes) -> None:
        if target is None or not target.has_ring:
            raise KernelError(errno.ENODEV, f"mktty: instance {instance_id} has no kimage or no CPUs")
        if target.consuming:
            ring.received += message
            return
        if len(ring.queued) >= RING_SLOTS:
            raise KernelError(errno.ENOSPC, f"mktty: the ring of instance {instance_id} is full")
        ring.queued.append(message)

    # -- the kernel side ----------------------------------------------------------------------------

    def emit(self, instance_id: int, data: bytes) -> int:
        """The spawn printed `data`: the newest connected file gets what fits; returns that count."""
        with self.lock:
            taken = self._emit(instance_id, data)
            if taken:
                self.changed.notify_all()
            return taken

    def emit_all(self, outputs: list[tuple[int, bytes]]) -> None:
        """emit() of each (instance id, data), under one hold of the device."""
        with self.lock:
            taken = 0
            for instance_id, data in outputs:
                taken += self._emit(instance_id, data)
            if taken:
                self.changed.notify_all()

    def _emit(self, instance_id: int, data: bytes) -> int:
        readers = self._readers.get(instance_id)
        if not readers:
            return 0  # nothing is buffered host-side
        newest = _newest(readers)
        room = USABLE_BYTES - len(newest.buffer)
        taken = data[: max(room, 0)]
        if taken:
            if not newest.buffer:
                newest.signal_ready()
                self._quiet.discard(instance_id)
            newest.buffer += taken
        return len(taken)

    def look_quiet(self, instance_id: int) -> None:
        """Under the lock, after the instance's readers or a buffer changed: note whether its
        newest reader has nothing buffered."""
        readers = self._readers.get(instance_id)
        if readers and not _newest(readers).buffer:
            self._quiet.add(instance_id)
        else:
            self._quiet.discard(instance_id)

    def connected_among(self, instance_ids: list[int]) -> set[int]:
        """Those of the instances with a connected reader (a read asks this of one instance)."""
        with self.lock:
            return {instance_id for instance_id in instance_ids if self._readers.get(instance_id)}

    def has_reader(self, instance_id: int) -> bool:
        with self.lock:
            return bool(self._readers.get(instance_id))

    def exec_reset(self, instance_id: int) -> None:
        """A start zeroes the instance's ring: queued input is lost (spec 8.8.3, 8.10.1)."""
        with self.lock:
            self._rings[instance_id] = _Ring()

    def ring_full(self, instance_id: int) -> bool:
        """All 63 slots hold unconsumed messages: the next send is ENOSPC (spec 8.3.1)."""
        with self.lock:
            ring = self._rings.get(instance_id)
            return ring is not None and len(ring.queued) >= RING_SLOTS

    def received(self, instance_id: int) -> bytes:
        """What the running spawn has read from its console since its start."""
        with self.lock:
            ring = self._rings.get(instance_id)
            return b"" if ring is None else bytes(ring.received)

    def forget(self, instance_id: int) -> None:
        with self.lock:
            self._rings.pop(instance_id, None)


def _newest(readers: list[MkttyFile]) -> MkttyFile:
    """The connected file that gets the output: the most recently opened (8.8.4)."""
    return readers[0] if len(readers) == 1 else max(readers, key=lambda f: f.serial)
