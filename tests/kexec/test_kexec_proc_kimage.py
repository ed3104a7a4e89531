"""/proc/kimage (spec 2.6, section 7 vectors 14, 21, 53)."""

from __future__ import annotations

from mkd.kexec.proc_kimage import render_proc_kimage


def test_v2_empty() -> None:
    assert render_proc_kimage("rfc-v2", []) == (
        "MK_ID  Type        Start Address   Segments\n-----  ----------  --------------  --------\nNo kimages loaded\n"
    )


def test_v2_row() -> None:
    text = render_proc_kimage("rfc-v2", [(1, "multikernel", 0x100004000, 4, "file", b"x\0")])
    assert text.splitlines()[2] == "    1  multikernel  0x000100004000         4"


def test_tree_empty_has_no_placeholder_line() -> None:
    assert render_proc_kimage("tree", []) == (
        "MK_ID  Type        Start Address   Segments  Mode  Cmdline\n"
        "-----  ----------  --------------  --------  ----  -------\n"
    )


def test_tree_rows() -> None:
    rows = [
        (1, "multikernel", 0x100004000, 2, "file", b"console=ttyS0\0"),
        (0, "default", 0x7FFFF000, 5, "sys", None),
    ]
    lines = render_proc_kimage("tree", rows).splitlines()
    assert lines[2] == '    1  multikernel  0x000100004000         2  file  "console=ttyS0"'
    assert lines[3] == "    0  default     0x00007ffff000         5  sys "
