"""What each instance's console printed, kept on disk while mkd runs (DESIGN "Desired state").

The console device drops output while nobody reads it and keeps only 16 KiB per reader (spec
8.8.4), so the daemon connects a reader to an instance before each start and drains every
reader from the status poller's one task (`drain`): no thread per instance. What it reads goes
to `<state_dir>/console/<instance uid>/<boot>.log`; the current and the previous boot are
kept, each capped at `[limits] console_history_bytes` (the oldest bytes go).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mkd.backends.kernel_io import ConsoleFile

log = logging.getLogger("mkd.console")

READ_BYTES = 16_384  # the device's buffer (spec 8.8.4): one read empties it
# Errors after which a reader is useless: the device or the instance went away.
_DEAD_READER = frozenset({errno.ENOTCONN, errno.ENODEV, errno.EBADF, errno.ENXIO, errno.EIO})


@dataclass
class _Boot:
    """The file of one boot and its size (kept so an append costs no stat)."""

    path: Path
    size: int


@dataclass
class _Tracked:
    uid: str
    reader: ConsoleFile | None = None
    boot: _Boot | None = None


class ConsoleHistory:
    """Readers connected to instances' consoles and the history they recorded."""

    def __init__(self, root: Path, *, cap_bytes: int, open_console: Callable[[int], ConsoleFile]) -> None:
        self.root = root
        self.cap_bytes = cap_bytes
        self._open_console = open_console
        self._lock = threading.Lock()
        self._instances: dict[int, _Tracked] = {}

    # -- readers ----------------------------------------------------------------------------

    def know(self, instance_id: int, uid: str) -> None:
        """Remember whose history an id names (for `tail`), without connecting."""
        with self._lock:
            tracked = self._instances.get(instance_id)
            if tracked is None or tracked.uid != uid:
                self._close(instance_id)
                self._instances[instance_id] = _Tracked(uid)

    def attach(self, instance_id: int, uid: str, *, new_boot: bool) -> None:
        """Connect a reader (unless one is) and, with `new_boot`, start the next boot's file.

        Called before a start: what the start prints goes to this reader. OSError or
        KernelError from the device propagate; the caller decides whether to start anyway.
        """
        with self._lock:
            self._read_into_history(instance_id)  # what the old boot printed stays with it
            tracked = self._instances.get(instance_id)
            if tracked is None or tracked.uid != uid:
                self._close(instance_id)
                tracked = self._instances[instance_id] = _Tracked(uid)
            if tracked.reader is None:
                tracked.reader = self._open_console(instance_id)
            if new_boot or tracked.boot is None:
                tracked.boot = self._boot_file(uid, new_boot=new_boot)

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
            self._instances.pop(instance_id, None)
        if tracked is not None:
            shutil.rmtree(self.root / tracked.uid, ignore_errors=True)

    def drain(self) -> None:
        """Read every connected reader until the device has nothing more (non-blocking)."""
        with self._lock:
            for instance_id in list(self._instances):
                try:
                    self._read_into_history(instance_id)
                except OSError:  # one console (or a full disk for its file) must not stop the others
                    log.exception("console of instance %d could not be stored", instance_id)

    def attached(self) -> list[int]:
        with self._lock:
            return sorted(i for i, tracked in self._instances.items() if tracked.reader is not None)

    def close(self) -> None:
        """Store what the readers hold, then close them (the daemon stops)."""
        with self._lock:
            for instance_id in list(self._instances):
                try:
                    self._read_into_history(instance_id)
                except OSError:
                    log.exception("console of instance %d: output lost at shutdown", instance_id)
                self._close(instance_id)

    # -- history ----------------------------------------------------------------------------

    def tail(self, instance_id: int, max_bytes: int) -> str:
        """The last `max_bytes` of the current boot's output or, when it printed nothing yet,
        of the previous boot's; UTF-8 with replacement characters ("" when there is none)."""
        with self._lock:
            try:
                self._read_into_history(instance_id)
            except OSError:  # what is stored still answers
                log.exception("console of instance %d could not be read", instance_id)
            tracked = self._instances.get(instance_id)
            if tracked is None or max_bytes <= 0:
                return ""
            for path in reversed(self._boot_files(tracked.uid)[-2:]):
                data = _read_tail(path, max_bytes)
                if data:
                    return data.decode(errors="replace")
            return ""

    def boot_paths(self, instance_id: int) -> list[Path]:
        """The kept boots' files, oldest first."""
        with self._lock:
            tracked = self._instances.get(instance_id)
            return [] if tracked is None else self._boot_files(tracked.uid)

    # -- inside the lock ----------------------------------------------------------------------

    def _read_into_history(self, instance_id: int) -> None:
        tracked = self._instances.get(instance_id)
        if tracked is None or tracked.reader is None:
            return
        chunks = []
        while True:
            try:
                data = tracked.reader.read(READ_BYTES)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in _DEAD_READER:
                    log.info("console of instance %d closed: %s", instance_id, exc)
                    self._close(instance_id)
                    break
                raise
            if not data:
                break
            chunks.append(data)
        if chunks:
            if tracked.boot is None:
                tracked.boot = self._boot_file(tracked.uid, new_boot=False)
            self._append(tracked.boot, b"".join(chunks))

    def _close(self, instance_id: int) -> None:
        tracked = self._instances.get(instance_id)
        if tracked is not None and tracked.reader is not None:
            try:
                tracked.reader.close()
            except OSError:
                pass
            tracked.reader = None

    def _boot_files(self, uid: str) -> list[Path]:
        directory = self.root / uid
        try:
            names = [p for p in directory.iterdir() if p.suffix == ".log" and p.stem.isdigit()]
        except FileNotFoundError:
            return []
        return sorted(names, key=lambda p: int(p.stem))

    def _boot_file(self, uid: str, *, new_boot: bool) -> _Boot:
        """The current boot's file; with `new_boot` the next one, dropping all but the previous."""
        directory = self.root / uid
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        boots = self._boot_files(uid)
        if boots and not new_boot:
            return _Boot(boots[-1], boots[-1].stat().st_size)
        number = int(boots[-1].stem) + 1 if boots else 1
        for old in boots[:-1]:
            old.unlink(missing_ok=True)
        path = directory / f"{number}.log"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        return _Boot(path, 0)

    def _append(self, boot: _Boot, data: bytes) -> None:
        if boot.size + len(data) <= self.cap_bytes:
            with open(boot.path, "ab") as file:
                file.write(data)
            boot.size += len(data)
            return
        # Over the cap: the newest cap_bytes stay (DESIGN "Limits": the oldest bytes go).
        keep_old = max(0, self.cap_bytes - len(data))
        kept = (_read_tail(boot.path, keep_old) if keep_old else b"") + data[-self.cap_bytes :]
        temporary = boot.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(kept)
        os.replace(temporary, boot.path)
        boot.size = len(kept)


def _read_tail(path: Path, max_bytes: int) -> bytes:
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - max_bytes))
            return file.read(max_bytes)
    except FileNotFoundError:
        return b""
