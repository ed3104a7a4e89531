"""The spec 8.13 setup for the M-vectors, through the kernel's interface.

The tree profile; baseline CPUs {1,2,3,4} and one 1 GiB chunk written to `device_tree`;
`memory_block_size` 128 MiB; the instance `web` (id 1, CPUs {1,2}, 256 MiB) created by an
overlay; "active" = loaded with KEXEC_MK_ID(1) and started with reboot(MULTIKERNEL). T(x) is a
one-fragment overlay written to `overlays/new`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BackendFactory, kernel_of, load_flags

from mkd.backends.simulated.kernel import SimulatedKernel
from mkd.backends.simulated.reboot import (
    LINUX_REBOOT_CMD_MULTIKERNEL,
    LINUX_REBOOT_CMD_MULTIKERNEL_HALT,
    LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE,
)
from mkd.devicetree.dts import dts_to_dtb
from mkd.devicetree.fdt import open_dtb
from mkd.errors import KernelError, errno_name

MiB = 1 << 20
BASELINE = dts_to_dtb(
    "/dts-v1/; / { resources { cpus = /bits/ 64 <1 2 3 4>; memory@0 { size = /bits/ 64 <0x40000000>; }; }; };"
)
WEB = (
    'instance-create { instance-name = "web"; id = <1>; resources { '
    "cpus = /bits/ 64 <1 2>; memory-bytes = /bits/ 64 <0x10000000>; {extra} }; };"
)
START = LINUX_REBOOT_CMD_MULTIKERNEL
HALT = LINUX_REBOOT_CMD_MULTIKERNEL_HALT
HALT_FORCE = LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE


def overlay(target: str, ops: str) -> bytes:
    """T(x): one fragment on `target` with the op nodes `ops` (dts source)."""
    return dts_to_dtb(f'/dts-v1/;\n/ {{ fragment@0 {{ target-path = "{target}"; __overlay__ {{ {ops} }}; }}; }};')


def write_overlay(kernel: SimulatedKernel, target: str, ops: str) -> str:
    """Write T(x) and read tx_N/status as soon as the directory is there: "applied", or
    "failed <ERRNO>" with the errno the kernel logged."""
    data = overlay(target, ops)
    tx_id = kernel.overlay_new(data)
    status = kernel.tx_files(tx_id)["status"].decode().strip()
    if status == "failed":
        logged = kernel.tx_log(tx_id) or ""
        return f"failed {logged.split(':', 1)[0]}"
    return status


def errno_of(call: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(KernelError) as exc:
        call(*args, **kwargs)  # type: ignore[operator]
    return errno_name(exc.value.errno_code)


def machine(make_backend: BackendFactory, **simulator: object) -> SimulatedKernel:
    """The tree kernel with the baseline written and no instances."""
    kernel = kernel_of(make_backend(kernel_profile="tree", **simulator))
    assert kernel.write_device_tree(BASELINE) == len(BASELINE)
    return kernel


def ready_web(make_backend: BackendFactory, extra: str = "", **simulator: object) -> SimulatedKernel:
    kernel = machine(make_backend, **simulator)
    assert write_overlay(kernel, "/instances", WEB.replace("{extra}", extra)) == "applied"
    return kernel


def load_web(kernel: SimulatedKernel, image: Path, cmdline: bytes = b"console=mktty0") -> None:
    assert kernel.kexec_file_load(image, None, cmdline + b"\0", load_flags(1)) == 0


def active_web(
    make_backend: BackendFactory, image: Path, cmdline: bytes = b"console=mktty0", **simulator: object
) -> SimulatedKernel:
    kernel = ready_web(make_backend, **simulator)
    load_web(kernel, image, cmdline)
    assert kernel.reboot(START, 1) == 0
    assert kernel.status_file("web") == "active\n"
    return kernel


def cells(blob: bytes, path: str, prop: str) -> list[int]:
    """A property of u64 cells read from a DTB."""
    node = open_dtb(blob)
    for part in [p for p in path.split("/") if p]:
        child = node.child(part)
        assert child is not None, f"{path} is not in the tree"
        node = child
    raw = dict(node.properties())[prop]
    return [int.from_bytes(raw[i : i + 8], "big") for i in range(0, len(raw), 8)]
