"""A kimage's segments: what kexec_add_buffer is asked for and what it recorded (spec 2.7.1)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_STREAM_CHUNK = 1 << 20


@dataclass
class SegmentSource:
    """The kept load-time buffer of one segment (spec 2.4 step 6).

    Either `data` in memory, or `length` bytes of the file at `path` from `offset`. When `pieces` is
    set, the buffer is laid out from several file regions, (dest_offset, file_offset, size) each,
    with zeros in between (the vmlinux loader's PT_LOAD layout), so it never has to be built in memory.
    """

    data: bytes | None = None
    path: Path | None = None
    offset: int = 0
    length: int = 0
    pieces: tuple[tuple[int, int, int], ...] = ()

    def __post_init__(self) -> None:
        if self.data is not None:
            self.length = len(self.data)

    def iter_bytes(self) -> Iterator[bytes]:
        """The buffer's `length` bytes, streamed."""
        if self.data is not None:
            yield self.data
            return
        if self.path is None:
            yield from _zeros(self.length)
            return
        pieces = self.pieces or ((0, self.offset, self.length),)
        with open(self.path, "rb") as fh:
            at = 0
            for dest, file_offset, size in sorted(pieces):
                size = min(size, self.length - dest)
                if size <= 0 or dest < at:
                    continue
                yield from _zeros(dest - at)
                fh.seek(file_offset)
                left = size
                while left:
                    block = fh.read(min(left, _STREAM_CHUNK))
                    if not block:
                        raise OSError(f"{self.path} shrank while being read")
                    left -= len(block)
                    yield block
                at = dest + size
            yield from _zeros(self.length - at)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for block in self.iter_bytes():
            digest.update(block)
        return digest.hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "data": self.data.hex() if self.data is not None else None,
            "path": str(self.path) if self.path is not None else None,
            "offset": self.offset,
            "length": self.length,
            "pieces": [list(piece) for piece in self.pieces],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SegmentSource:
        return cls(
            data=bytes.fromhex(data["data"]) if data.get("data") is not None else None,
            path=Path(data["path"]) if data.get("path") is not None else None,
            offset=int(data.get("offset", 0)),
            length=int(data.get("length", 0)),
            pieces=tuple((int(a), int(b), int(c)) for a, b, c in data.get("pieces", ())),
        )


def _zeros(count: int) -> Iterator[bytes]:
    while count > 0:
        size = min(count, _STREAM_CHUNK)
        yield bytes(size)
        count -= size


@dataclass
class KexecBuf:
    """struct kexec_buf: one kexec_add_buffer request. mem 0 = KEXEC_BUF_MEM_UNKNOWN."""

    kind: str
    source: SegmentSource
    bufsz: int
    memsz: int
    buf_align: int
    buf_min: int
    buf_max: int
    top_down: bool
    mem: int = 0


@dataclass
class PlannedSegment:
    kind: str  # "purgatory", "boot_params", "kernel", "initrd", "dtb", "ima"
    source: SegmentSource
    bufsz: int
    mem: int
    memsz: int
    buf_align: int
    buf_min: int
    buf_max: int
    top_down: bool
    in_pool: bool
    # The instance-pool allocation behind this segment; differs from (mem, memsz) when a loader
    # moves the segment start afterwards (arm64 text_offset).
    pool_alloc: tuple[int, int] | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source.to_json(),
            "bufsz": self.bufsz,
            "mem": self.mem,
            "memsz": self.memsz,
            "buf_align": self.buf_align,
            "buf_min": self.buf_min,
            "buf_max": self.buf_max,
            "top_down": self.top_down,
            "in_pool": self.in_pool,
            "pool_alloc": list(self.pool_alloc) if self.pool_alloc is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PlannedSegment:
        alloc = data.get("pool_alloc")
        return cls(
            kind=str(data["kind"]),
            source=SegmentSource.from_json(data["source"]),
            bufsz=int(data["bufsz"]),
            mem=int(data["mem"]),
            memsz=int(data["memsz"]),
            buf_align=int(data["buf_align"]),
            buf_min=int(data["buf_min"]),
            buf_max=int(data["buf_max"]),
            top_down=bool(data["top_down"]),
            in_pool=bool(data["in_pool"]),
            pool_alloc=(int(alloc[0]), int(alloc[1])) if alloc is not None else None,
        )
