"""GET · POST /v1/instances/{ref}/console through HTTP (DESIGN "Desired state": Console): lines as
SSE with the global byte offset as id, resume with Last-Event-ID, the history as text, input,
the refusals, the stream limit, and output read as soon as it is readable (issue 10 item 3)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from httpx_sse import ServerSentEvent, connect_sse

from mkd.services.context import Daemon
from mkd.testing import imagegen
from tests.conftest import MakeClient
from tests.helpers import MiB, assert_problem, create, upload

# The status poll never runs in these tests: console output must arrive without it.
NO_POLL = {"status_poll_interval_s": 3600}


def _tree(make_client: MakeClient, **limits: Any) -> TestClient:
    return make_client(simulator={"kernel_profile": "tree"}, daemon=NO_POLL, limits=limits)


def _kernel(client: TestClient) -> Any:
    daemon: Daemon = client.app.state.daemon  # type: ignore[attr-defined]
    return daemon.backend.io.kernel  # type: ignore[attr-defined]


def _daemon(client: TestClient) -> Daemon:
    daemon: Daemon = client.app.state.daemon  # type: ignore[attr-defined]
    return daemon


def _started(client: TestClient, name: str = "web") -> dict[str, Any]:
    create(client, name, cpus=[2], memory_bytes=128 * MiB)
    loaded = client.post(f"/v1/instances/{name}/load", json={"kernel": upload(client, imagegen.vmlinux()),
                                                             "cmdline": "console=mktty0"})
    assert loaded.status_code == 200, loaded.text
    started = client.post(f"/v1/instances/{name}/start")
    assert started.status_code == 200, started.text
    body: dict[str, Any] = started.json()
    return body


def _wait_stored(client: TestClient, instance_id: int, offset: int) -> None:
    """Until the daemon stored the console up to `offset` (a generous bound, not a timing)."""
    console = _daemon(client).console
    assert console is not None
    deadline = time.monotonic() + 30
    while (console.stored_end(instance_id) or 0) < offset:
        assert time.monotonic() < deadline, f"console stored up to {console.stored_end(instance_id)}, not {offset}"
        time.sleep(0.01)


@contextmanager
def _stream(client: TestClient, ref: str, **headers: str) -> Iterator[Iterator[ServerSentEvent]]:
    with connect_sse(client, "GET", f"/v1/instances/{ref}/console", headers=headers) as source:
        assert source.response.status_code == 200, source.response.read()
        yield source.iter_sse()


def _take(events: Iterator[ServerSentEvent], count: int) -> list[ServerSentEvent]:
    return [next(events) for _ in range(count)]


def test_lines_stream_with_their_byte_offsets_and_resume_exactly(make_client: MakeClient) -> None:
    client = _tree(make_client)
    web = _started(client)
    banner = client.get("/v1/instances/web/console", params={"follow": "false"}).text
    assert banner.startswith("[    0.000000] multikernel: instance 1 (web) booting on mktty0\n")
    kernel = _kernel(client)
    with _stream(client, "web") as events:
        first = _take(events, 4)  # the banner's four lines
        assert [e.event for e in first] == ["line"] * 4
        assert "".join(e.data + "\n" for e in first) == banner
        assert [int(e.id) for e in first][-1] == len(banner.encode())
        assert kernel.spawn_print(web["id"], "héllo\r\nworld\n".encode()) == 14
        hello, world = _take(events, 2)
    assert (hello.data, hello.id) == ("héllo", str(len(banner.encode()) + 8))
    assert (world.data, world.id) == ("world", str(len(banner.encode()) + 14))
    # Resume after the first banner line: exactly the next line, then the rest.
    with _stream(client, "web", **{"Last-Event-ID": first[0].id}) as events:
        assert [e.data for e in _take(events, 5)] == [e.data for e in first[1:]] + ["héllo", "world"]
    # The same through the query (EventSource cannot set headers on its first request).
    with connect_sse(client, "GET", "/v1/instances/1/console", params={"last_event_id": hello.id}) as source:
        assert next(source.iter_sse()).data == "world"


def test_a_burst_past_the_device_buffer_arrives_whole_without_the_poll(make_client: MakeClient) -> None:
    """256 KiB, 16 times the device's buffer, with no status poll: read as soon as readable."""
    client = _tree(make_client)
    web = _started(client)
    console = _daemon(client).console
    assert console is not None
    _wait_stored(client, web["id"], len(client.get("/v1/instances/web/console?follow=false").content))
    base = console.stored_end(web["id"]) or 0
    burst = b"".join(f"{n:07d} {'x' * 119}\n".encode() for n in range(2048))
    assert len(burst) == 256 * 1024
    kernel = _kernel(client)
    sent = 0
    for start in range(0, len(burst), 12 * 1024):  # each piece fits the device's 16 KiB buffer
        piece = burst[start:start + 12 * 1024]
        assert kernel.spawn_print(web["id"], piece) == len(piece)  # nothing dropped
        sent += len(piece)
        _wait_stored(client, web["id"], base + sent)
    _, stored = console.read_from(web["id"], base, 1 << 20)
    # The spawn's uptime lines (one a second) may come between two pieces.
    assert b"".join(line for line in stored.splitlines(keepends=True) if b"web: up " not in line) == burst


