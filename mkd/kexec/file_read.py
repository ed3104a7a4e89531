"""kernel_read_file_from_fd for kexec (spec 2.7.1 steps 1 and 4), over paths instead of fds.

Only the size is learnt up front (stat); loaders read the header bytes they need, and segments keep
file regions, so a multi-GiB file is never pulled into memory.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from mkd.errors import KernelError

# KEXEC_FILE_SIZE_MAX = min(4 GiB, SSIZE_MAX) on 64-bit (spec 2.7.1 step 1).
KEXEC_FILE_SIZE_MAX = 4 << 30


@dataclass(frozen=True)
class KexecFile:
    """A file the kernel has "read": its path and its i_size at read time."""

    path: Path
    size: int

    def read(self, offset: int, length: int) -> bytes:
        """Bytes [offset, offset+length) clipped to the file; a short read of the promised size is EIO."""
        if offset >= self.size or length <= 0:
            return b""
        want = min(length, self.size - offset)
        try:
            with open(self.path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(want)
        except OSError as exc:  # gone or unreadable since it was sized
            raise KernelError(errno.EIO, f"reading the file failed: {exc.strerror}") from exc
        if len(data) != want:
            raise KernelError(errno.EIO, "short read of the file")  # no server path in a problem
        return data


_PROC_FDS = Path("/proc/self/fd")


def _open_for_writing(info: os.stat_result) -> bool:
    """Whether a descriptor of this process has the file (same device and inode) open for writing."""
    try:
        fds = list(_PROC_FDS.iterdir())
    except OSError:
        return False  # no procfs: nothing to see
    for fd in fds:
        try:
            held = os.stat(fd)
            if (held.st_dev, held.st_ino) != (info.st_dev, info.st_ino):
                continue
            mode = fcntl.fcntl(int(fd.name), fcntl.F_GETFL) & os.O_ACCMODE
        except (OSError, ValueError):
            continue  # closed meanwhile (the listing's own descriptor) or not a number
        if mode in (os.O_WRONLY, os.O_RDWR):
            return True
    return False


def read_kexec_file(path: Path | None, what: str) -> KexecFile:
    """Open and size-check a kernel or initrd file; `what` names it in messages."""
    # Messages name the file by `what`, never by path: they end up in problem details, and a
    # client has no business learning where the state directory is.
    # spec 2.7.1 step 1: fd -1 (None here) or a file we cannot open for reading -> EBADF.
    if path is None:
        raise KernelError(errno.EBADF, f"{what}: bad file descriptor")
    try:
        info = os.stat(path)
    except OSError as exc:
        raise KernelError(errno.EBADF, f"{what}: cannot open the file: {exc.strerror}") from exc
    # spec 2.7.1 step 1: not a regular file (directory, pipe, socket) -> EINVAL. Checked before
    # opening, so a FIFO is never opened (which would block).
    if not stat.S_ISREG(info.st_mode):
        raise KernelError(errno.EINVAL, f"{what}: not a regular file")
    if not os.access(path, os.R_OK):
        raise KernelError(errno.EBADF, f"{what}: the file is not readable")
    # spec 2.7.1 step 1: deny_write_access -> ETXTBSY while the file is open for writing. What the
    # simulator can see is this process's own descriptors.
    if _open_for_writing(info):
        raise KernelError(errno.ETXTBSY, f"{what}: the file is open for writing")
    # spec 2.7.1 step 1: i_size <= 0 -> EINVAL; i_size > KEXEC_FILE_SIZE_MAX -> EFBIG.
    if info.st_size <= 0:
        raise KernelError(errno.EINVAL, f"{what}: the file is empty")
    if info.st_size > KEXEC_FILE_SIZE_MAX:
        raise KernelError(errno.EFBIG, f"{what}: the file is larger than 4 GiB")
    return KexecFile(path=Path(path), size=info.st_size)
