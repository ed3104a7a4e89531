"""/sys/fs/multikernel: the files the kernel exposes and the writes it reacts to (spec 6.1, 5.4).

Every call goes through a KernelIO: the real files on a host, the simulator's in process.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass

from mkd.backends.kernel_io import SYSFS_ROOT, KernelIO, join
from mkd.errors import KernelError
from mkd.kernel_types import MAX_DT_WRITE_BYTES, KernelProfile

_TX_NAME = re.compile(r"^tx_(\d+)$")


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


_MAX_STATUS_PATHS = 8192  # every instance's (ids are 1..2047), with room for renames


def _status_text(data: bytes) -> str:
    """A status file's word; the few there are decoded once each."""
    text = _STATUS_TEXT.get(data)
    if text is None:
        text = data.decode().strip()
        if len(_STATUS_TEXT) < 64:
            _STATUS_TEXT[data] = text
    return text


_STATUS_TEXT: dict[bytes, str] = {}


class MultikernelFs:
    """Typed access to the /sys/fs/multikernel tree of one kernel."""

    def __init__(self, io: KernelIO, root: str = SYSFS_ROOT) -> None:
        self.io = io
        self.root = root
        self._instances_dir = join(root, "instances")  # joined once: the status poll reads it per instance
        # name -> its status path, built once: the poll asks for every running instance's each second
        self._status_paths: dict[str, str] = {}

    # -- layout -----------------------------------------------------------------------------

    @property
    def device_tree_path(self) -> str:
        return join(self.root, "device_tree")

    @property
    def instances_dir(self) -> str:
        return self._instances_dir

    @property
    def overlays_dir(self) -> str:
        return join(self.root, "overlays")

    def present(self) -> bool:
        """The multikernel filesystem is mounted: its root tree file is there."""
        return self.io.exists(self.device_tree_path)

    def profile(self) -> KernelProfile:
        # DESIGN "Two kernel generations": only the tree has overlays/.
        return "tree" if self.io.is_dir(self.overlays_dir) else "rfc-v2"

    # -- root device tree (spec 5.1, 5.2) ---------------------------------------------------

    def read_root_tree(self) -> bytes:
        try:
            return self.io.read(self.device_tree_path)
        except OSError as exc:
            raise kernel_error_from_os(exc, f"cannot read {self.device_tree_path}") from exc

    def write_root_tree(self, blob: bytes) -> None:
        _check_blob_size(blob, "root device tree")
        try:
            self.io.write_once(self.device_tree_path, blob)
        except OSError as exc:
            raise kernel_error_from_os(exc, f"kernel refused the write to {self.device_tree_path}") from exc

    # -- instances (spec 6.1) ---------------------------------------------------------------

    def instance_names(self) -> list[str]:
        try:
            return self.io.listdir(self.instances_dir)
        except FileNotFoundError:
            return []

    def read_instance(self, name: str) -> InstanceFiles | None:
        """The files of instances/<name>, or None when the instance went away meanwhile."""
        directory = join(self.instances_dir, name)
        try:
            instance_id = int(self.io.read(join(directory, "id")).decode().strip())
            status = self.io.read(join(directory, "status")).decode().strip()
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise KernelError(errno.EIO, f"cannot read instance {name!r} from {directory}: {exc}") from exc
        return InstanceFiles(
            name=name,
            id=instance_id,
            status=status,
            device_tree=self._read_optional(join(directory, "device_tree")),
            device_tree_source=_text(self._read_optional(join(directory, "device_tree_source"))),
        )

    def instance_ids(self) -> dict[str, int]:
        """Instance name -> id, reading only the id files."""
        found = {}
        for name in self.instance_names():
            try:
                found[name] = int(self.io.read(join(self.instances_dir, name, "id")).decode().strip())
            except (OSError, ValueError):
                continue  # gone meanwhile
        return found

    def read_statuses(self) -> dict[int, tuple[str, str]]:
        """Instance id -> (name, status), reading only the id and status files (the watch poll)."""
        found = {}
        for name in self.instance_names():
            directory = join(self.instances_dir, name)
            try:
                instance_id = int(self.io.read(join(directory, "id")).decode().strip())
                found[instance_id] = (name, self.io.read(join(directory, "status")).decode().strip())
            except (OSError, ValueError):
                continue  # gone meanwhile
        return found

    def read_status(self, name: str) -> str | None:
        """instances/<name>/status, or None when the instance went away meanwhile."""
        try:
            return self.io.read(f"{self.instances_dir}/{name}/status").decode().strip()
        except OSError:
            return None

    def read_statuses_of(self, names: list[str]) -> list[str | None]:
        """instances/<name>/status of each name (None for one that went away), in one call."""
        if len(self._status_paths) > _MAX_STATUS_PATHS:
            self._status_paths.clear()  # names of instances long gone
        paths = self._status_paths
        for name in names:
            if name not in paths:
                paths[name] = f"{self.instances_dir}/{name}/status"
        found = self.io.read_each([paths[name] for name in names])
        return [None if data is None else _status_text(data) for data in found]

    def find_instance_name(self, instance_id: int) -> str | None:
        """The directory whose `id` file says `instance_id` (reads only the id files)."""
        for name in self.instance_names():
            try:
                if int(self.io.read(join(self.instances_dir, name, "id")).decode().strip()) == instance_id:
                    return name
            except (OSError, ValueError):
                continue
        return None

    def read_instances(self) -> list[InstanceFiles]:
        found = (self.read_instance(name) for name in self.instance_names())
        return [files for files in found if files is not None]

    def remove_instance_dir(self, name: str) -> None:
        """rfc-v2 destroy (spec 1.1): rmdir; ACTIVE/LOADING come back as EBUSY."""
        path = join(self.instances_dir, name)
        try:
            self.io.rmdir(path)
        except OSError as exc:
            raise kernel_error_from_os(exc, f"kernel refused rmdir {path}") from exc

    # -- overlays (spec 5.4, tree only) -----------------------------------------------------

    def transaction_ids(self) -> list[int]:
        try:
            names = self.io.listdir(self.overlays_dir)
        except FileNotFoundError:
            return []
        return sorted(int(match.group(1)) for match in map(_TX_NAME.match, names) if match)

    def read_transaction(self, tx_id: int) -> Transaction:
        directory = join(self.overlays_dir, f"tx_{tx_id}")
        try:
            return Transaction(
                id=int(self.io.read(join(directory, "id")).decode().strip()),
                status=self.io.read(join(directory, "status")).decode().strip(),
                instance=(_text(self._read_optional(join(directory, "instance"))) or "unknown").strip(),
                resources=(_text(self._read_optional(join(directory, "resources"))) or "unknown").strip(),
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
        path = join(self.overlays_dir, "new")
        try:
            self.io.write_once(path, dtbo)
        except OSError as exc:
            raise kernel_error_from_os(exc, f"kernel refused the overlay write to {path}") from exc
        created = [tx_id for tx_id in self.transaction_ids() if tx_id not in before]
        if not created:
            raise KernelError(errno.EIO, f"overlay write to {path} succeeded but no overlays/tx_N appeared")
        return self.read_transaction(max(created))

    def _read_optional(self, path: str) -> bytes | None:
        try:
            return self.io.read(path)
        except FileNotFoundError:
            return None

    def remove_transaction(self, tx_id: int) -> None:
        """Roll back overlays/tx_N by rmdir (spec 5.4): inverse ops in reverse order."""
        path = join(self.overlays_dir, f"tx_{tx_id}")
        try:
            self.io.rmdir(path)
        except OSError as exc:
            raise kernel_error_from_os(exc, f"kernel refused to roll back {path}") from exc


def _check_blob_size(blob: bytes, what: str) -> None:
    if len(blob) > MAX_DT_WRITE_BYTES:
        raise KernelError(errno.EFBIG, f"{what} is {len(blob)} bytes; the kernel takes at most 1 MiB")


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode(errors="replace")
