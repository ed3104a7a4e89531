"""Content-addressed image store under the state directory: images/<sha256[:2]>/<sha256>.

Uploads are streamed to a temporary file while they are hashed, never held whole in memory, and
renamed into place only when complete, so a crash leaves at most a stray temporary file.

DESIGN "Durability": image rows and files change under one lock (`ImageStore.lock`, held by the
caller around placing or removing the file and changing the row), so a delete racing an upload of
the same bytes ends with both or neither.
"""

from __future__ import annotations

import errno
import re
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from mkd.errors import InvalidInput, KernelError, PayloadTooLarge
from mkd.images.spool import UploadSpool, fsync_directory

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Hand ~2 MiB at a time to the spool's threads: fewer hand-offs than per chunk (uvicorn gives
# ≤256 KiB), and hashing stays off the event loop.
_BATCH = 2 << 20


def disk_full(exc: OSError) -> OSError | KernelError:
    """DESIGN "Limits": a full disk is ENOSPC 409 (the caller removes the partial file)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return KernelError(errno.ENOSPC, "the image store's disk is full: the upload was not stored")
    return exc


def check_sha256(value: str) -> str:
    if not SHA256_RE.fullmatch(value):
        raise InvalidInput(f"image reference {value!r} is not a sha256 (64 lower-case hex digits)")
    return value


@dataclass(frozen=True)
class ReceivedUpload:
    """An upload read whole and hashed, still in its temporary file: `place` puts it in the store."""

    sha256: str
    size: int
    head: bytes  # the first bytes, for format detection
    spool: UploadSpool


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        # Held (by the image service) around a file change and its row change: see the docstring.
        self.lock = threading.Lock()

    def path_for(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def remove(self, sha256: str) -> None:
        """Unlink the file, durably. Blocking; the caller holds `lock`."""
        path = self.path_for(sha256)
        if path.exists():
            path.unlink()
            fsync_directory(path.parent)

    def place(self, upload: ReceivedUpload) -> None:
        """Move the upload into the store (fsync, rename, fsync the directory), or drop it when the
        same bytes are stored already. Blocking; the caller holds `lock`."""
        final = self.path_for(upload.sha256)
        if final.is_file():
            upload.spool.discard()
            return
        if not final.parent.is_dir():
            final.parent.mkdir()
            fsync_directory(self.root)  # the new shard directory's entry
        upload.spool.keep(final)

    def clear_partial(self) -> None:
        """Drop temporary files left by uploads interrupted by a crash."""
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)

    async def receive(self, chunks: AsyncIterator[bytes], *, limit: int, head_bytes: int = 4096) -> ReceivedUpload:
        spool = UploadSpool(self.tmp)
        size = 0
        head = b""
        pending: list[bytes] = []
        pending_len = 0
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"image is larger than the limit of {limit} bytes")
                if len(head) < head_bytes:
                    head += chunk[: head_bytes - len(head)]
                pending.append(chunk)
                pending_len += len(chunk)
                if pending_len >= _BATCH:
                    await spool.add(pending)
                    pending, pending_len = [], 0
            if size == 0:
                raise InvalidInput("image body is empty")
            if pending:
                await spool.add(pending)
            sha = await spool.sha256()
        except OSError as exc:
            await spool.abort()
            raise disk_full(exc) from exc
        except BaseException:
            await spool.abort()
            raise
        return ReceivedUpload(sha256=sha, size=size, head=head, spool=spool)
