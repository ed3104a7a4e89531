"""M25-M31 (spec 8.5, 8.6.3, 8.6.5, 8.11): aliases, host CPUs, instance ids, LLC masks, virtio."""

from __future__ import annotations

from pathlib import Path

from conftest import BackendFactory, kernel_of, load_flags
from mk2_setup import HALT, HALT_FORCE, START, WEB, cells, errno_of, machine, write_overlay

from mkd.backends.simulated.kernel import SimulatedKernel
from mkd.devicetree.dts import dts_to_dtb
from mkd.devicetree.fdt import open_dtb
from mkd.kexec.flags import KEXEC_FILE_NO_INITRAMFS, KEXEC_MULTIKERNEL, kexec_mk_id

NIC = "0000:65:00.0"


def _create(name: str, extra: str = "", resources: str = "") -> str:
    return f'instance-create {{ instance-name = "{name}"; {extra} resources {{ {resources} }}; }};'


def _prop(blob: bytes, path: str, name: str) -> bytes | None:
    node = open_dtb(blob)
    for part in [p for p in path.split("/") if p]:
        child = node.child(part)
        if child is None:
            return None
        node = child
    return dict(node.properties()).get(name)


def test_m25_a_pool_device_alias_is_in_the_root_tree(make_backend: BackendFactory) -> None:
    kernel = machine(make_backend, devices=[NIC])
    ops = f'device-add {{ d {{ pci-id = "{NIC}"; alias = "nvme0"; driver = "nvme"; }}; }};'
    assert write_overlay(kernel, "/resources", ops) == "applied"
    root = kernel.read_device_tree()
    target = _prop(root, "/aliases", "nvme0")
    assert target is not None
    assert _prop(root, target.rstrip(b"\0").decode(), "pci-id") == f"{NIC}\0".encode()


def test_an_alias_is_kept_to_31_characters(make_backend: BackendFactory) -> None:
    kernel = machine(make_backend, devices=[NIC])
    long = "a" * 40
    ops = f'device-add {{ d {{ pci-id = "{NIC}"; alias = "{long}"; }}; }};'
    assert write_overlay(kernel, "/resources", ops) == "applied"
    assert _prop(kernel.read_device_tree(), "/aliases", "a" * 31) is not None


def test_m26_cpu_add_of_an_offline_host_cpu(make_backend: BackendFactory) -> None:
    kernel = machine(make_backend, offline_cpus=[6])
    assert write_overlay(kernel, "/resources", "cpu-add { cpu@6 { reg = /bits/ 64 <6>; }; };") == "failed EINVAL"
    assert write_overlay(kernel, "/resources", "cpu-add { cpu@5 { reg = /bits/ 64 <5>; }; };") == "applied"


def test_m27_an_id_above_2047_is_created_but_not_loadable(
    make_backend: BackendFactory, images: dict[str, Path]
) -> None:
    kernel = machine(make_backend)
    create = _create("big", "id = <5000>;", "cpus = /bits/ 64 <3>; memory-bytes = /bits/ 64 <0x1000000>;")
    assert write_overlay(kernel, "/instances", create) == "applied"
    assert kernel.id_file("big") == "5000\n"
    flags = KEXEC_MULTIKERNEL | KEXEC_FILE_NO_INITRAMFS | kexec_mk_id(5000)  # aliases id 5000 & 0x7ff = 904
    assert kexec_mk_id(5000) == kexec_mk_id(904)
    assert errno_of(kernel.kexec_file_load, images["vmlinux"], None, b"\0", flags) == "ENOENT"
    # halts and the console take any positive id
    assert errno_of(kernel.reboot, HALT, 5000) == "EINVAL"  # READY, not ACTIVE
    assert errno_of(kernel.reboot, HALT_FORCE, 5000) == "EINVAL"
    assert errno_of(kernel.reboot, START, 5000) == "EINVAL"  # no kimage
    assert kernel.console.open().write(b"5000\n") == 5


def test_m28_an_unusable_id_means_auto(make_backend: BackendFactory) -> None:
    kernel = machine(make_backend)
    for name in ("a", "b"):
        assert write_overlay(kernel, "/instances", _create(name)) == "applied"
    assert write_overlay(kernel, "/instances", _create("c", "id = <0xffffffff>;")) == "applied"
    assert kernel.id_file("c") == "3\n"
    assert write_overlay(kernel, "/instances", _create("d", "id = /bits/ 64 <7>;")) == "applied"
    assert kernel.id_file("d") == "4\n"
    assert write_overlay(kernel, "/instances", _create("e", "id = <0>;")) == "failed ENOMEM"  # the host's


