"""How stored console bytes become `line` events, and when the reader thread gathers."""

from __future__ import annotations

from mkd.services.console_follow import ConsoleLine, _cut, split_lines
from mkd.services.console_pace import GATHER_S
from mkd.services.console_reader import gather_s


def test_lines_carry_the_offset_just_past_their_end() -> None:
    lines, rest = split_lines(b"one\r\ntwo\n\xffthree", 100)
    assert lines == [ConsoleLine("one", 105), ConsoleLine("two", 109)]
    assert rest == b"\xffthree"
    assert split_lines(b"\xff\n", 0) == ([ConsoleLine("\ufffd", 2)], b"")  # replacement characters


def test_an_unended_line_is_never_cut_inside_a_character() -> None:
    data = "ab€".encode()  # € is three bytes
    assert _cut(data[:4], 4) == (b"ab", data[2:4])
    assert _cut(data, 5) == (data, b"")
    assert _cut(data[2:4], 2) == (data[2:4], b"")  # nothing but a cut character: sent as it is


def test_the_reader_gathers_unless_a_console_prints_fast() -> None:
    assert gather_s(0, 1.0) == GATHER_S
    assert gather_s(40, 1.0) == GATHER_S  # a line a second
    assert gather_s(16_000, 0.01) == 0.0  # 1.6 MB/s: read again at once
