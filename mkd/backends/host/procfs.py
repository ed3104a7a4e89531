"""What /proc tells about multikernel: RAM, the pool and instance regions in iomem, /proc/kimage."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from mkd.backends.kernel_io import KernelIO
from mkd.kernel_types import MemChunk

POOL_IOMEM_NAME = "Multikernel Memory Pool"  # spec 3.1 (v2 boot pool)

_IOMEM_LINE = re.compile(r"^\s*([0-9a-fA-F]+)-([0-9a-fA-F]+)\s*:\s*(.+?)\s*$", re.MULTILINE)
# spec 3.2: each chunk of an instance pool is an iomem region with this name.
_INSTANCE_REGION = re.compile(r"^mk-instance-(\d+)-(.+)-region-(\d+)$")
# spec 2.6: "MK_ID  Type  Start Address  Segments" (+ tree "Mode  Cmdline").
_KIMAGE_ROW = re.compile(r'^\s*(\d+)\s+(\S+)\s+0x([0-9a-fA-F]+)\s+(\d+)(?:\s+(file|sys))?(?:\s+"(.*)")?\s*$')


@dataclass(frozen=True)
class IomemRegion:
    start: int
    end: int  # inclusive, as iomem prints it
    name: str

    @property
    def size(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True)
class KimageRow:
    """One /proc/kimage row; the kernel exposes no segment addresses (spec 2.6)."""

    mk_id: int
    type: str
    start: int
    segment_count: int
    mode: str | None  # tree only
    cmdline: str | None  # tree only, file-mode images


_Parsed = TypeVar("_Parsed")


class Procfs:
    """/proc read fresh on every call; a file's parse is reused while its bytes are unchanged
    (with 1,000 instances iomem has thousands of rows, re-read on every create)."""

    def __init__(self, io: KernelIO) -> None:
        self.io = io
        self._parsed: dict[tuple[str, str], tuple[str, object]] = {}  # (file, parser) -> (text, parse)

    def _parse(self, relative: str, parse: Callable[[str], _Parsed], text: str | None = None) -> _Parsed:
        """`parse` of the file's text (`text` when the caller read it already), reused while the
        bytes are unchanged."""
        text = (self.read_text(relative) if text is None else text) or ""
        key = (relative, parse.__name__)
        cached = self._parsed.get(key)
        if cached is not None and cached[0] == text:
            return cached[1]  # type: ignore[return-value]
        parsed = parse(text)
        self._parsed[key] = (text, parsed)
        return parsed

    def read_bytes(self, relative: str) -> bytes | None:
        """A /proc file's bytes, or None when it is absent or unreadable (not root, no support)."""
        try:
            return self.io.read(f"/proc/{relative}")
        except OSError:
            return None

    def read_text(self, relative: str) -> str | None:
        data = self.read_bytes(relative)
        return None if data is None else data.decode(errors="replace")

    def memory_bytes(self) -> int:
        for line in (self.read_text("meminfo") or "").splitlines():
            key, _, value = line.partition(":")
            if key == "MemTotal":
                amount, _, unit = value.strip().partition(" ")
                return int(amount) * (1024 if unit.strip().lower() == "kb" else 1)
        return 0

    def iomem(self) -> list[IomemRegion]:
        """Every iomem region; addresses read as 0 without CAP_SYS_ADMIN, so such rows are dropped."""
        return list(self._parse("iomem", _parse_iomem))

    def pool_region(self) -> IomemRegion | None:
        return next((region for region in self.iomem() if region.name == POOL_IOMEM_NAME), None)

    def instance_regions(self) -> dict[int, tuple[MemChunk, ...]]:
        """Instance id -> its pool's chunks, in region order (spec 3.2)."""
        return dict(self._parse("iomem", _parse_instance_regions))

    def regions_of(self, mk_id: int) -> tuple[MemChunk, ...]:
        """One instance's chunks, found by their row names in the text rather than by parsing
        every row (a substring search: iomem has thousands of rows with 1,000 instances)."""
        text = self.read_text("iomem") or ""
        marker = f" : mk-instance-{mk_id}-"
        rows = []
        at = text.find(marker)
        while at >= 0:
            line_start = text.rfind("\n", 0, at) + 1
            line_end = text.find("\n", at)
            match = _IOMEM_LINE.match(text, line_start, len(text) if line_end < 0 else line_end)
            region = _INSTANCE_REGION.match(match.group(3)) if match is not None else None
            if match is not None and region is not None and int(region.group(1)) == mk_id:
                start, end = int(match.group(1), 16), int(match.group(2), 16)
                if start or end:
                    rows.append((int(region.group(3)), MemChunk(base=start, bytes=end - start + 1)))
            at = text.find(marker, at + len(marker))
        return tuple(chunk for _, chunk in sorted(rows))

    def kimages(self) -> dict[int, KimageRow] | None:
        """Multikernel rows of /proc/kimage by instance id; None when the kernel has no such file."""
        text = self.read_text("kimage")
        if text is None:
            return None
        return dict(self._parse("kimage", _parse_kimages, text))

    def apic_ids(self) -> dict[int, int]:
        """x86 logical CPU -> APIC id from /proc/cpuinfo ({} elsewhere)."""
        ids: dict[int, int] = {}
        processor: int | None = None
        for line in (self.read_text("cpuinfo") or "").splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "processor" and value.isdigit():
                processor = int(value)
            elif key == "apicid" and processor is not None and value.isdigit():
                ids[processor] = int(value)
        return ids


def _parse_iomem(text: str) -> tuple[IomemRegion, ...]:
    regions = []
    for match in _IOMEM_LINE.finditer(text):
        start, end = int(match.group(1), 16), int(match.group(2), 16)
        if start or end:
            regions.append(IomemRegion(start, end, match.group(3)))
    return tuple(regions)


def _parse_instance_regions(text: str) -> dict[int, tuple[MemChunk, ...]]:
    numbered: dict[int, list[tuple[int, MemChunk]]] = {}
    for region in _parse_iomem(text):
        match = _INSTANCE_REGION.match(region.name)
        if match is not None:
            chunk = MemChunk(base=region.start, bytes=region.size)
            numbered.setdefault(int(match.group(1)), []).append((int(match.group(3)), chunk))
    return {mk_id: tuple(chunk for _, chunk in sorted(rows)) for mk_id, rows in numbered.items()}


def _parse_kimages(text: str) -> dict[int, KimageRow]:
    rows: dict[int, KimageRow] = {}
    for line in text.splitlines():
        match = _KIMAGE_ROW.match(line)
        if match is None or match.group(2) != "multikernel":
            continue
        row = KimageRow(
            mk_id=int(match.group(1)),
            type=match.group(2),
            start=int(match.group(3), 16),
            segment_count=int(match.group(4)),
            mode=match.group(5),
            cmdline=match.group(6),
        )
        rows[row.mk_id] = row
    return rows
