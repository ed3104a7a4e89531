"""Node emitters shared by the root, instance and overlay builders."""

from __future__ import annotations

from collections.abc import Sequence

from mkd.devicetree.fdt import TreeWriter
from mkd.devicetree.names import is_pci_id
from mkd.devicetree.props import u32_cells

COMPATIBLE = "multikernel-v1"


def write_device_node(writer: TreeWriter, node_name: str, device: str) -> None:
    """One device: PCI by pci-id (spec 5.1 "DDDD:BB:SS.F"), anything else as a platform device-name."""
    with writer.node(node_name):
        if is_pci_id(device):
            writer.prop_string("device-type", "pci")
            writer.prop_string("pci-id", device)
        else:
            writer.prop_string("device-type", "platform")
            writer.prop_string("device-name", device)


def write_devices(writer: TreeWriter, devices: Sequence[str]) -> None:
    """A `devices { device@N {...}; }` node; nothing when there are no devices."""
    if not devices:
        return
    with writer.node("devices"):
        for index, device in enumerate(devices):
            write_device_node(writer, f"device@{index}", device)


def write_u32(writer: TreeWriter, name: str, value: int) -> None:
    writer.prop_bytes(name, u32_cells([value]))
