"""Content-addressed image store under the state directory: images/<sha256[:2]>/<sha256>.

Uploads are streamed to a temporary file while they are hashed, never held whole in memory, and
renamed into place only when complete, so a crash leaves at most a stray temporary file.
"""

from __future__ import annotations

import errno
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from mkd.errors import InvalidInput, KernelError, PayloadTooLarge
from mkd.images.spool import UploadSpool

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Hand ~2 MiB at a time to the spool's threads: fewer hand-offs than per chunk (uvicorn gives
# ≤256 KiB), and hashing stays off the event loop.
_BATCH = 2 << 20


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
            final = self.path_for(sha)
            if final.exists():
                spool.discard()  # already stored (and durable): no fsync needed
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                await spool.keep(final)
        except OSError as exc:
            await spool.abort()
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                # DESIGN "Limits": a full disk is ENOSPC 409; the partial file is gone again.
                raise KernelError(errno.ENOSPC, "the image store's disk is full: the upload was not stored") from exc
            raise
        except BaseException:
            await spool.abort()
            raise
        return StoredBlob(sha256=sha, size=size, head=head, path=final)
