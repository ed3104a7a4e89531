"""Content-addressed image store under the state directory: images/<sha256[:2]>/<sha256>.

Uploads are streamed to a temporary file while they are hashed, never held whole in memory, and
renamed into place only when complete, so a crash leaves at most a stray temporary file.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from mkd.errors import InvalidInput, PayloadTooLarge

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_SYNC_EVERY = 32 << 20
_QUEUED = 4
_BATCH = 1 << 20  # hand ~1 MiB at a time to a worker thread: hashing stays off the event loop


_libc = ctypes.CDLL(None, use_errno=True)
_sync_file_range = getattr(_libc, "sync_file_range", None)
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """sync_file_range(SYNC_FILE_RANGE_WRITE): queue dirty pages for write-back, don't wait."""
    if _sync_file_range is not None:
        _sync_file_range(fd, ctypes.c_int64(offset), ctypes.c_int64(length), _SYNC_FILE_RANGE_WRITE)


def check_sha256(value: str) -> str:
    if not SHA256_RE.fullmatch(value):
        raise InvalidInput(f"image reference {value!r} is not a sha256 (64 lower-case hex digits)")
    return value


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int
    head: bytes  # the first bytes, for format detection
    path: Path


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def remove(self, sha256: str) -> None:
        self.path_for(sha256).unlink(missing_ok=True)

    def clear_partial(self) -> None:
        """Drop temporary files left by uploads interrupted by a crash."""
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)

    async def receive(self, chunks: AsyncIterator[bytes], *, limit: int, head_bytes: int = 4096) -> StoredBlob:
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, prefix="upload-")
        tmp_path = Path(tmp_name)
        digest = hashlib.sha256()
        size = 0
        head = b""
        pending: list[bytes] = []
        pending_len = 0

        written = 0
        synced_to = 0

        def flush(parts: list[bytes]) -> None:
            nonlocal written, synced_to
            for part in parts:
                digest.update(part)
                os.write(fd, part)
                written += len(part)
            if written - synced_to >= _SYNC_EVERY:
                # Start write-back of what is written so far without waiting for it, so the
                # closing fsync has little left to do and the upload never stalls on the disk.
                start_writeback(fd, synced_to, written - synced_to)
                synced_to = written

        loop = asyncio.get_running_loop()
        # One worker per upload keeps the batches in order; a few may queue so the event loop
        # keeps reading while the worker hashes and writes (memory: at most _QUEUED batches).
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mkd-upload")
        queued: collections.deque[asyncio.Future[None]] = collections.deque()
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
                    if len(queued) >= _QUEUED:
                        await queued.popleft()
                    batch, pending, pending_len = pending, [], 0
                    queued.append(loop.run_in_executor(worker, flush, batch))
            if pending:
                queued.append(loop.run_in_executor(worker, flush, pending))
            while queued:
                await queued.popleft()
            if size == 0:
                raise InvalidInput("image body is empty")
            await loop.run_in_executor(worker, os.fsync, fd)
        except BaseException:
            if queued:
                await asyncio.wait(list(queued))  # never close the fd under a running write
            os.close(fd)
            tmp_path.unlink(missing_ok=True)
            raise
        finally:
            worker.shutdown(wait=False)
        os.close(fd)
        sha = digest.hexdigest()
        final = self.path_for(sha)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            tmp_path.unlink(missing_ok=True)
        else:
            os.chmod(tmp_path, 0o444)
            os.replace(tmp_path, final)
        return StoredBlob(sha256=sha, size=size, head=head, path=final)
