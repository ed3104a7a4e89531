"""/proc/kimage rendering (spec 2.6)."""

from __future__ import annotations

from collections.abc import Sequence

from mkd.kernel_types import KernelProfile

KimageRow = tuple[int, str, int, int, str, bytes | None]  # mk_id, type, start, nr_segments, mode, cmdline


def render_proc_kimage(profile: KernelProfile, rows: Sequence[KimageRow]) -> str:
    if profile == "rfc-v2":
        lines = ["MK_ID  Type        Start Address   Segments", "-----  ----------  --------------  --------"]
        if not rows:
            lines.append("No kimages loaded")
        for mk_id, kind, start, nr_segments, _mode, _cmdline in rows:
            lines.append(f"{mk_id:5d}  {kind:<10s}  0x{start:012x}  {nr_segments:8d}")
        return "\n".join(lines) + "\n"
    lines = [
        "MK_ID  Type        Start Address   Segments  Mode  Cmdline",
        "-----  ----------  --------------  --------  ----  -------",
    ]
    for mk_id, kind, start, nr_segments, mode, cmdline in rows:
        row = f"{mk_id:5d}  {kind:<10s}  0x{start:012x}  {nr_segments:8d}  {mode:<4s}"
        if mode == "file":
            # The kept command line, trailing NUL stripped, quoted.
            text = (cmdline or b"").rstrip(b"\0").decode("utf-8", errors="replace")
            row += f'  "{text}"'
        lines.append(row)
    return "\n".join(lines) + "\n"
