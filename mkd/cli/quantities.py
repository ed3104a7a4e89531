"""CPU lists and byte sizes as people type them (`2-5,8`, `256M`, `0x10000000`) and as tables show them.

The forms follow the kernel's own: CPU lists as in `/sys/devices/system/cpu/online` (cpulist),
sizes as `memparse()` reads `mkkernel_pool=` — binary units (K = 1024), a decimal or 0x number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# The kernel's largest NR_CPUS (x86 MAXSMP) and the API's own bound on a CPU list's length: a typo
# such as `0-99999999` is refused here instead of expanding into a list the daemon refuses anyway.
MAX_CPUS = 8192
MAX_BYTES = (1 << 64) - 1  # the API's u64 bound

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50, "E": 1 << 60}
_SIZE = re.compile(r"(?P<number>0[xX][0-9a-fA-F]+|[0-9]+)\s*(?:(?P<unit>[kKmMgGtTpPeE])i?)?[bB]?")
_CPU_ITEM = re.compile(r"(?P<first>[0-9]+)(?:-(?P<last>[0-9]+))?")


class QuantityError(ValueError):
    """Input that is not a CPU list or a size; the message says what was expected."""


def parse_cpu_list(text: str, *, option: str = "--cpus") -> list[int]:
    """`2-5,8` -> [2, 3, 4, 5, 8]; ids and ranges separated by commas, each CPU once."""
    cpus: list[int] = []
    seen: set[int] = set()
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise QuantityError(f"{option} wants CPU ids and ranges such as 2-5,8, not {text!r}")
    for item in items:
        match = _CPU_ITEM.fullmatch(item)
        if match is None:
            raise QuantityError(f"{option}: {item!r} is neither a CPU id nor a range such as 2-5")
        first = int(match["first"])
        last = int(match["last"]) if match["last"] is not None else first
        if last < first:
            raise QuantityError(f"{option}: the range {item!r} runs backwards (write {last}-{first})")
        if last - first + 1 + len(cpus) > MAX_CPUS:
            raise QuantityError(f"{option}: {text!r} names more than {MAX_CPUS} CPUs")
        for cpu in range(first, last + 1):
            if cpu in seen:
                raise QuantityError(f"{option}: CPU {cpu} is listed twice in {text!r}")
            seen.add(cpu)
            cpus.append(cpu)
    return cpus


def format_cpu_list(cpus: Iterable[int]) -> str:
    """[2, 3, 4, 5, 8] -> `2-5,8` (sorted; the inverse of parse_cpu_list)."""
    ordered = sorted(set(cpus))
    parts: list[str] = []
    start = 0
    for i in range(1, len(ordered) + 1):
        if i == len(ordered) or ordered[i] != ordered[i - 1] + 1:
            first, last = ordered[start], ordered[i - 1]
            parts.append(str(first) if first == last else f"{first}-{last}")
            start = i
    return ",".join(parts)


def parse_size(text: str, *, option: str = "--memory") -> int:
    """`256M`, `1G`, `1GiB`, `0x10000000`, `4096` -> bytes (binary units, as the kernel's memparse)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        hint = " (whole numbers only: 1536M, not 1.5G)" if re.fullmatch(r"\s*[0-9]*\.[0-9]+.*", text) else ""
        raise QuantityError(f"{option} wants a size such as 256M, 1G or 0x10000000, not {text!r}{hint}")
    value = int(match["number"], 0) * _UNITS[(match["unit"] or "").upper()]
    if value > MAX_BYTES:
        raise QuantityError(f"{option}: {text!r} is more than 2^64-1 bytes")
    return value


def format_size(size: int) -> str:
    """Bytes for a table: the largest binary unit that divides it exactly (`256M`), else to 0.1 (`1.5G`)."""
    for unit in ("E", "P", "T", "G", "M", "K"):
        scale = _UNITS[unit]
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    for unit in ("E", "P", "T", "G", "M", "K"):
        if size >= _UNITS[unit]:
            return f"{size / _UNITS[unit]:.1f}{unit}"
    return f"{size}B"
