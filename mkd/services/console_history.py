"""What each instance's console printed, kept on disk while mkd runs (DESIGN "Desired state").

The console device drops output while nobody reads it and keeps only 16 KiB per reader (spec
8.8.4), so the daemon connects a reader to an instance before each start and reads it when it
is readable, paced by how fast it prints (`console_pace`): every reader's descriptor is in one
epoll set, one-shot, waited on by one thread (`console_reader`), never one thread per instance;
after a read the descriptor is armed again once the console's pace has passed. What it reads goes to
`<state_dir>/console/<instance uid>/<boot>-<offset>.log`: `offset` is the console's global byte
offset of the file's first byte, counted across boots and daemon restarts, so a follower that
names an offset (SSE `Last-Event-ID`) resumes exactly there. The current and the previous boot
are kept, each to its newest `[limits] console_history_bytes` (the oldest bytes go).

Writes are gathered: what a console printed goes to its file once `FLUSH_BYTES` are waiting or
`FLUSH_S` passed (and at a new boot, at a crash's `tail`, and at shutdown), so 2,047 spawns each
printing a line a second cost one append per instance every few seconds, not one per line. The
current boot's file stays open for appending (one write, not open-write-close, per append).
Readers of the history see the waiting bytes too. A daemon killed outright loses at most those.
"""

from __future__ import annotations

import collections
import errno
import heapq
import logging
import os
import re
import select
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mkd.backends.kernel_io import ConsoleFile
from mkd.services.console_pace import EAGER_S, READ_BYTES, due_at, pace_s

log = logging.getLogger("mkd.console")

FLUSH_BYTES = 64 << 10
FLUSH_S = 5.0
_ONE_SHOT = select.EPOLLIN | select.EPOLLONESHOT  # reported once, then armed again by `_schedule`
# Errors after which a reader is useless: the device or the instance went away.
_DEAD_READER = frozenset({errno.ENOTCONN, errno.ENODEV, errno.EBADF, errno.ENXIO, errno.EIO})
_BOOT_FILE = re.compile(r"([0-9]+)-([0-9]+)\.log")
_LEGACY_BOOT_FILE = re.compile(r"([0-9]+)\.log")

# Told which instances' consoles got output (or went away); None: the history is closing.
OutputListener = Callable[[set[int] | None], None]


