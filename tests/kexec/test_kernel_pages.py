"""The page allocator for a load's kernel pages never hands out pool memory or a page twice."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mkd.errors import KernelError
from mkd.kexec.kernel_pages import PAGE_SIZE, KernelPages

RAM_PAGES = 4096  # a 16 MiB machine keeps the search small


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


@st.composite
def _chunks(draw: st.DrawFn) -> list[tuple[int, int]]:
    """Page-aligned pool chunks anywhere in RAM, possibly touching each other and RAM's top."""
    starts = draw(st.lists(st.integers(0, RAM_PAGES - 1), max_size=12, unique=True))
    return [(page * PAGE_SIZE, draw(st.integers(1, 64)) * PAGE_SIZE) for page in starts]


@settings(max_examples=150, deadline=None)
@given(chunks=_chunks(), sizes=st.lists(st.sampled_from([PAGE_SIZE, 2 * PAGE_SIZE, 0x82000]), max_size=10))
def test_pages_avoid_every_chunk_and_each_other(chunks: list[tuple[int, int]], sizes: list[int]) -> None:
    pages = KernelPages(ram=((0, RAM_PAGES * PAGE_SIZE),), excluded=list(chunks))
    given_out: list[tuple[int, int]] = []
    for size in sizes:
        try:
            addr = pages.alloc("control", size)
        except KernelError as exc:
            assert exc.errno_code == errno.ENOMEM
            continue
        page = (addr, size)
        assert addr % PAGE_SIZE == 0 and 0 <= addr and addr + size <= RAM_PAGES * PAGE_SIZE
        assert not any(_overlaps(page, chunk) for chunk in chunks)
        assert not any(_overlaps(page, other) for other in given_out)
        given_out.append(page)


def test_the_highest_free_page_below_a_chunk_at_the_top() -> None:
    top = RAM_PAGES * PAGE_SIZE
    pages = KernelPages(ram=((0, top),), excluded=[(top - 8 * PAGE_SIZE, 8 * PAGE_SIZE)])
    assert pages.alloc("control", PAGE_SIZE) == top - 9 * PAGE_SIZE
    assert pages.alloc("swap", PAGE_SIZE) == top - 10 * PAGE_SIZE


def test_no_room_and_fault_injection_are_enomem() -> None:
    full = KernelPages(ram=((0, 4 * PAGE_SIZE),), excluded=[(0, 4 * PAGE_SIZE)])
    with pytest.raises(KernelError) as caught:
        full.alloc("manifest", PAGE_SIZE)
    assert caught.value.errno_code == errno.ENOMEM
    told = KernelPages(ram=((0, 1 << 20),), failing=frozenset({"ipi"}))
    with pytest.raises(KernelError) as caught:
        told.alloc("ipi", PAGE_SIZE)
    assert caught.value.errno_code == errno.ENOMEM and told.taken == []
    assert told.alloc("manifest", PAGE_SIZE) == (1 << 20) - PAGE_SIZE
