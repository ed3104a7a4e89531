"""Content-addressed image store under the state directory: images/<sha256[:2]>/<sha256>.

Uploads are streamed to a temporary file while they are hashed, never held whole in memory, and
renamed into place only when complete, so a crash leaves at most a stray temporary file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from mkd.errors import InvalidInput, PayloadTooLarge

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_SYNC_EVERY = 32 << 20
_BATCH = 1 << 20  # hand ~1 MiB at a time to a worker thread: hashing stays off the event loop


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

        unsynced = 0

        def flush(parts: list[bytes]) -> None:
            nonlocal unsynced
            for part in parts:
                digest.update(part)
                os.write(fd, part)
                unsynced += len(part)
            if unsynced >= _SYNC_EVERY:
                # Write back as we go, so the closing fsync has little left to do.
                os.fdatasync(fd)
                unsynced = 0

        loop = asyncio.get_running_loop()
        in_flight: asyncio.Future[None] | None = None
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
                    # Double buffering: the next batch arrives while a worker hashes and writes
                    # this one (hashlib and os.write release the GIL); at most one batch waits.
                    if in_flight is not None:
                        await in_flight
                    batch, pending, pending_len = pending, [], 0
                    in_flight = loop.run_in_executor(None, flush, batch)
            if in_flight is not None:
                await in_flight
                in_flight = None
            if pending:
                await anyio.to_thread.run_sync(flush, pending)
            if size == 0:
                raise InvalidInput("image body is empty")
            await anyio.to_thread.run_sync(os.fsync, fd)
        except BaseException:
            if in_flight is not None:
                await asyncio.wait([in_flight])  # never close the fd under a running write
            os.close(fd)
            tmp_path.unlink(missing_ok=True)
            raise
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
