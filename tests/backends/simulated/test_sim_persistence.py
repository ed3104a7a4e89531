"""The kernel's state store: one SQLite transaction per operation, reloaded identical, crash-safe."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import BackendFactory, MiB, kernel_of, load_flags, make_settings, spec, with_baseline

from mkd.backends.host.backend import HostBackend
from mkd.backends.simulated.client import CLIENT_STATE_FILE, simulated_client
from mkd.backends.simulated.persistence import StateStore, model_to_json, stored_document
from mkd.errors import KernelError


def _snapshot(backend: HostBackend) -> object:
    kernel = kernel_of(backend)
    return (
        backend.list_instances(),
        backend.read_pool(),
        kernel.proc_kimage(),
        {i: inst.pool.free_ranges() for i, inst in kernel._model.instances.items()},
        [c.allocator.free_ranges() for c in kernel._model.pool.chunks],
        model_to_json(kernel._model, kernel.settings),
    )


def _populate(backend: HostBackend, images: dict[str, Path]) -> None:
    backend.create_instances(
        [spec(1, "web", (1,), 256 * MiB), spec(2, "db", (2,), 128 * MiB), spec(3, "idle", (3,), 64 * MiB)]
    )
    kernel_of(backend).kexec_file_load(
        images["vmlinux"],
        images["initrd"],
        b"console=ttyS0\0",
        load_flags(1, initrd=True),
        kernel_sha256="a" * 64,
        initrd_sha256="b" * 64,
    )
    kernel_of(backend).kexec_file_load(images["vmlinux"], None, None, load_flags(2))


def test_tree_round_trip(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    first = with_baseline(make_backend(kernel_profile="tree"))
    _populate(first, images)
    first.start(2)
    kernel_of(first).flush()
    before = _snapshot(first)
    first.close()
    second = make_backend(kernel_profile="tree")
    assert _snapshot(second) == before
    assert second.read_instance(2).kernel_state == "active"
    # the reloaded kernel keeps working: unload returns every allocation
    second.stop(2, force=True)
    second.unload(2)
    assert kernel_of(second)._model.instances[2].pool.avail() == 128 * MiB


def test_v2_round_trip_with_a_dangling_kimage(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    first = with_baseline(make_backend(kernel_profile="rfc-v2", bug_compat=True))
    _populate(first, images)
    with pytest.raises(KernelError) as refused:
        kernel_of(first).kexec_file_load(images["garbage"], None, None, load_flags(3))
    assert refused.value.errno_code == errno.ENOEXEC  # after the association: the dangling kimage
    assert first.read_instance(3).kernel_state == "loading"
    before = _snapshot(first)
    first.close()
    second = make_backend(kernel_profile="rfc-v2", bug_compat=True)
    assert _snapshot(second) == before
    assert second.read_instance(3).kernel_state == "loading"
    assert kernel_of(second)._model.kexec_image_slot == 2


def test_state_is_one_database_with_a_row_per_instance(make_backend: BackendFactory) -> None:
    backend = with_baseline(make_backend(kernel_profile="tree"))
    backend.create_instances([spec(1, "web", (1,), 64 * MiB)])
    path = backend.settings.simulator_state_path
    data = stored_document(path, backend.settings.simulator)
    assert [inst["name"] for inst in data["instances"]] == ["web"]
    assert data["next_tx"] == 3  # baseline + one instance-create overlay; the first tx is tx_2
    # the database and its write-ahead log, the client's own load records beside them: nothing else
    names = {p.name for p in path.parent.iterdir()} - {path.name + "-wal", path.name + "-shm"}
    assert names == {path.name, CLIENT_STATE_FILE}


def test_an_operation_writes_only_the_rows_it_changed(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    backend = with_baseline(make_backend(kernel_profile="tree"))
    _populate(backend, images)
    kernel = kernel_of(backend)
    store = kernel._state_file
    assert store is not None
    before = store._db.total_changes
    backend.start(2)
    assert store._db.total_changes - before == 1  # instance 2's row: not the others, not the head
    before = store._db.total_changes
    backend.read_pool(), backend.list_instances()
    assert store._db.total_changes == before  # reads write nothing


def test_a_different_machine_starts_empty(make_backend: BackendFactory) -> None:
    first = with_baseline(make_backend(kernel_profile="tree"))
    first.create_instances([spec(1, "web", (1,), 64 * MiB)])
    first.close()
    assert make_backend(kernel_profile="rfc-v2").list_instances() == []  # another kernel booted


# -- the old whole-state file: taken over once -------------------------------------------------


def _as_legacy_file(backend: HostBackend) -> Path:
    """Replace the database by the simkernel.json the previous release wrote for this state."""
    kernel = kernel_of(backend)
    document = json.dumps(model_to_json(kernel._model, kernel.settings), separators=(",", ":"))
    path = backend.settings.simulator_state_path
    backend.close()
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    legacy = path.with_suffix(".json")
    legacy.write_text(document)
    return legacy


def test_a_state_file_of_the_previous_release_is_taken_over(make_backend: BackendFactory,
                                                              images: dict[str, Path]) -> None:
    first = with_baseline(make_backend(kernel_profile="tree"))
    _populate(first, images)
    first.start(2)
    kernel_of(first).flush()
    before = _snapshot(first)
    legacy = _as_legacy_file(first)
    second = make_backend(kernel_profile="tree")
    assert _snapshot(second) == before
    assert not legacy.exists()  # taken over: the database is the state from now on
    second.close()
    assert _snapshot(make_backend(kernel_profile="tree")) == before


@pytest.mark.parametrize("content", ["other-boot", "torn"])
def test_a_previous_state_file_for_another_boot_or_torn_is_a_reboot(make_backend: BackendFactory,
                                                                     content: str) -> None:
    first = with_baseline(make_backend(kernel_profile="tree"))
    first.create_instances([spec(1, "web", (1,), 64 * MiB)])
    legacy = _as_legacy_file(first)
    if content == "torn":
        legacy.write_text(legacy.read_text()[:100])
    profile = "rfc-v2" if content == "other-boot" else "tree"
    second = make_backend(kernel_profile=profile)
    assert second.list_instances() == []
    assert not legacy.exists()


# -- crash safety: a process killed inside a write leaves the old state, after it the new -------


class _DyingConnection:
    """The store's connection in a child process that dies (no cleanup, as SIGKILL) when it is
    about to run its statement number `die_at`."""

    def __init__(self, db: sqlite3.Connection, die_at: int) -> None:
        self._db, self._die_at, self._count = db, die_at, 0

    def _step(self) -> None:
        self._count += 1
        if self._count == self._die_at:
            os._exit(KILLED)

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        self._step()
        return self._db.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        self._step()
        return self._db.executemany(sql, rows)

    def close(self) -> None:
        self._db.close()


KILLED = 9
Operation = Callable[[HostBackend], object]

OPERATIONS: dict[str, Operation] = {
    "create": lambda b: b.create_instances([spec(4, "new", (4,), 64 * MiB)]),
    "start": lambda b: b.start(2),
    "delete": lambda b: b.delete_instance(3),
}


def _in_child(tmp_path: Path, operation: Operation, die_at: int, result: Path) -> int:
    """Run `operation` on a kernel opened from the state in a forked child; its exit status."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 3
        try:
            backend = simulated_client(make_settings(tmp_path, kernel_profile="tree"))
            kernel = kernel_of(backend)
            assert kernel._state_file is not None
            kernel._state_file._db = _DyingConnection(kernel._state_file._db, die_at)  # type: ignore[assignment]
            operation(backend)
            result.write_text(json.dumps(model_to_json(kernel._model, kernel.settings)))
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(status)  # no close: the process just ends, as when killed
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_a_kill_at_any_statement_leaves_the_old_or_the_new_state(
    make_backend: BackendFactory, images: dict[str, Path], tmp_path: Path, name: str
) -> None:
    first = with_baseline(make_backend(kernel_profile="tree"))
    _populate(first, images)
    settings = first.settings
    first.close()
    old = stored_document(settings.simulator_state_path, settings.simulator)
    result = tmp_path / "new.json"
    killed_at = []
    for die_at in range(1, 50):
        status = _in_child(tmp_path, OPERATIONS[name], die_at, result)
        stored = stored_document(settings.simulator_state_path, settings.simulator)
        if status == KILLED:
            assert stored == old, f"killed at statement {die_at}: not the old state"
            killed_at.append(die_at)
            continue
        assert status == 0
        assert stored == json.loads(result.read_text())  # the new state, whole
        assert stored != old
        break
    else:
        pytest.fail("the operation never completed")
    assert len(killed_at) >= 3  # at least BEGIN, one row, COMMIT were each a kill point
    # and the kernel reloaded from the new state works on
    second = make_backend(kernel_profile="tree")
    reloaded = model_to_json(kernel_of(second)._model, second.settings.simulator)
    assert json.loads(json.dumps(reloaded)) == json.loads(result.read_text())


def test_a_reboot_drops_the_old_rows(make_backend: BackendFactory) -> None:
    first = with_baseline(make_backend(kernel_profile="tree"))
    first.create_instances([spec(1, "web", (1,), 64 * MiB)])
    path, tree_settings = first.settings.simulator_state_path, first.settings.simulator
    first.close()
    other = make_backend(kernel_profile="rfc-v2")
    assert other.list_instances() == []
    other.close()
    store = StateStore(path, tree_settings)
    try:
        document = store.document()
        assert document is not None and document["instances"] == []
    finally:
        store.close()
