"""Name rules shared by device-tree input and output."""

from __future__ import annotations

import re

# DESIGN "Ids and refs": names are DT node names, [A-Za-z0-9,._+-], 1-31 chars, not purely numeric.
_NODE_NAME = re.compile(r"[A-Za-z0-9,._+-]{1,31}")
_NUMERIC = re.compile(r"[0-9]+")

# Spec 5.1: PCI devices are named by pci-id "DDDD:BB:SS.F" (hex).
_PCI_ID = re.compile(r"[0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]")


def instance_name_problem(name: str) -> str | None:
    """Why `name` cannot name an instance, or None when it can."""
    if not _NODE_NAME.fullmatch(name):
        return f"{name!r} is not a DT node name ([A-Za-z0-9,._+-], 1-31 characters)"
    if _NUMERIC.fullmatch(name):
        return f"{name!r} is purely numeric, which would read as an id"
    if name in (".", ".."):
        # The host backend joins names into sysfs paths (issue 11): "." and ".." are directories.
        return f"{name!r} names a directory in a path, not an instance"
    return None


def is_pci_id(name: str) -> bool:
    return _PCI_ID.fullmatch(name) is not None