def _baseline(llc: str) -> bytes:
    return dts_to_dtb(
        "/dts-v1/; / { resources { cpus = /bits/ 64 <1 2 3 4>; "
        f"{llc} memory@0 {{ size = /bits/ 64 <0x40000000>; }}; }}; }};"
    )


def test_m29_llc_way_mask_is_ignored_by_the_release(make_backend: BackendFactory) -> None:
    kernel = kernel_of(make_backend(kernel_profile="tree"))
    data = _baseline("llc-way-mask = <0xff00>;")
    assert kernel.write_device_tree(data) == len(data)
    assert _prop(kernel.read_device_tree(), "/resources", "llc-way-mask") is None
    assert kernel.read_pool().free_llc_way_mask is None
    create = _create("web", resources="llc-way-mask = <0x1>; memory-bytes = /bits/ 64 <0x1000000>;")
    assert write_overlay(kernel, "/instances", create) == "applied"  # ignored, not refused
    assert kernel.read_instance(1).llc_way_mask is None


def test_m29_llc_way_masks_setting_follows_the_mid_revision(make_backend: BackendFactory, tmp_path: Path) -> None:
    kernel = kernel_of(make_backend(kernel_profile="tree", llc_way_masks=True))
    assert errno_of(kernel.write_device_tree, _baseline("llc-way-mask = <0>;")) == "EINVAL"
    data = _baseline("llc-way-mask = <0xff00>;")
    assert kernel.write_device_tree(data) == len(data)
    assert _prop(kernel.read_device_tree(), "/resources", "llc-way-mask") == (0xFF00).to_bytes(4, "big")


def _virtio(queues: int) -> str:
    return f"virtio {{ net@0 {{ device-id = <1>; queues = <{queues}>; }}; }};"


def test_m30_a_virtio_net_device(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = machine(make_backend)
    assert write_overlay(kernel, "/instances", WEB.replace("{extra}", _virtio(2))) == "applied"
    assert kernel.host_netdevs() == [("mk-web-0", False)]  # carrier off: no spawn driver yet
    kernel.kexec_file_load(images["vmlinux"], None, b"\0", load_flags(1))
    kernel.reboot(START, 1)
    boot = open_dtb(kernel.boot_device_tree(1))
    nodes = [child for child in boot.children() if child.unit_name == "virtio"]
    assert len(nodes) == 1
    assert dict(nodes[0].properties())["compatible"] == b"multikernel,virtio\0"
    assert kernel.host_netdevs() == [("mk-web-0", True)]  # the simulated spawn driver is ready at boot
    kernel.spawn_exit(1, "hang")
    assert kernel.host_netdevs() == [("mk-web-0", False)]


def test_a_netdev_name_keeps_nine_characters_of_the_instance_name(make_backend: BackendFactory) -> None:
    kernel = machine(make_backend)
    assert write_overlay(kernel, "/instances", _create("webserver-long", resources=_virtio(1))) == "applied"
    assert kernel.host_netdevs() == [("mk-webserver-0", False)]


def test_m31_virtio_queue_limits(make_backend: BackendFactory) -> None:
    kernel: SimulatedKernel = machine(make_backend)
    for queues in (9, 0):
        assert write_overlay(kernel, "/instances", WEB.replace("{extra}", _virtio(queues))) == "failed EINVAL"
    assert write_overlay(kernel, "/instances", WEB.replace("{extra}", _virtio(8))) == "applied"
    assert cells(kernel.instance_device_tree("web"), "/resources", "cpus") == [1, 2]


def test_an_alias_follows_its_device_into_the_boot_tree(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    kernel = machine(make_backend, devices=[NIC])
    ops = f'device-add {{ d {{ pci-id = "{NIC}"; alias = "nvme0"; }}; }};'
    assert write_overlay(kernel, "/resources", ops) == "applied"
    nic = f'devices {{ nic {{ device-type = "pci"; pci-id = "{NIC}"; }}; }};'
    assert write_overlay(kernel, "/instances", WEB.replace("{extra}", nic)) == "applied"
    kernel.kexec_file_load(images["vmlinux"], None, b"\0", load_flags(1))
    kernel.reboot(START, 1)
    boot = kernel.boot_device_tree(1)
    assert _prop(boot, "/aliases", "nvme0") == b"/resources/devices/device@0\0"
    assert _prop(boot, "/resources/devices/device@0", "pci-id") == f"{NIC}\0".encode()
