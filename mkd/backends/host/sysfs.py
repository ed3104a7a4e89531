"""/sys/fs/multikernel: the files the kernel exposes and the writes it reacts to (spec 6.1, 5.4).

Reads go straight to the files under `root`. Writes and rmdirs go through `FileOps`, because a
kernfs file reacts to a write (an overlay write creates a transaction, an rmdir destroys an
instance) and a plain directory does not: tests inject a fake kernel there.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mkd.errors import KernelError
from mkd.kernel_types import MAX_DT_WRITE_BYTES, KernelProfile

_TX_NAME = re.compile(r"^tx_(\d+)$")


class FileOps(Protocol):
    """The write side of sysfs: each call is one syscall whose errno is the kernel's answer."""

    def write_once(self, path: Path, data: bytes) -> None: ...

    def rmdir(self, path: Path) -> None: ...


class OsFileOps:
    """FileOps on the real filesystem."""

    def write_once(self, path: Path, data: bytes) -> None:
        # kernfs applies a device tree per write() call and rejects a write at offset != 0
        # (spec 5.4), so the blob must go in exactly one write on a fresh descriptor.
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):
            raise OSError(errno.EIO, f"short write to {path}: {written} of {len(data)} bytes")

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)


@dataclass(frozen=True)
class InstanceFiles:
    """What instances/<name>/ holds; the tree has `device_tree`, rfc-v2 `device_tree_source`."""

    name: str
    id: int
    status: str
    device_tree: bytes | None
    device_tree_source: str | None


@dataclass(frozen=True)
class Transaction:
    """overlays/tx_N (spec 5.4)."""

    id: int
    status: str  # pending, applied, failed, removed
    instance: str
    resources: str

    @property
    def name(self) -> str:
        return f"tx_{self.id}"


def kernel_error_from_os(exc: OSError, what: str) -> KernelError:
    """An OSError from a sysfs call is the kernel's errno for `what`."""
    code = exc.errno if exc.errno is not None else errno.EIO
    return KernelError(code, f"{what}: {os.strerror(code)}")


class MultikernelFs:
    """Typed access to one /sys/fs/multikernel tree."""

    def __init__(self, root: Path, file_ops: FileOps | None = None) -> None:
        self.root = root
        self.file_ops: FileOps = file_ops or OsFileOps()

    # -- layout -----------------------------------------------------------------------------

    @property
    def device_tree_path(self) -> Path:
        return self.root / "device_tree"

    @property
    def instances_dir(self) -> Path:
        return self.root / "instances"

    @property
    def overlays_dir(self) -> Path:
        return self.root / "overlays"

    def present(self) -> bool:
        """The multikernel filesystem is mounted: its root tree file is there."""
        return self.device_tree_path.exists()

    def profile(self) -> KernelProfile:
        # DESIGN "Two kernel generations": only the tree has overlays/.
        return "tree" if self.overlays_dir.is_dir() else "rfc-v2"

    # -- root device tree (spec 5.1, 5.2) ---------------------------------------------------

    def read_root_tree(self) -> bytes:
        try:
            return self.device_tree_path.read_bytes()
        except OSError as exc:
            raise kernel_error_from_os(exc, f"cannot read {self.device_tree_path}") from exc

    def write_root_tree(self, blob: bytes) -> None:
        _check_blob_size(blob, "root device tree")
        try:
            self.file_ops.write_once(self.device_tree_path, blob)
        except OSError as exc:
            raise kernel_error_from_os(exc, f"kernel refused the write to {self.device_tree_path}") from exc

    # -- instances (spec 6.1) ---------------------------------------------------------------

    def instance_names(self) -> list[str]:
        try:
            return sorted(entry.name for entry in self.instances_dir.iterdir() if entry.is_dir())
        except FileNotFoundError:
            return []

    def read_instance(self, name: str) -> InstanceFiles | None:
        """The files of instances/<name>, or None when the instance went away meanwhile."""
        directory = self.instances_dir / name
        try:
            instance_id = int((directory / "id").read_text().strip())
            status = (directory / "status").read_text().strip()
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise KernelError(errno.EIO, f"cannot read instance {name!r} from {directory}: {exc}") from exc
        return InstanceFiles(
            name=name,
            id=instance_id,
            status=status,
            device_tree=_read_optional_bytes(directory / "device_tree"),
            device_tree_source=_read_optional_text(directory / "device_tree_source"),
        )

    def read_instances(self) -> list[InstanceFiles]:
        found = (self.read_instance(name) for name in self.instance_names())
        return [files for files in found if files is not None]

    def remove_instance_dir(self, name: str) -> None:
        """rfc-v2 destroy (spec 1.1): rmdir; ACTIVE/LOADING come back as EBUSY."""
        path = self.instances_dir / name
        try:
            self.file_ops.rmdir(path)
        except OSError as exc:
            raise kernel_error_from_os(exc, f"kernel refused rmdir {path}") from exc

    # -- overlays (spec 5.4, tree only) -----------------------------------------------------

    def transaction_ids(self) -> list[int]:
        try:
            names = [entry.name for entry in self.overlays_dir.iterdir()]
        except FileNotFoundError:
            return []
        return sorted(int(match.group(1)) for match in map(_TX_NAME.match, names) if match)

    def read_transaction(self, tx_id: int) -> Transaction:
        directory = self.overlays_dir / f"tx_{tx_id}"
        try:
            return Transaction(
                id=int((directory / "id").read_text().strip()),
                status=(directory / "status").read_text().strip(),
                instance=(_read_optional_text(directory / "instance") or "unknown").strip(),
                resources=(_read_optional_text(directory / "resources") or "unknown").strip(),
            )
        except (OSError, ValueError) as exc:
            raise KernelError(errno.EIO, f"cannot read overlay transaction {directory}: {exc}") from exc

    def write_overlay(self, dtbo: bytes) -> Transaction:
        """Write a DTBO to overlays/new and return the transaction it made, applied or not.

        spec 5.4: the write succeeds even when applying fails; the outcome is only the new
        tx_N's status. The new tx is the highest id that was not there before the write (the
        kernel's counter only grows); callers serialise their own overlay writes.
        """
        _check_blob_size(dtbo, "overlay")
        before = set(self.transaction_ids())
        path = self.overlays_dir / "new"
        try:
            self.file_ops.write_once(path, dtbo)
        except OSError as exc:
            raise kernel_error_from_os(exc, f"kernel refused the overlay write to {path}") from exc
        created = [tx_id for tx_id in self.transaction_ids() if tx_id not in before]
        if not created:
            raise KernelError(errno.EIO, f"overlay write to {path} succeeded but no overlays/tx_N appeared")
        return self.read_transaction(max(created))

    def remove_transaction(self, tx_id: int) -> None:
        """Roll back overlays/tx_N by rmdir (spec 5.4): inverse ops in reverse order."""
        path = self.overlays_dir / f"tx_{tx_id}"
        try:
            self.file_ops.rmdir(path)
        except OSError as exc:
            raise kernel_error_from_os(exc, f"kernel refused to roll back {path}") from exc


def _check_blob_size(blob: bytes, what: str) -> None:
    if len(blob) > MAX_DT_WRITE_BYTES:
        raise KernelError(errno.EFBIG, f"{what} is {len(blob)} bytes; the kernel takes at most 1 MiB")


def _read_optional_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _read_optional_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None