@dataclass
class _Boot:
    """One boot: its number, the global offset of its first byte, its file's size and the bytes
    read but not written to the file yet."""

    number: int
    base: int
    path: Path
    size: int
    waiting: bytearray = field(default_factory=bytearray)
    fd: int | None = None  # `path` open for appending, once appended to; closed when it stops being current

    def close_file(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    @property
    def written_end(self) -> int:
        return self.base + self.size

    @property
    def end(self) -> int:
        return self.base + self.size + len(self.waiting)


@dataclass
class _Tracked:
    uid: str
    reader: ConsoleFile | None = None
    boots: list[_Boot] | None = None  # read from disk on first use, oldest first
    read_at: float = 0.0  # the reader thread's last read (the clock's), for the console's pace
    eager_until: float = 0.0  # read as soon as it prints until then: a boot began, somebody follows


@dataclass(frozen=True)
class BootSpan:
    """Where a kept boot's bytes are: global offsets [start, end) in `path` from `base`."""

    path: Path
    base: int
    start: int
    end: int


class ConsoleHistory:
    """Readers connected to instances' consoles and the history they recorded."""

    def __init__(self, root: Path, *, cap_bytes: int, open_console: Callable[[int], ConsoleFile]) -> None:
        self.root = root
        self.cap_bytes = cap_bytes
        # A boot's file grows to cap + slack before its oldest bytes go, so the trim (a rewrite of
        # the file) happens once per `slack` bytes, not at every append past the cap.
        self.slack_bytes = max(cap_bytes // 4, 1)
        self._open_console = open_console
        self._lock = threading.Lock()
        self._instances: dict[int, _Tracked] = {}
        self._by_fd: dict[int, int] = {}  # reader descriptor -> instance id
        # Each loaded instance's end offset, read without the lock (by the event loop, which must
        # not wait while the reader thread writes files); absent once forgotten.
        self._ends: dict[int, int] = {}
        self._epoll = select.epoll()
        # close() and hurry() interrupt the wait
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake, select.EPOLLIN)
        self.clock = time.monotonic
        self._due: list[tuple[float, int, int]] = []  # (when, instance id, descriptor) to arm again
        self._hurried: collections.deque[int] = collections.deque()  # appended without the lock
        self._wake_lock = threading.Lock()
        self.closed = False
        self.listener: OutputListener | None = None
        self._waiting: set[int] = set()  # instances whose current boot holds unwritten bytes
        self._flushed_at = time.monotonic()

    # -- readers ----------------------------------------------------------------------------

    def know(self, instance_id: int, uid: str) -> None:
        """Remember whose history an id names (for `tail`), without connecting."""
        with self._lock:
            self._tracked(instance_id, uid)

    def attach(self, instance_id: int, uid: str, *, new_boot: bool) -> None:
        """Connect a reader (unless one is) and, with `new_boot`, start the next boot's file.

        Called before a start: what the start prints goes to this reader. OSError or
        KernelError from the device propagate; the caller decides whether to start anyway.
        """
        with self._lock:
            self._read_into_history(instance_id)  # what the old boot printed stays with it
            tracked = self._tracked(instance_id, uid)
            self._connect(instance_id, tracked)
            if new_boot or not self._boots(instance_id, tracked):
                self._new_boot(instance_id, tracked)
                self._make_eager(tracked)  # a boot log comes fast

    def connect(self, instance_id: int, uid: str) -> None:
        """Connect a reader (unless one is) without starting a boot: for input to an instance the
        daemon has not started itself. OSError or KernelError from the device propagate."""
        with self._lock:
            self._connect(instance_id, self._tracked(instance_id, uid))

    def send_input(self, instance_id: int, data: bytes) -> int:
        """Write console input through the daemon's own reader (a write is input once connected,
        spec 8.8.3); returns the bytes the kernel took. OSError as the device gives it (ENODEV
        without a kimage, ENOSPC when the ring is full); ENOTCONN when no reader is attached."""
        with self._lock:
            tracked = self._instances.get(instance_id)
            if tracked is None or tracked.reader is None:
                raise OSError(errno.ENOTCONN, f"no console reader is attached to instance {instance_id}")
            return tracked.reader.write(data)

    def forget(self, instance_id: int) -> None:
        """The instance is gone: close its reader and drop its history."""
        with self._lock:
            tracked = self._instances.get(instance_id)
            self._close(instance_id)
            if tracked is not None:
                _close_files(tracked)
            self._instances.pop(instance_id, None)
            self._ends.pop(instance_id, None)
            self._waiting.discard(instance_id)
        if tracked is not None:
            shutil.rmtree(self.root / tracked.uid, ignore_errors=True)
        self._tell({instance_id})

    def drain(self) -> None:
        """Read every connected reader until the device has nothing more (non-blocking)."""
        with self._lock:
            ids = list(self._instances)
        self.drain_some(ids)

    def wait_ready(self, timeout_s: float) -> list[int] | None:
        """Block until some readers are readable (or `timeout_s` passes, or the next console's
        pace does): their instance ids, each to be given to `drain_some`, which arms it again;
        None once the history is closed. Call from one thread (`console_reader`)."""
        with self._lock:
            now = self.clock()
            self._arm_due(now)
            if self._due:
                timeout_s = max(0.0, min(timeout_s, self._due[0][0] - now))
        try:
            ready = self._epoll.poll(timeout_s)
        except (OSError, ValueError):  # the epoll was closed under us
            return None
        if self.closed:
            return None
        with self._lock:
            ids = set()
            for fd, _ in ready:
                if fd == self._wake:
                    self._take_hurried()
                elif fd in self._by_fd:
                    ids.add(self._by_fd[fd])
            return sorted(ids)

    def drain_some(self, instance_ids: list[int]) -> int:
        """Store what these readers hold and arm each again after its pace; returns the most one
        of them gave (how close a buffer came to dropping). Listeners hear which ones got output."""
        got: set[int] = set()
        most = 0
        with self._lock:
            now = self.clock()
            for instance_id in instance_ids:
                read = 0
                try:
                    read = self._read_into_history(instance_id)
                except OSError:  # one console (or a full disk for its file) must not stop the others
                    log.exception("console of instance %d could not be stored", instance_id)
                finally:
                    self._schedule(instance_id, read, now)
                if read:
                    got.add(instance_id)
                    most = max(most, read)
        if got:
            self._tell(got)
        return most

    def hurry(self, instance_id: int) -> None:
        """Somebody follows this console: read it as soon as it prints, for `EAGER_S`. Called by
        the event loop, so it takes no lock (the reader thread may be writing files): it queues
        the id and wakes the reader thread."""
        tracked = self._instances.get(instance_id)
        if tracked is not None and tracked.eager_until - self.clock() > EAGER_S / 2:
            return  # eager for a while yet (a follower waits for each line: one wake-up, not one each)
        self._hurried.append(instance_id)
        with self._wake_lock:  # held by close() only for the close(2) itself
            if not self.closed:
                os.eventfd_write(self._wake, 1)

    def attached(self) -> list[int]:
        with self._lock:
            return sorted(i for i, tracked in self._instances.items() if tracked.reader is not None)

    def close(self) -> None:
        """Store what the readers hold, then close them (the daemon stops)."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            os.eventfd_write(self._wake, 1)  # the reader thread's wait returns, and it stops
            for instance_id in list(self._instances):
                try:
                    self._read_into_history(instance_id)
                    self._flush(instance_id)
                except OSError:
                    log.exception("console of instance %d: output lost at shutdown", instance_id)
                self._close(instance_id)
                _close_files(self._instances[instance_id])
            self._epoll.close()
            with self._wake_lock:  # hurry() never writes to the number once it is closed
                os.close(self._wake)
        self._tell(None)

    # -- history ----------------------------------------------------------------------------

    def stored_end(self, instance_id: int) -> int | None:
        """The global offset just past the last byte stored, without waiting for the lock; None
        when the instance is unknown or its history was not looked at yet (`spans` loads it)."""
        return self._ends.get(instance_id)

    def spans(self, instance_id: int) -> list[BootSpan]:
        """The kept boots, oldest first, each to its newest `cap_bytes`."""
        with self._lock:
            tracked = self._instances.get(instance_id)
            boots = self._boots(instance_id, tracked) if tracked is not None else []
            return [BootSpan(b.path, b.base, max(b.base, b.end - self.cap_bytes), b.end) for b in boots]

    def read_from(self, instance_id: int, offset: int, max_bytes: int) -> tuple[int, bytes]:
        """Up to `max_bytes` stored from global `offset` on, within one boot and within its file or
        its bytes not yet written: (where they start, the bytes). Past bytes that are no longer
        kept, it starts at the oldest kept one;
        (offset, b"") when nothing is stored beyond `offset`."""
        for _ in range(3):  # a trim may replace a file between the look-up and the open
            with self._lock:
                where = self._locate(instance_id, offset, max_bytes)
            if isinstance(where, tuple):
                return where
            path, base, start, length = where.path, where.base, where.start, where.end - where.start
            try:
                with open(path, "rb") as file:
                    file.seek(start - base)
                    return start, file.read(length)
            except FileNotFoundError:
                continue
        return offset, b""

    def flush_due(self) -> None:
        """Write what waited `FLUSH_S` (called by the reader thread after each round)."""
        if time.monotonic() - self._flushed_at < FLUSH_S:
            return
        with self._lock:
            self._flushed_at = time.monotonic()
            for instance_id in list(self._waiting):
                try:
                    self._flush(instance_id)
                except OSError:
                    log.exception("console of instance %d could not be written", instance_id)

    def tail(self, instance_id: int, max_bytes: int) -> str:
        """The last `max_bytes` of the current boot's output or, when it printed nothing yet,
        of the previous boot's; UTF-8 with replacement characters ("" when there is none)."""
        with self._lock:
            try:
                self._read_into_history(instance_id)
                self._flush(instance_id)  # asked at a crash: what it printed last goes to disk now
            except OSError:  # what is stored still answers
                log.exception("console of instance %d could not be read", instance_id)
        if max_bytes <= 0:
            return ""
        for span in reversed(self.spans(instance_id)[-2:]):
            if span.end > span.start:
                _, data = self.read_from(instance_id, max(span.start, span.end - max_bytes), max_bytes)
                return data.decode(errors="replace")
        return ""

    def boot_paths(self, instance_id: int) -> list[Path]:
        """The kept boots' files, oldest first."""
        return [span.path for span in self.spans(instance_id)]

    # -- inside the lock ----------------------------------------------------------------------

    def _locate(self, instance_id: int, offset: int, max_bytes: int) -> BootSpan | tuple[int, bytes]:
        """Where the bytes from `offset` are: a file's span to read, or the waiting bytes themselves."""
        tracked = self._instances.get(instance_id)
        boots = self._boots(instance_id, tracked) if tracked is not None else []
        for boot in boots:
            if boot.end <= offset:
                continue
            start = max(offset, boot.end - self.cap_bytes, boot.base)
            if start >= boot.written_end:
                skip = start - boot.written_end
                return start, bytes(boot.waiting[skip:skip + max_bytes])
            return BootSpan(boot.path, boot.base, start, min(boot.written_end, start + max_bytes))
        return offset, b""

    def _flush(self, instance_id: int) -> None:
        tracked = self._instances.get(instance_id)
        self._waiting.discard(instance_id)
        if tracked is None or not tracked.boots or not tracked.boots[-1].waiting:
            return
        boot = tracked.boots[-1]
        data = bytes(boot.waiting)
        boot.waiting.clear()
        self._append(boot, data)

    def _tracked(self, instance_id: int, uid: str) -> _Tracked:
        tracked = self._instances.get(instance_id)
        if tracked is None or tracked.uid != uid:
            self._close(instance_id)
            if tracked is not None:
                _close_files(tracked)
            self._ends.pop(instance_id, None)
            tracked = self._instances[instance_id] = _Tracked(uid)
        return tracked

    def _connect(self, instance_id: int, tracked: _Tracked) -> None:
        if tracked.reader is None:
            reader = self._open_console(instance_id)
            tracked.reader = reader
            tracked.read_at = self.clock()
            self._by_fd[reader.fileno()] = instance_id
            self._epoll.register(reader.fileno(), _ONE_SHOT)

    def _make_eager(self, tracked: _Tracked) -> None:
        tracked.eager_until = self.clock() + EAGER_S
        self._arm(tracked)

    def _arm(self, tracked: _Tracked) -> None:
        """Report the reader once more when it is readable (at once if it is)."""
        if tracked.reader is not None:
            try:
                self._epoll.modify(tracked.reader.fileno(), _ONE_SHOT)
            except (OSError, ValueError):  # closed meanwhile
                pass

    def _schedule(self, instance_id: int, read: int, now: float) -> None:
        """After a read by the reader thread: arm the reader again once its pace has passed."""
        tracked = self._instances.get(instance_id)
        if tracked is None or tracked.reader is None:
            return
        pace = pace_s(read, now - tracked.read_at, eager=now < tracked.eager_until)
        tracked.read_at = now
        if pace <= 0:
            self._arm(tracked)
        else:
            heapq.heappush(self._due, (due_at(now, pace), instance_id, tracked.reader.fileno()))

    def _arm_due(self, now: float) -> None:
        while self._due and self._due[0][0] <= now:
            _, instance_id, fd = heapq.heappop(self._due)
            tracked = self._instances.get(instance_id)
            if tracked is not None and tracked.reader is not None and tracked.reader.fileno() == fd:
                self._arm(tracked)

    def _take_hurried(self) -> None:
        try:
            os.eventfd_read(self._wake)
        except BlockingIOError:
            pass
        while self._hurried:
            tracked = self._instances.get(self._hurried.popleft())
            if tracked is not None:
                self._make_eager(tracked)

    def _read_into_history(self, instance_id: int) -> int:
        """Store what the reader holds; returns the bytes read."""
        tracked = self._instances.get(instance_id)
        if tracked is None or tracked.reader is None:
            return 0
        reader = tracked.reader
        got = bytearray()
        while True:
            try:
                data = reader.read(READ_BYTES)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in _DEAD_READER:
                    log.info("console of instance %d closed: %s", instance_id, exc)
                    self._close(instance_id)
                    break
                raise
            got += data
            if len(data) < READ_BYTES:
                break  # the buffer is empty now; more output makes the descriptor readable again
        if not got:
            return 0
        boots = tracked.boots if tracked.boots else self._boots(instance_id, tracked)
        if not boots:
            self._new_boot(instance_id, tracked)
            boots = self._boots(instance_id, tracked)
        boot = boots[-1]
        boot.waiting += got
        self._ends[instance_id] = boot.end
        self._waiting.add(instance_id)
        if len(boot.waiting) >= FLUSH_BYTES:
            self._flush(instance_id)
        return len(got)

    def _close(self, instance_id: int) -> None:
        tracked = self._instances.get(instance_id)
        if tracked is not None and tracked.reader is not None:
            fd = tracked.reader.fileno()
            self._by_fd.pop(fd, None)
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass
            try:
                tracked.reader.close()
            except OSError:
                pass
            tracked.reader = None

    def _boots(self, instance_id: int, tracked: _Tracked) -> list[_Boot]:
        if tracked.boots is None:
            tracked.boots = _load_boots(self.root / tracked.uid)
            self._ends[instance_id] = tracked.boots[-1].end if tracked.boots else 0
        return tracked.boots

    def _new_boot(self, instance_id: int, tracked: _Tracked) -> None:
        """The next boot's file, starting where the last one ends; all but the previous go."""
        self._flush(instance_id)
        boots = self._boots(instance_id, tracked)
        directory = self.root / tracked.uid
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        number = boots[-1].number + 1 if boots else 1
        base = boots[-1].end if boots else 0
        path = directory / f"{number}-{base}.log"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        for old in boots:
            old.close_file()  # no longer the current boot: nothing is appended to it any more
        for old in boots[:-1]:
            old.path.unlink(missing_ok=True)
        tracked.boots = [*boots[-1:], _Boot(number, base, path, 0)]

    def _append(self, boot: _Boot, data: bytes) -> None:
        if boot.fd is None:
            boot.fd = os.open(boot.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(boot.fd, view):]
        boot.size += len(data)
        if boot.size > self.cap_bytes + self.slack_bytes:
            self._trim(boot)

    def _trim(self, boot: _Boot) -> None:
        """Keep the newest cap_bytes (DESIGN "Limits": the oldest bytes go). The kept bytes go to
        a file named by their new first offset before the old file goes, so a crash between
        the two leaves both and `_load_boots` keeps the newer."""
        boot.close_file()  # the kept bytes go to a new file
        kept = _read_tail(boot.path, self.cap_bytes)
        base = boot.end - len(kept)
        path = boot.path.with_name(f"{boot.number}-{base}.log")
        temporary = boot.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(kept)
        os.replace(temporary, path)
        boot.path.unlink(missing_ok=True)
        boot.path, boot.base, boot.size = path, base, len(kept)

    def _tell(self, ids: set[int] | None) -> None:
        listener = self.listener
        if listener is not None:
            listener(ids)


def _close_files(tracked: _Tracked) -> None:
    for boot in tracked.boots or ():
        boot.close_file()


def _load_boots(directory: Path) -> list[_Boot]:
    """The boots on disk, oldest first; of two files of one boot (a trim cut short) the newer."""
    found: dict[int, _Boot] = {}
    try:
        entries = _renamed_legacy(list(directory.iterdir()))
    except FileNotFoundError:
        return []
    for path in entries:
        match = _BOOT_FILE.fullmatch(path.name)
        if match is None:
            continue
        boot = _Boot(int(match[1]), int(match[2]), path, path.stat().st_size)
        older = found.get(boot.number)
        if older is not None and older.base > boot.base:
            boot, older = older, boot
        if older is not None:
            older.path.unlink(missing_ok=True)
        found[boot.number] = boot
    return [found[number] for number in sorted(found)]


def _renamed_legacy(entries: list[Path]) -> list[Path]:
    """Boot files of the release before global offsets (`<boot>.log`) renamed to `<boot>-<offset>.log`,
    counting offsets from the oldest kept byte, so an upgraded daemon keeps and serves them."""
    legacy = sorted((int(m[1]), path) for path in entries if (m := _LEGACY_BOOT_FILE.fullmatch(path.name)))
    if not legacy:
        return entries
    base = 0
    renamed: dict[Path, Path] = {}
    for number, path in legacy:
        target = path.with_name(f"{number}-{base}.log")
        base += path.stat().st_size
        os.replace(path, target)
        renamed[path] = target
    return [renamed.get(path, path) for path in entries]


def _read_tail(path: Path, max_bytes: int) -> bytes:
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - max_bytes))
            return file.read(max_bytes)
    except FileNotFoundError:
        return b""
