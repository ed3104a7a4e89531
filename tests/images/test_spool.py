"""The upload spool: two lanes (hash, write) in order, back-pressure, keep / discard / abort."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from mkd.images import spool as spool_module
from mkd.images.spool import QUEUED_BATCHES, UploadSpool, write_all


def batches(count: int, size: int) -> list[list[bytes]]:
    """Distinct parts of uneven sizes, so any reordering changes the digest."""
    return [[bytes([n % 251]) * (size + n), os.urandom(n + 1)] for n in range(count)]


def wait_gone(path: Path, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return not path.exists()


def test_write_all_finishes_after_short_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_writev = os.writev
    calls = 0

    def short_writev(fd: int, buffers: list[memoryview]) -> int:
        nonlocal calls
        calls += 1
        # At most 1000 bytes per call, stopping inside a buffer as a real short write can.
        budget, taken = 1000, []
        for buffer in buffers:
            if budget == 0:
                break
            taken.append(buffer[:budget])
            budget -= len(taken[-1])
        return real_writev(fd, taken)

    monkeypatch.setattr(spool_module.os, "writev", short_writev)
    parts = [b"a" * 2500, b"", b"b" * 10, os.urandom(3333)]
    target = tmp_path / "out"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT)
    try:
        assert write_all(fd, parts) == sum(map(len, parts))
    finally:
        os.close(fd)
    assert target.read_bytes() == b"".join(parts)
    assert calls == 6  # ceil(5843 / 1000): nothing written twice, nothing skipped


def test_kept_file_has_every_batch_in_order(tmp_path: Path) -> None:
    final = tmp_path / "final"
    data = batches(40, 50_000)  # many more batches than may queue

    async def run() -> str:
        spool = UploadSpool(tmp_path)
        for batch in data:
            await spool.add(batch)
        sha = await spool.sha256()
        spool.keep(final)
        return sha

    sha = asyncio.run(run())
    expected = b"".join(b"".join(batch) for batch in data)
    assert sha == hashlib.sha256(expected).hexdigest()
    assert final.read_bytes() == expected
    assert stat.S_IMODE(final.stat().st_mode) == 0o640  # DESIGN "Security"
    assert [p for p in tmp_path.iterdir() if p.name.startswith("upload-")] == []


def test_discard_removes_the_file(tmp_path: Path) -> None:
    async def run() -> Path:
        spool = UploadSpool(tmp_path)
        await spool.add([b"x" * 1000])
        await spool.sha256()
        spool.discard()
        assert spool.fd is None
        return spool.path

    assert not asyncio.run(run()).exists()


def test_a_failed_write_surfaces_and_abort_leaves_nothing(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(fd: int, buffers: list[memoryview]) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module.os, "writev", disk_full)

    async def run() -> Path:
        spool = UploadSpool(tmp_path)
        with pytest.raises(OSError) as raised:
            for batch in batches(3 * QUEUED_BATCHES, 1000):
                await spool.add(batch)
            await spool.sha256()
        assert raised.value.errno == errno.ENOSPC
        await spool.abort()
        assert spool.fd is None
        return spool.path

    assert not asyncio.run(run()).exists()


def test_the_reader_waits_while_the_lanes_are_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays bounded: with the writer stuck, add() stops returning after QUEUED_BATCHES."""
    release = threading.Event()
    real_write_all = spool_module.write_all

    def stuck_write_all(fd: int, parts: list[bytes]) -> int:
        release.wait(10)
        return real_write_all(fd, parts)

    monkeypatch.setattr(spool_module, "write_all", stuck_write_all)

    async def run() -> int:
        spool = UploadSpool(tmp_path)
        added = 0

        async def reader() -> None:
            nonlocal added
            for batch in batches(QUEUED_BATCHES + 3, 100):
                await spool.add(batch)
                added += 1

        task = asyncio.create_task(reader())
        await asyncio.sleep(0.3)
        held_back = added
        release.set()
        await task
        await spool.sha256()
        await spool.abort()
        return held_back

    assert asyncio.run(run()) == QUEUED_BATCHES
