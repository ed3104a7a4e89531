"""mkd/cli/quantities.py: CPU lists and sizes as people type them, and bad input refused with a reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mkd.cli.quantities import MAX_CPUS, QuantityError, format_cpu_list, format_size, parse_cpu_list, parse_size


@pytest.mark.parametrize(("text", "cpus"), [
    ("2-5,8", [2, 3, 4, 5, 8]),
    ("7", [7]),
    ("0-0", [0]),
    (" 2 , 4-5 ", [2, 4, 5]),
    ("8,2-3", [8, 2, 3]),        # order kept as given; the daemon sorts
    ("2,3,4", [2, 3, 4]),        # the old comma form still works
])
def test_cpu_lists(text: str, cpus: list[int]) -> None:
    assert parse_cpu_list(text) == cpus


@pytest.mark.parametrize(("text", "reason"), [
    ("", "CPU ids and ranges"),
    ("2,,3", "CPU ids and ranges"),
    ("2,", "CPU ids and ranges"),
    ("two", "neither a CPU id nor a range"),
    ("-1", "neither a CPU id nor a range"),
    ("2-", "neither a CPU id nor a range"),
    ("2-3-4", "neither a CPU id nor a range"),
    ("0x2", "neither a CPU id nor a range"),
    ("5-2", "runs backwards (write 2-5)"),
    ("2-5,4", "CPU 4 is listed twice"),
    ("0-99999999", f"more than {MAX_CPUS} CPUs"),
])
def test_bad_cpu_lists_say_why(text: str, reason: str) -> None:
    with pytest.raises(QuantityError, match="^--cpus") as refused:
        parse_cpu_list(text)
    assert reason in str(refused.value)


def test_the_option_is_named_in_the_error() -> None:
    with pytest.raises(QuantityError, match="^--pool-cpus"):
        parse_cpu_list("x", option="--pool-cpus")


@pytest.mark.parametrize(("text", "size"), [
    ("4096", 4096),
    ("0x10000000", 0x10000000),
    ("0X1000", 4096),
    ("256M", 256 << 20),
    ("256m", 256 << 20),
    ("1G", 1 << 30),
    ("1GiB", 1 << 30),
    ("1Gi", 1 << 30),
    ("64K", 64 << 10),
    ("512KB", 512 << 10),
    ("2T", 2 << 40),
    ("1E", 1 << 60),
    ("0x10M", 16 << 20),         # as the kernel's memparse: a hex number with a unit
    ("0", 0),                    # the daemon, not the parser, says 0 bytes is not an instance
    (" 1G ", 1 << 30),
])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "reason"), [
    ("", "wants a size"),
    ("M", "wants a size"),
    ("1.5G", "whole numbers only"),
    ("-1M", "wants a size"),
    ("12X", "wants a size"),
    ("1 G B", "wants a size"),
    ("4i", "wants a size"),
    ("4iB", "wants a size"),
    ("0x", "wants a size"),
    ("0xZZ", "wants a size"),
    ("16E", "more than 2^64-1 bytes"),
    ("18446744073709551616", "more than 2^64-1 bytes"),
])
def test_bad_sizes_say_why(text: str, reason: str) -> None:
    with pytest.raises(QuantityError, match="^--memory") as refused:
        parse_size(text)
    assert reason in str(refused.value)


@pytest.mark.parametrize(("size", "shown"), [
    (0, "0B"), (512, "512B"), (4096, "4K"), (256 << 20, "256M"), (1 << 30, "1G"), (3 << 29, "1536M"),
    (3000000, "2.9M"), (1 << 62, "4E"),
])
def test_sizes_shown(size: int, shown: str) -> None:
    assert format_size(size) == shown


def test_cpu_lists_shown_as_ranges() -> None:
    assert format_cpu_list([8, 2, 3, 4, 5]) == "2-5,8"
    assert format_cpu_list([]) == ""
    assert format_cpu_list([1, 3, 5]) == "1,3,5"


@given(st.sets(st.integers(0, 4096), max_size=200))
def test_a_shown_cpu_list_parses_back(cpus: set[int]) -> None:
    shown = format_cpu_list(cpus)
    assert (parse_cpu_list(shown) if shown else []) == sorted(cpus)


@given(st.integers(0, (1 << 64) - 1))
def test_an_exactly_shown_size_parses_back(size: int) -> None:
    shown = format_size(size)
    if "." not in shown:
        assert parse_size(shown.removesuffix("B")) == size
