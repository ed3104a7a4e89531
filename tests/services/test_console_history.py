"""ConsoleHistory over the one kernel client and the simulated tree kernel's /dev/mktty: boots,
the fall-back to the previous boot, the newest-reader rule, and a reader that cannot connect."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mkd.backends.host.backend import HostBackend
from mkd.errors import KernelError
from mkd.services import console_history
from mkd.services.console_history import ConsoleHistory

MiB = 1 << 20
UID = "6f1c0c36-0000-4000-8000-000000000001"


def _history(tmp_path: Path, client: HostBackend, cap: int = 1 << 20) -> ConsoleHistory:
    return ConsoleHistory(tmp_path / "console", cap_bytes=cap, open_console=client.open_console)


def _sim(client: HostBackend) -> object:
    return client.io.kernel  # type: ignore[attr-defined]


def test_each_start_is_a_boot_and_tail_falls_back_to_the_previous(tmp_path: Path, client: HostBackend) -> None:
    history = _history(tmp_path, client)
    history.attach(1, UID, new_boot=True)
    client.start(1)
    client.stop(1, force=True)
    history.drain()
    first = history.tail(1, 1 << 20)
    assert "instance 1 (web) booting on mktty0" in first
    history.attach(1, UID, new_boot=True)  # the next start's file, empty until it prints
    assert [p.name for p in history.boot_paths(1)] == ["1-0.log", f"2-{len(first)}.log"]
    assert history.tail(1, 1 << 20) == first  # the current boot printed nothing yet
    client.start(1)
    assert "booting on mktty0" in history.tail(1, 1 << 20)
    assert history.tail(1, 10) == history.tail(1, 1 << 20)[-10:]


def test_a_newer_reader_takes_the_output(tmp_path: Path, client: HostBackend) -> None:
    history = _history(tmp_path, client)
    history.attach(1, UID, new_boot=True)
    client.start(1)
    history.drain()
    other = client.open_console(1)  # someone else connects later: the newest reader (spec 8.8.4)
    try:
        _sim(client).spawn_print(1, b"only for the newest\n")  # type: ignore[attr-defined]
        assert "only for the newest" not in history.tail(1, 1 << 20)
        assert b"only for the newest" in other.read(4096)
    finally:
        other.close()


def test_an_unknown_instance_cannot_be_attached(tmp_path: Path, client: HostBackend) -> None:
    history = _history(tmp_path, client)
    with pytest.raises(KernelError) as refused:
        history.attach(9, UID, new_boot=True)
    assert refused.value.errno == "ENODEV"
    assert history.attached() == [] and history.tail(9, 100) == ""


def test_close_keeps_what_the_readers_held(tmp_path: Path, client: HostBackend) -> None:
    history = _history(tmp_path, client)
    history.attach(1, UID, new_boot=True)
    client.start(1)
    history.close()  # no drain before: close stores what is buffered
    assert "booting on mktty0" in (tmp_path / "console" / UID / "1-0.log").read_text()


def test_input_goes_through_the_attached_reader(tmp_path: Path, client: HostBackend) -> None:
    history = _history(tmp_path, client)
    with pytest.raises(OSError) as unattached:
        history.send_input(1, b"ls\n")
    assert unattached.value.errno == errno.ENOTCONN
    history.attach(1, UID, new_boot=True)
    client.start(1)
    assert history.send_input(1, b"uname -a\n") == 9
    assert _sim(client).spawn_console_input(1) == b"uname -a\n"  # type: ignore[attr-defined]


def test_offsets_go_on_across_boots_and_a_new_daemon(tmp_path: Path, client: HostBackend) -> None:
    history = _history(tmp_path, client)
    history.attach(1, UID, new_boot=True)
    client.start(1)
    client.stop(1, force=True)
    history.drain()
    first_end = history.stored_end(1)
    assert first_end is not None and first_end > 0
    history.attach(1, UID, new_boot=True)
    client.start(1)
    history.close()  # the daemon stops: what waited is written
    again = _history(tmp_path, client)  # the next daemon, over the same state directory
    again.know(1, UID)
    spans = again.spans(1)
    assert [s.base for s in spans] == [0, first_end]
    assert again.stored_end(1) == spans[-1].end > first_end
    start, data = again.read_from(1, first_end, 1 << 20)
    assert start == first_end and data.startswith(b"[    0.000000] multikernel: instance 1 (web) booting")
    again.close()


def test_bytes_not_written_yet_are_read_and_written_when_due(tmp_path: Path, client: HostBackend,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    history = _history(tmp_path, client)
    history.attach(1, UID, new_boot=True)
    client.start(1)
    history.drain()
    [path] = history.boot_paths(1)
    assert path.stat().st_size == 0  # gathered, not written yet
    start, data = history.read_from(1, 0, 1 << 20)
    assert start == 0 and b"booting on mktty0" in data
    monkeypatch.setattr(console_history, "FLUSH_S", 0.0)
    history.flush_due()
    assert path.read_bytes() == data
    history.close()


def test_of_two_files_of_one_boot_the_newer_trim_wins(tmp_path: Path, client: HostBackend) -> None:
    """A trim writes the kept bytes under their new offset before the old file goes: a daemon
    stopped between the two leaves both."""
    folder = tmp_path / "console" / UID
    folder.mkdir(parents=True)
    (folder / "1-0.log").write_bytes(b"old line\nkept line\n")
    (folder / "1-9.log").write_bytes(b"kept line\n")
    history = _history(tmp_path, client)
    history.know(1, UID)
    assert history.boot_paths(1) == [folder / "1-9.log"] and not (folder / "1-0.log").exists()
    assert history.read_from(1, 0, 100) == (9, b"kept line\n")
    assert history.stored_end(1) == 19
    history.close()


def test_boot_files_of_the_release_before_offsets_are_kept(tmp_path: Path, client: HostBackend) -> None:
    # An upgraded daemon finds `<boot>.log` files: they become `<boot>-<offset>.log`, offsets
    # counted from the oldest kept byte, and the history serves them.
    directory = tmp_path / "console" / UID
    directory.mkdir(parents=True)
    (directory / "1.log").write_bytes(b"first boot\n")
    (directory / "2.log").write_bytes(b"second boot\n")
    history = _history(tmp_path, client)
    history.know(1, UID)
    assert [p.name for p in history.boot_paths(1)] == ["1-0.log", "2-11.log"]
    assert history.tail(1, 1 << 20) == "second boot\n"


def _open_fds() -> set[str]:
    return {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")}


def test_only_the_current_boot_file_stays_open_and_forget_closes_it(tmp_path: Path, client: HostBackend,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Appends go through one descriptor per current boot (not open-write-close each time); a
    boot that is no longer current, a trimmed file and a forgotten instance hold none."""
    monkeypatch.setattr(console_history, "FLUSH_S", 0.0)
    history = _history(tmp_path, client, cap=1024)
    history.attach(1, UID, new_boot=True)
    client.start(1)
    history.drain()
    history.flush_due()
    first = history.boot_paths(1)[-1]
    assert str(first) in _open_fds()
    _sim(client).spawn_print(1, b"x" * 2000 + b"\n")  # type: ignore[attr-defined]
    history.drain()
    history.flush_due()  # past the cap and its slack: trimmed into a file under its new offset
    [trimmed] = history.boot_paths(1)
    assert trimmed != first and not first.exists()
    assert str(first) not in _open_fds()
    assert trimmed.read_bytes().endswith(b"x" * 20 + b"\n")
    _sim(client).spawn_print(1, b"after the trim\n")  # type: ignore[attr-defined]
    history.drain()
    history.flush_due()
    assert trimmed.read_bytes().endswith(b"after the trim\n")  # appended to the trimmed file
    client.stop(1, force=True)
    history.attach(1, UID, new_boot=True)
    assert str(trimmed) not in _open_fds()  # the previous boot: kept, no longer appended to
    client.start(1)
    history.drain()
    history.flush_due()
    current = history.boot_paths(1)[-1]
    assert str(current) in _open_fds() and trimmed.exists()
    history.forget(1)
    assert not any(str(tmp_path / "console") in path for path in _open_fds())
    history.close()