def test_history_as_text_spans_the_previous_boot(make_client: MakeClient) -> None:
    client = _tree(make_client)
    web = _started(client)
    _kernel(client).spawn_print(web["id"], b"first boot\n")
    assert client.post("/v1/instances/web/stop", json={"force": True}).status_code == 200
    assert client.post("/v1/instances/web/start").status_code == 200
    _kernel(client).spawn_print(web["id"], b"second boot\n")
    _wait_stored(client, web["id"], 1)
    deadline = time.monotonic() + 30
    text = ""
    while "second boot" not in text:
        assert time.monotonic() < deadline
        text = client.get("/v1/instances/web/console", params={"follow": "false"}).text
    assert text.index("first boot") < text.index("second boot")
    assert text.count("booting on mktty0") == 2
    # Without Last-Event-ID the stream starts at the current boot; 0 is everything kept.
    with _stream(client, "web") as events:
        assert "booting on mktty0" in next(events).data
        assert all(e.data != "first boot" for e in _take(events, 4))
    with _stream(client, "web", **{"Last-Event-ID": "0"}) as events:
        assert [e.data for e in _take(events, 5)][-1] == "first boot"


def test_input_reaches_the_spawn_and_is_202_with_the_bytes_taken(make_client: MakeClient) -> None:
    client = _tree(make_client)
    web = _started(client)
    reply = client.post("/v1/instances/web/console", content=b"uname -a\n", headers={"Content-Type": "text/plain"})
    assert reply.status_code == 202, reply.text
    assert reply.json() == {"accepted": 9}
    assert _kernel(client).spawn_console_input(web["id"]) == b"uname -a\n"


def test_input_refusals(make_client: MakeClient) -> None:
    client = _tree(make_client)
    create(client, "idle", cpus=[3], memory_bytes=128 * MiB)
    assert_problem(client.post("/v1/instances/idle/console", content=b"ls\n"), 409, "ENODEV")
    assert_problem(client.post("/v1/instances/nosuch/console", content=b"ls\n"), 404)
    assert_problem(client.get("/v1/instances/nosuch/console"), 404)
    too_big = client.post("/v1/instances/idle/console", content=b"x" * (64 * 1024 + 1),
                          headers={"Content-Type": "text/plain"})
    assert_problem(too_big, 413)
    assert_problem(client.get("/v1/instances/idle/console", headers={"Last-Event-ID": "x1"}), 422)


def test_rfc_v2_has_no_console(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "rfc-v2"})
    create(client, "web", cpus=[2], memory_bytes=128 * MiB)
    assert_problem(client.post("/v1/instances/web/console", content=b"ls\n"), 409, "EOPNOTSUPP")
    assert_problem(client.get("/v1/instances/web/console"), 409, "EOPNOTSUPP")


def test_past_max_console_streams_is_429_until_one_closes(make_client: MakeClient) -> None:
    client = _tree(make_client, max_console_streams=1)
    _started(client)
    with _stream(client, "web") as events:
        next(events)
        refused = assert_problem(client.get("/v1/instances/web/console"), 429)
        assert refused["limit"] == "max_console_streams"
        assert client.get("/v1/instances/web/console").headers["Retry-After"] == "5"
        # The history as text is not a stream: it is still answered.
        assert client.get("/v1/instances/web/console", params={"follow": "false"}).status_code == 200
    deadline = time.monotonic() + 30
    while True:  # the closed stream's count goes once the server notices the client left
        with connect_sse(client, "GET", "/v1/instances/web/console") as source:
            if source.response.status_code == 200:
                assert "booting on mktty0" in next(source.iter_sse()).data
                break
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_deleted_instance_ends_its_stream(make_client: MakeClient) -> None:
    client = _tree(make_client)
    _started(client)
    with _stream(client, "web") as events:
        _take(events, 4)
        assert client.post("/v1/instances/web/stop", json={"force": True}).status_code == 200
        assert client.post("/v1/instances/web/unload").status_code == 200
        assert client.delete("/v1/instances/web").status_code in (200, 202, 204)
        assert list(events) == []  # the stream ends
