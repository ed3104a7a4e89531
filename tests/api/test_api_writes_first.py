"""Writes first (mkd.api.writes_first, issue 15 item 2): a read that arrives while a write is in
flight waits for the write to end, READ_WAIT_S at most; probes never wait."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from mkd.api import writes_first
from mkd.api.writes_first import WritesFirst


def app_with_a_held_write(*, fails: bool = False) -> tuple[FastAPI, asyncio.Event, list[str], WritesFirst]:
    """POST /write stays in flight until the test sets the event (then fails with `fails`);
    every handler notes its end."""
    app = FastAPI()
    release = asyncio.Event()
    ended: list[str] = []

    @app.post("/write")
    async def write() -> dict[str, str]:
        await release.wait()
        ended.append("write")
        if fails:
            raise RuntimeError("the write failed")
        return {}

    @app.get("/read")
    async def read() -> dict[str, str]:
        ended.append("read")
        return {}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        ended.append("healthz")
        return {}

    app.add_middleware(WritesFirst)
    app.middleware_stack = app.build_middleware_stack()  # built now, to find the middleware in it
    middleware = app.middleware_stack
    while not isinstance(middleware, WritesFirst):
        middleware = middleware.app  # type: ignore[attr-defined]
    return app, release, ended, middleware


async def until(condition: object) -> None:
    while not condition():  # type: ignore[operator]
        await asyncio.sleep(0)


def waiting(middleware: WritesFirst) -> int:
    return sum(len(writes.waiting) for writes in middleware._loops.values())


def test_a_read_waits_for_the_write_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writes_first, "READ_WAIT_S", 3600.0)  # only the write's end releases it

    async def scenario() -> list[str]:
        app, release, ended, middleware = app_with_a_held_write()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
            # Before any write, nothing waits.
            assert (await client.get("/read")).status_code == 200
            ended.clear()
            writing = asyncio.ensure_future(client.post("/write"))
            await until(lambda: middleware._loops and next(iter(middleware._loops.values())).in_flight == 1)
            reading = asyncio.ensure_future(client.get("/read"))
            await until(lambda: waiting(middleware) == 1)
            assert (await client.get("/healthz")).status_code == 200  # a probe does not wait
            assert ended == ["healthz"]
            release.set()
            assert (await writing).status_code == 200 and (await reading).status_code == 200
            assert waiting(middleware) == 0
            return ended

    assert asyncio.run(scenario()) == ["healthz", "write", "read"]


def test_a_read_waits_no_longer_than_read_wait_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writes_first, "READ_WAIT_S", 0.001)

    async def scenario() -> list[str]:
        app, release, ended, middleware = app_with_a_held_write()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
            writing = asyncio.ensure_future(client.post("/write"))
            await until(lambda: middleware._loops and next(iter(middleware._loops.values())).in_flight == 1)
            for _ in range(3):
                assert (await client.get("/read")).status_code == 200  # the write is still held
            assert not writing.done() and waiting(middleware) == 0
            release.set()
            assert (await writing).status_code == 200
            return ended

    assert asyncio.run(scenario()) == ["read", "read", "read", "write"]


def test_a_failed_write_still_releases_the_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writes_first, "READ_WAIT_S", 3600.0)

    async def scenario() -> list[str]:
        app, release, ended, middleware = app_with_a_held_write(fails=True)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            writing = asyncio.ensure_future(client.post("/write"))
            await until(lambda: middleware._loops and next(iter(middleware._loops.values())).in_flight == 1)
            reading = asyncio.ensure_future(client.get("/read"))
            await until(lambda: waiting(middleware) == 1)
            release.set()
            assert (await writing).status_code == 500
            assert (await reading).status_code == 200
            return ended

    assert asyncio.run(scenario()) == ["write", "read"]
