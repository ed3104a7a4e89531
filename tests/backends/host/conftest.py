"""Fixtures for the host backend: a HostBackend wired to a FakeKernel in tmp_path (host_fakes.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from host_fakes import FakeKernel, Host, MakeHost, make_fake_proc, make_fake_sys

from mkd.backends.host.backend import HostBackend
from mkd.config import load_settings


@pytest.fixture
def make_host(tmp_path: Path) -> MakeHost:
    def make(profile: Literal["rfc-v2", "tree"] = "tree", *, machine: str = "x86_64") -> Host:
        base = tmp_path / profile
        sysfs, proc, sys_root = base / "mk", base / "proc", base / "sys"
        make_fake_proc(proc)
        make_fake_sys(sys_root)
        kernel = FakeKernel(sysfs, proc, profile)
        settings = load_settings(overrides={"daemon.state_dir": base / "state", "daemon.sysfs_root": sysfs})
        backend = HostBackend(
            settings,
            sysfs=sysfs,
            syscalls=kernel,
            procfs=proc,
            sys_root=sys_root,
            file_ops=kernel,
            machine=machine,
            poll_interval_s=0.01,
        )
        return Host(backend, kernel, settings, sysfs, proc, sys_root)

    return make


@pytest.fixture
def tree(make_host: MakeHost) -> Host:
    return make_host("tree")


@pytest.fixture
def v2(make_host: MakeHost) -> Host:
    return make_host("rfc-v2")


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    directory = tmp_path / "images"
    directory.mkdir()
    kernel = directory / "vmlinuz"
    head = bytearray(0x400)
    head[0x202:0x206] = b"HdrS"
    kernel.write_bytes(bytes(head))
    initrd = directory / "initrd.img"
    initrd.write_bytes(b"070701" + b"\0" * 100)
    return {"kernel": kernel, "initrd": initrd}
