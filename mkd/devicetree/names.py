"""Device names shared by device-tree input and output (instance names: mkd.domain.names)."""

from __future__ import annotations

import re

# Spec 5.1: PCI devices are named by pci-id "DDDD:BB:SS.F" (hex).
_PCI_ID = re.compile(r"[0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]")


def is_pci_id(name: str) -> bool:
    return _PCI_ID.fullmatch(name) is not None
