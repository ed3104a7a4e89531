"""What the daemon does per tick when nothing happens (issue 13 item 7, issue 10 item 6): the
status poll reads only the instances recorded ACTIVE, and a converged declared instance costs the
reconciler no pass and no kernel call; a crash is still seen by the next poll."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mkd.backends.host.backend import HostBackend
from mkd.backends.simulated.kernel_files import SimulatedKernelIO
from mkd.db import repository
from mkd.db.models import DeclaredRecord
from mkd.db.session import transaction
from mkd.services import reconciler
from mkd.services.context import Daemon
from mkd.services.kernel_poller import poll_kernel, running_ids
from mkd.testing import imagegen
from tests.conftest import MakeClient
from tests.helpers import MiB, create, upload

INSTANCES = "/sys/fs/multikernel/instances/"
# Kernel calls that change or re-read an instance: a converged instance must cause none.
KERNEL_CALLS = ("create_instances", "update_instance", "delete_instance", "kexec_file_load", "unload", "start",
                "stop", "read_instance", "list_instances")


def _daemon(client: TestClient) -> Daemon:
    daemon: Daemon = client.app.state.daemon  # type: ignore[attr-defined]
    return daemon


def _sim_io(daemon: Daemon) -> SimulatedKernelIO:
    assert isinstance(daemon.backend, HostBackend) and isinstance(daemon.backend.io, SimulatedKernelIO)
    return daemon.backend.io


def _record_reads(monkeypatch: pytest.MonkeyPatch, io: SimulatedKernelIO) -> list[str]:
    """The files read, one by one or in a batch (the status poll's read_each)."""
    reads: list[str] = []
    real, real_each = io.read, io.read_each

    def read(path: str) -> bytes:
        reads.append(path)
        return real(path)

    def read_each(paths: Sequence[str]) -> list[bytes | None]:
        reads.extend(paths)
        return real_each(paths)

    monkeypatch.setattr(io, "read", read)
    monkeypatch.setattr(io, "read_each", read_each)
    return reads


def _counting(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    """Wrap owner.name so each call is counted (thread-safe: list.append)."""
    calls: list[int] = []
    real: Callable[..., Any] = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def _declare_web(client: TestClient) -> None:
    """PUT a declared `web` and wait until the reconciler has it ACTIVE."""
    document = {"apiVersion": "mkd.dev/v1", "kind": "Instance", "metadata": {"name": "web"},
                "spec": {"kernel": upload(client, imagegen.vmlinux()),
                         "resources": {"cpus": [2], "memory_bytes": 128 * MiB}}}
    assert client.put("/v1/instances/web", json=document).status_code == 201
    reply = client.get("/v1/instances/web/wait", params={"generation": 1, "timeout_s": 60})
    assert reply.status_code == 200 and reply.json()["state"] == "ACTIVE", reply.text


def test_the_status_poll_reads_only_active_instances_and_still_sees_a_crash(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The poller task never runs here (an hour's interval): each poll is this test's call.
    client = make_client(simulator={"kernel_profile": "tree"}, daemon={"status_poll_interval_s": 3600})
    daemon = _daemon(client)
    kernel = upload(client, imagegen.vmlinux())
    for name, cpu in (("web", 2), ("db", 3), ("cache", 4)):
        create(client, name, cpus=[cpu], memory_bytes=128 * MiB)
    for name in ("web", "db"):
        assert client.post(f"/v1/instances/{name}/load", json={"kernel": kernel}).status_code == 200
    web = client.post("/v1/instances/web/start").json()
    assert web["state"] == "ACTIVE"
    io = _sim_io(daemon)
    reads = _record_reads(monkeypatch, io)

    assert poll_kernel(daemon) == []
    # READY and LOADED instances change only when someone acts (spec 8.2.2): not read.
    assert reads == [INSTANCES + "web/status"]

    # The spawn powers off on its own (spec 8.4): the next poll records it, cause kernel.
    io.kernel.spawn_exit(web["id"], "poweroff")
    reads.clear()
    [change] = poll_kernel(daemon)
    assert (change.id, change.from_state, change.to_state) == (web["id"], "active", "loaded")
    # the status file alone: read by the poll, and again under the kernel lock before it is
    # recorded (the daemon may have acted on the instance in between)
    assert reads == [INSTANCES + "web/status"] * 2
    assert client.get("/v1/instances/web").json()["state"] == "LOADED"
    with transaction(daemon.engine) as session:
        events = [e.data for e in repository.events_after(session=session, after_id=0)
                  if e.type == "state" and e.instance_id == web["id"]]
    assert (events[-1]["from"], events[-1]["to"], events[-1]["cause"]) == ("ACTIVE", "LOADED", "kernel")

    # Nothing runs any more: a poll reads no instance file at all.
    reads.clear()
    assert poll_kernel(daemon) == []
    assert reads == []


def test_a_converged_declared_instance_costs_no_reconcile_pass_and_no_kernel_call(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(simulator={"kernel_profile": "tree"}, daemon={"status_poll_interval_s": 0.02},
                         reconciler={"poll_interval_s": 0.02})
    daemon = _daemon(client)
    ticks: list[int] = []
    ticked = threading.Condition()
    real_due = reconciler.due_names

    def due_names(daemon: Daemon) -> list[str]:
        with ticked:
            ticks.append(1)
            ticked.notify_all()
        return real_due(daemon)

    monkeypatch.setattr(reconciler, "due_names", due_names)
    passes = _counting(monkeypatch, reconciler, "reconcile_one")
    _declare_web(client)

    def wait_ticks(count: int) -> None:
        with ticked:
            target = len(ticks) + count
            assert ticked.wait_for(lambda: len(ticks) >= target, timeout=60), "the reconciler stopped ticking"

    # Let the passes the bring-up queued (its own state events wake the instance) finish.
    deadline = time.monotonic() + 60
    while True:
        before = len(passes)
        wait_ticks(3)
        if len(passes) == before:
            break
        assert time.monotonic() < deadline, "the reconciler kept passing over a converged instance"
    kernel_calls = {name: _counting(monkeypatch, daemon.backend, name) for name in KERNEL_CALLS}
    reads = _record_reads(monkeypatch, _sim_io(daemon))
    passes.clear()

    wait_ticks(10)
    assert passes == []
    assert {name: len(calls) for name, calls in kernel_calls.items() if calls} == {}
    # The status poller went on meanwhile, reading only the running instance's status.
    assert reads and set(reads) == {INSTANCES + "web/status"}
    assert client.get("/v1/instances/web").json()["state"] == "ACTIVE"


def test_the_active_ids_are_asked_of_the_database_only_after_an_instance_was_written(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(simulator={"kernel_profile": "tree"}, daemon={"status_poll_interval_s": 3600})
    daemon = _daemon(client)
    kernel = upload(client, imagegen.vmlinux())
    ids = {}
    for name, cpu in (("web", 2), ("db", 3)):
        ids[name] = create(client, name, cpus=[cpu], memory_bytes=128 * MiB)["id"]
        assert client.post(f"/v1/instances/{name}/load", json={"kernel": kernel}).status_code == 200
    assert client.post("/v1/instances/web/start").json()["state"] == "ACTIVE"
    queries = _counting(monkeypatch, repository, "instance_ids_in")
    assert running_ids(daemon) == [ids["web"]]
    queries.clear()

    # Nothing written since: the same ids, no query.
    assert poll_kernel(daemon) == []
    assert running_ids(daemon) == [ids["web"]]
    assert queries == []

    # A start writes the instance's row: the next poll asks again and reads both.
    assert client.post("/v1/instances/db/start").json()["state"] == "ACTIVE"
    assert sorted(running_ids(daemon)) == sorted(ids.values())
    assert len(queries) == 1

    # A write the poller makes itself (a crash recorded) counts too.
    _sim_io(daemon).kernel.spawn_exit(ids["web"], "poweroff")
    [change] = poll_kernel(daemon)
    assert change.to_state == "loaded"
    assert running_ids(daemon) == [ids["db"]]
    # A transaction that wrote an instance and rolled back changes nothing and asks nothing.
    queries.clear()
    with pytest.raises(RuntimeError), transaction(daemon.engine) as session:
        record = repository.get_instance(session=session, instance_id=ids["db"])
        assert record is not None
        record.state = "LOADED"
        session.flush()
        raise RuntimeError("rolled back")
    assert running_ids(daemon) == [ids["db"]]
    assert queries == []


def test_the_reconciler_tick_asks_the_database_only_after_a_declared_row_was_written(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tick never runs by itself here (an hour's interval): each due_names is this test's call.
    client = make_client(simulator={"kernel_profile": "tree"}, daemon={"status_poll_interval_s": 3600},
                         reconciler={"poll_interval_s": 3600})
    daemon = _daemon(client)
    _declare_web(client)
    # The bring-up's last passes may still commit (their own state events wake the instance).
    deadline = time.monotonic() + 60
    while True:
        generation = daemon.reads.generation
        time.sleep(0.5)
        if daemon.reads.generation == generation:
            break
        assert time.monotonic() < deadline, "the reconciler kept writing for a converged instance"
    assert reconciler.due_names(daemon) == []
    queries = _counting(monkeypatch, reconciler, "_pending")

    # Converged and nothing written since: no query, however often the tick comes.
    for _ in range(5):
        assert reconciler.due_names(daemon) == []
    assert queries == []

    # A retry's wait written to the declared row: asked once, then the clock alone says when it is due.
    soon = time.time() + 3600
    with transaction(daemon.engine) as session:
        declared = session.get(DeclaredRecord, "web")
        assert declared is not None
        declared.not_before = soon
        session.add(declared)
    assert reconciler.due_names(daemon) == []
    assert reconciler.due_names(daemon) == []
    assert len(queries) == 1

    class Later:
        @staticmethod
        def time() -> float:
            return soon + 1

    monkeypatch.setattr(reconciler, "time", Later)
    assert reconciler.due_names(daemon) == ["web"]
    assert len(queries) == 1
