"""The SSE stream of a real daemon: replay after Last-Event-ID, live-only, reset past retention."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, connect_sse

from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess
from tests.helpers import POOL, MiB


def read_events(http: httpx.Client, count: int, last_event_id: str | None) -> list[dict[str, Any]]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    got: list[dict[str, Any]] = []
    with connect_sse(http, "GET", "/v1/events", headers=headers, timeout=10) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        for sse in source.iter_sse():
            got.append({"id": sse.id, "event": sse.event, "data": json.loads(sse.data)})
            if len(got) == count:
                break
    return got


def create(http: httpx.Client, name: str, cpu: int) -> None:
    reply = http.post("/v1/instances", json={"name": name, "resources": {"cpus": [cpu], "memory_bytes": 64 * MiB}})
    assert reply.status_code == 201, reply.text


def test_reconnect_gets_exactly_the_missed_events(tmp_path: Path) -> None:
    with DaemonProcess(tmp_path / "state") as daemon, daemon.client() as http:
        http.put("/v1/pool", json=POOL)
        create(http, "a", 2)
        create(http, "b", 3)
        first = read_events(http, 2, "0")
        assert [e["event"] for e in first] == ["created", "created"]
        assert [e["data"]["name"] for e in first] == ["a", "b"]
        last_seen = first[-1]["id"]
        # While disconnected: a state change, a refusal, a deletion.
        kernel = http.post("/v1/images", content=imagegen.vmlinux()).json()["sha256"]
        assert http.post("/v1/instances/a/load", json={"kernel": kernel}).status_code == 200
        assert http.post("/v1/instances/a/load", json={"kernel": kernel}).status_code == 409
        assert http.delete("/v1/instances/b").status_code == 204
        create(http, "c", 4)  # a marker after the missed events
        missed = read_events(http, 5, last_seen)
        kinds = [(e["event"], e["data"].get("to") or e["data"].get("errno")) for e in missed]
        assert kinds == [("state", "LOADING"), ("state", "LOADED"), ("refused", "EBUSY"),
                         ("deleted", None), ("created", "READY")]
        ids = [int(e["id"]) for e in missed]
        assert ids == list(range(int(last_seen) + 1, int(last_seen) + 6))
        assert missed[2]["data"] == {"id": 1, "name": "a", "operation": "load", "errno": "EBUSY"}
        assert missed[1]["data"]["cause"] == "api" and missed[1]["data"]["from"] == "LOADING"


def test_without_last_event_id_the_stream_is_live_only(tmp_path: Path) -> None:
    import threading

    with DaemonProcess(tmp_path / "state") as daemon, daemon.client() as http:
        http.put("/v1/pool", json=POOL)
        create(http, "old", 2)
        got: list[dict[str, Any]] = []
        connected = threading.Event()

        def listen() -> None:
            with daemon.client() as other, connect_sse(other, "GET", "/v1/events", timeout=10) as source:
                connected.set()
                for sse in source.iter_sse():
                    got.append({"event": sse.event, "data": json.loads(sse.data)})
                    break

        thread = threading.Thread(target=listen)
        thread.start()
        assert connected.wait(10)
        import time

        time.sleep(0.3)  # let the stream subscribe before the change
        create(http, "new", 3)
        thread.join(10)
        assert [e["data"]["name"] for e in got] == ["new"]


def test_an_id_older_than_retention_gets_a_reset(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with DaemonProcess(state) as daemon, daemon.client() as http:
        http.put("/v1/pool", json=POOL)
        for i, name in enumerate(("a", "b", "c", "d")):
            create(http, name, 2 + i)
    with DaemonProcess(state, env={"MKD_DAEMON__EVENT_RETENTION": "2"}) as daemon, daemon.client() as http:
        events = read_events(http, 3, "1")
        assert events[0]["event"] == "reset" and events[0]["data"] == {"oldest_id": 3}
        assert [e["data"]["name"] for e in events[1:]] == ["c", "d"]


def test_every_subscriber_gets_every_event_in_order_while_a_writer_runs(tmp_path: Path) -> None:
    """Issue 15 item 4 (the numbers are in tests/bench/bench_reads.py): live streams opened before
    a writer loops create → load → start → stop → unload → delete each get every event, in order:
    the events a replay from the log gives."""
    subscribers, cycles = 8, 3
    with DaemonProcess(tmp_path / "state") as daemon, daemon.client() as http:
        assert http.put("/v1/pool", json=POOL).status_code == 201
        kernel = http.post("/v1/images", content=imagegen.vmlinux()).json()["sha256"]
        clients = [daemon.client() for _ in range(subscribers)]
        sources = [connect_sse(client, "GET", "/v1/events", timeout=30) for client in clients]
        streams = [source.__enter__() for source in sources]
        try:
            for _ in range(cycles):
                create(http, "w", 5)
                for action in ("load", "start", "stop", "unload"):
                    body = {"kernel": kernel} if action == "load" else {}
                    assert http.post(f"/v1/instances/w/{action}", json=body).status_code == 200
                assert http.delete("/v1/instances/w").status_code == 204
            with connect_sse(http, "GET", "/v1/events", headers={"Last-Event-ID": "0"}, timeout=10) as replay:
                expected = until_deleted(replay.iter_sse(), cycles)
            received = [until_deleted(stream.iter_sse(), cycles) for stream in streams]
        finally:
            for source in sources:
                source.__exit__(None, None, None)
            for client in clients:
                client.close()
    assert [event for _, event, _ in expected].count("state") >= 4 * cycles
    assert all(stream == expected for stream in received)
    ids = [int(event_id) for event_id, _, _ in expected]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def until_deleted(events: Iterator[ServerSentEvent], cycles: int) -> list[tuple[str, str, str]]:
    got: list[tuple[str, str, str]] = []
    for sse in events:
        got.append((sse.id, sse.event, sse.data))
        if [event for _, event, _ in got].count("deleted") == cycles:
            return got
    raise AssertionError(f"the stream ended after {got}")
