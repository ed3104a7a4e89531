"""The gen_pool model (spec 3.1, 3.2)."""

from __future__ import annotations

import pytest

from mkd.kexec.mem_pool import GenPool

MIB = 1 << 20


def test_first_fit_and_granule_rounding() -> None:
    pool = GenPool([(0x100000, MIB)])
    assert pool.alloc(1) == 0x100000
    assert pool.alloc(5000) == 0x101000  # two 4 KiB granules
    assert pool.alloc(4096) == 0x103000
    assert pool.avail() == MIB - 4 * 4096
    pool.free(0x101000, 5000)
    assert pool.alloc(4096) == 0x101000  # the lowest hole again
    assert pool.alloc(0) is None


def test_alloc_fails_with_none_when_full() -> None:
    pool = GenPool([(0, 2 * 4096)])
    assert pool.alloc(3 * 4096) is None
    assert pool.alloc(2 * 4096) == 0
    assert pool.alloc(1) is None


def test_align_at_most_one_is_plain_first_fit() -> None:
    pool = GenPool([(0x1000, MIB)])
    assert pool.alloc_aligned(4096, 1) == 0x1000
    assert pool.alloc_aligned(4096, 0) == 0x2000


def test_alignment_is_at_least_a_granule_and_physical() -> None:
    pool = GenPool([(0x1000, 4 * MIB)])
    assert pool.alloc_aligned(4096, 16) == 0x1000  # max(16, 4096)
    assert pool.alloc_aligned(4096, 2 * MIB) == 2 * MIB  # aligned in physical terms, not chunk-relative
    assert pool.alloc_aligned(4096, 8192) == 0x2000
    assert pool.alloc_aligned(4096, 8 * MIB) is None


def test_chunks_are_searched_newest_first_and_never_spanned() -> None:
    pool = GenPool([(0x100000, 0x2000)])
    pool.add_chunk(0x102000, 0x2000)  # adjacent, added later
    assert pool.alloc(0x3000) is None  # 2 adjacent chunks are 2 bitmaps
    assert pool.alloc(0x1000) == 0x102000  # newest chunk first
    assert pool.chunks == [(0x100000, 0x2000), (0x102000, 0x2000)]
    assert pool.free_ranges() == [(0x100000, 0x2000), (0x103000, 0x1000)]


def test_add_chunk_rejects_overlap_and_misalignment() -> None:
    pool = GenPool([(0x100000, MIB)])
    with pytest.raises(ValueError):
        pool.add_chunk(0x100000 + MIB - 4096, 8192)
    with pytest.raises(ValueError):
        pool.add_chunk(0x300001, 4096)
    with pytest.raises(ValueError):
        pool.add_chunk(0x300000, 0)


def test_remove_chunk_needs_a_whole_free_chunk() -> None:
    pool = GenPool([(0x100000, MIB), (0x400000, MIB)])
    addr = pool.alloc(4096)
    with pytest.raises(ValueError):
        pool.remove_chunk(0x400000, MIB // 2)  # not a whole chunk
    busy = (addr, MIB) if addr == 0x400000 else (0x100000, MIB)
    with pytest.raises(ValueError):
        pool.remove_chunk(*busy)  # still has an allocation
    other = (0x100000, MIB) if addr == 0x400000 else (0x400000, MIB)
    pool.remove_chunk(*other)
    assert pool.size() == MIB
    assert pool.avail() == MIB - 4096


def test_free_rejects_ranges_that_are_not_allocated() -> None:
    pool = GenPool([(0x100000, MIB)])
    addr = pool.alloc(8192)
    assert addr is not None
    with pytest.raises(ValueError):
        pool.free(addr + 8192, 4096)  # free already
    with pytest.raises(ValueError):
        pool.free(addr, 3 * 4096)  # runs into free space
    with pytest.raises(ValueError):
        pool.free(0x900000, 4096)  # outside the pool
    with pytest.raises(ValueError):
        pool.free(addr + 1, 4096)  # not granule aligned
    pool.free(addr, 8192)
    assert pool.free_ranges() == [(0x100000, MIB)]


def test_free_merges_neighbours() -> None:
    pool = GenPool([(0, 16 * 4096)])
    addrs = [pool.alloc(4096) for _ in range(5)]
    for addr in (addrs[1], addrs[3], addrs[2]):
        assert addr is not None
        pool.free(addr, 4096)
    assert pool.free_ranges() == [(4096, 3 * 4096), (5 * 4096, 11 * 4096)]


def test_alloc_at_claims_exact_free_ranges_only() -> None:
    pool = GenPool([(0x100000, MIB)])
    assert pool.alloc_at(0x180000, 0x10000)
    assert not pool.alloc_at(0x188000, 0x10000)  # overlaps the claim
    assert not pool.alloc_at(0x1F0000, 0x20000)  # runs off the chunk
    assert not pool.alloc_at(0x180001, 4096)
    assert pool.free_ranges() == [(0x100000, 0x80000), (0x190000, MIB - 0x90000)]


def test_json_round_trip_and_copy_are_independent() -> None:
    pool = GenPool([(0x100000, MIB)])
    pool.add_chunk(0x800000, MIB)
    pool.alloc(3 * 4096)
    clone = GenPool.from_json(pool.to_json())
    assert clone.to_json() == pool.to_json()
    assert clone.alloc(4096) == pool.alloc(4096)  # chunk search order survives the round trip
    copy = pool.copy()
    copy.alloc(MIB // 2)
    assert copy.avail() != pool.avail()


def test_many_instances_worth_of_allocations_reuse_freed_holes() -> None:
    # Timing is not asserted here (noisy machines); the freed 3 MiB holes must be reused.
    pool = GenPool([(1 << 32, 64 << 30)])
    taken = [pool.alloc_aligned(3 * MIB, 2 * MIB) for _ in range(2047)]
    assert None not in taken and len(set(taken)) == 2047
    freed = [addr for addr in taken[::2] if addr is not None]
    for addr in freed:
        pool.free(addr, 3 * MIB)
    again = [pool.alloc_aligned(MIB, 2 * MIB) for _ in range(len(freed))]
    # first fit: every 1 MiB lands in a freed hole, none beyond what the 2,047 took
    assert all(a is not None and a % (2 * MIB) == 0 and a < max(freed) + 3 * MIB for a in again)
    assert len(set(again)) == len(again)
