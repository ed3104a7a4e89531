"""HostBackend: the one kernel client, driving a kernel through its own interface (KernelIO).

DESIGN "Two backends": over `OsKernelIO` it drives the running kernel (`backend = "host"`);
over the simulator's `SimulatedKernelIO` it drives the simulated kernel with the same code.
Every method has the kernel's raw semantics and raises the KernelError the kernel gives.
Where the kernel reports success for something it did not do (a v2 root tree write that
skipped an instance, an overlay transaction that failed), this backend checks the outcome and
turns it into the errno the kernel would have given, saying in `detail` how it knows.
"""

from __future__ import annotations

import asyncio
import errno
import os
import platform
import threading
from collections.abc import AsyncIterator, Collection, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Literal

from mkd.backends.host.kernel_log import logged_skips
from mkd.backends.host.kimage import compute_segments, describe_kimage, image_loader, read_kernel_segments
from mkd.backends.host.loader_env import read_loader_env
from mkd.backends.host.overlays import OverlayApplier
from mkd.backends.host.pool import Holding, PoolKeeper
from mkd.backends.host.procfs import KimageRow, Procfs
from mkd.backends.host.readback import InstanceResources, parse_instance_dtb, parse_instance_dts, parse_pool_dtb
from mkd.backends.host.state import HostState, LoadRecord
from mkd.backends.host.syscalls import (
    LINUX_REBOOT_CMD_MULTIKERNEL,
    LINUX_REBOOT_CMD_MULTIKERNEL_HALT,
    LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE,
)
from mkd.backends.host.sysfs import InstanceFiles, MultikernelFs, kernel_error_from_os
from mkd.backends.host.topology import SysTopology
from mkd.backends.kernel_io import FEATURES_PATH, ConsoleFile, KernelIO, OsKernelIO
from mkd.config import Settings
from mkd.devicetree.names import is_pci_id
from mkd.errors import KernelError
from mkd.kernel_types import (
    MAX_INSTANCE_ID,
    MIN_INSTANCE_ID,
    Arch,
    HostInfo,
    InstanceSpec,
    KernelEvent,
    KernelInstance,
    KernelProfile,
    LoadRequest,
    MemChunk,
    PoolSpec,
    PoolState,
    Segment,
)
from mkd.kexec.env import KexecEnv
from mkd.kexec.flags import (
    KEXEC_FILE_NO_INITRAMFS,
    KEXEC_FILE_UNLOAD,
    KEXEC_MULTIKERNEL,
    kexec_get_mk_id,
    kexec_mk_id,
)

# DESIGN "Two kernel generations". rfc-v2 per_instance_unload is False unless the kernel declares
# it: the seed's only unload paths drop every multikernel image (kexec_load with 0 segments) or
# whichever image holds the single kexec_image slot (KEXEC_FILE_UNLOAD), spec 2.5; the simulator
# unloads per id by default (spec 2.3) and says so in its features file.
CAPABILITIES: dict[KernelProfile, dict[str, bool]] = {
    "rfc-v2": {
        "halt": False,
        "per_instance_unload": False,
        "hot_update": False,
        "numa": False,
        "active_reported": False,
        "llc_way_masks": False,
        "hotplug_active": False,
        "console": False,
    },
    # v7.0-mk2 (spec 8): hot-plug into ACTIVE instances through the spawn's ACK (8.7); LLC way
    # masks only where the kernel declares them (the release ignores llc-way-mask, 8.6.3); the
    # console where its device exists (8.8).
    "tree": {
        "halt": True,
        "per_instance_unload": True,
        "hot_update": True,
        "numa": True,
        "active_reported": True,
        "llc_way_masks": False,
        "hotplug_active": True,
        "console": True,
    },
}

# spec 1: the states in which an instance holds a kimage (v2 "loading", tree "loaded").
KIMAGE_STATES = frozenset({"loading", "loaded", "active"})

STATE_FILE_NAME = "host-backend.json"


def arch_of(machine: str) -> Arch:
    if machine == "x86_64":
        return "x86_64"
    if machine in ("aarch64", "arm64"):
        return "arm64"
    raise KernelError(errno.ENODEV, f"multikernel exists only on x86_64 and arm64, not {machine!r}")


class HostBackend:
    """The Backend protocol over one kernel's interface (the running kernel's by default)."""

    def __init__(
        self,
        settings: Settings,
        io: KernelIO | None = None,
        *,
        name: Literal["simulated", "host"] = "host",
        machine: str | None = None,
        poll_interval_s: float | None = None,
        state_file: Path | None = None,
    ) -> None:
        self.settings = settings
        self.name: Literal["simulated", "host"] = name
        self.machine = machine or platform.machine()
        self.io: KernelIO = io or OsKernelIO(
            sysfs_root=str(settings.daemon.sysfs_root), machine=self.machine,
            console_device=str(settings.daemon.console_device),
        )
        self.fs = MultikernelFs(self.io)
        self.procfs = Procfs(self.io)
        self.sys = SysTopology(self.io, self.procfs)
        self.state = HostState(state_file or settings.daemon.state_dir / STATE_FILE_NAME)
        self.poll_interval_s = settings.daemon.status_poll_interval_s if poll_interval_s is None else poll_interval_s
        # One lock for every kernel call: overlay writes must not interleave (we identify our
        # transaction as the new tx_N), and watch() must not report our own changes.
        self._lock = threading.RLock()
        self._known: dict[int, tuple[str, str]] = {}
        self._closed = threading.Event()
        self.overlays = OverlayApplier(self.fs)
        self.pool = PoolKeeper(self.fs, self.procfs, self.state, self.overlays)
        # Instance name -> (its device tree as last read, the parse): a listing re-reads every
        # instance's tree, and most did not change since the last one.
        self._parsed_trees: dict[str, tuple[bytes | str, InstanceResources]] = {}
        # Instance name -> what it takes from the pool, for the pool read: see _holdings.
        self._holdings_by_name: dict[str, Holding] = {}

    # -- probe ------------------------------------------------------------------------------

    def profile(self) -> KernelProfile:
        if not self.fs.present():
            raise KernelError(
                errno.ENODEV,
                f"no multikernel filesystem at {self._mount_point()}: boot a CONFIG_MULTIKERNEL kernel "
                f"and `mount -t multikernel none {self._mount_point()}`",
            )
        return self.fs.profile()

    def _mount_point(self) -> str:
        return str(getattr(self.io, "sysfs_root", self.fs.root))  # OsKernelIO may move the root

    def probe(self) -> HostInfo:
        profile = self.profile()
        region = self.procfs.pool_region()
        topology = self.sys.topology(pool_base=region.start if region else 0, pool_bytes=region.size if region else 0)
        return HostInfo(
            backend=self.name,
            kernel_profile=profile,
            arch=arch_of(self.machine),
            capabilities=self.capabilities(profile),
            topology=topology,
        )

    def capabilities(self, profile: KernelProfile) -> dict[str, bool]:
        found = dict(CAPABILITIES[profile])
        declared = self._declared_features()
        for feature in ("per_instance_unload", "llc_way_masks"):
            if feature in declared:
                found[feature] = True
        found["console"] = found["console"] and self.io.has_console()
        return found

    def _declared_features(self) -> set[str]:
        try:
            return set(self.io.read(FEATURES_PATH).decode().split())
        except OSError:
            return set()  # a real kernel declares nothing beyond its interface

    def loader_env(self) -> KexecEnv:
        """The environment this kernel's loaders run under, read from the kernel (DESIGN)."""
        return read_loader_env(self.io, self.profile(), arch_of(self.machine))

    # -- pool -------------------------------------------------------------------------------

    def read_pool(self) -> PoolState:
        with self._lock:
            return self.pool.read(self.profile(), self._holdings())

    def _holdings(self) -> list[Holding]:
        """What each instance takes from the pool, for the pool read. A remembered name stands
        for its resources while its directory is listed: an instance's tree changes only by this
        backend's own writes (create, update, delete forget the name; spec 8.2.2: the kernel
        changes nothing else on its own), so a pool read after a create or delete costs one
        listing and the new directory, not a read of every instance (issue 15)."""
        held: dict[str, Holding] = {}
        for name in self.fs.instance_names():
            holding = self._holdings_by_name.get(name)
            if holding is None:
                files = self.fs.read_instance(name)
                if files is None:
                    continue  # gone meanwhile
                holding = self._resources_of(files)
            held[name] = holding
        self._holdings_by_name = held
        return list(held.values())

    def apply_pool(self, spec: PoolSpec) -> PoolState:
        with self._lock:
            profile = self.profile()
            self.pool.apply(profile, spec, self._read_all())
            return self.pool.read(profile, self._read_all())

    # -- instances --------------------------------------------------------------------------

    def list_instances(self) -> list[KernelInstance]:
        with self._lock:
            return self._read_all()

    def read_instance(self, instance_id: int) -> KernelInstance:
        with self._lock:
            return self._read_one(instance_id)

    def create_instances(self, specs: list[InstanceSpec]) -> list[KernelInstance]:
        with self._lock:
            for spec in specs:
                self._holdings_by_name.pop(spec.name, None)
            profile = self.profile()
            # Names and ids only (one id file each): a create must not parse every instance's tree.
            _refuse_duplicates(specs, self._names_and_ids())
            if profile == "rfc-v2":
                self._create_v2(specs, self._read_all())
                return [self._read_one(spec.id) for spec in specs]
            return self._create_tree(specs)

    def _create_v2(self, specs: list[InstanceSpec], existing: list[KernelInstance]) -> None:
        # spec 5.2: the write returns success even when an instance was skipped, so the result
        # is checked directory by directory and a partial outcome is undone with rmdir.
        self.pool.write_v2_instances(specs, existing)
        created, missing = [], []
        for spec in specs:
            files = self.fs.read_instance(spec.name)
            if files is not None and files.id == spec.id:
                created.append(spec)
            else:
                missing.append(spec)
        if not missing:
            return
        for spec in reversed(created):
            self.fs.remove_instance_dir(spec.name)
        first = missing[0]
        names = ", ".join(spec.name for spec in missing)
        logged = logged_skips(self.io).get(first.name)
        if logged is not None:
            raise KernelError(
                logged.errno_code,
                f"rfc-v2 skipped instance(s) {names} although the device_tree write succeeded (spec 5.2); "
                f"the kernel logged for {first.name}: {logged.reason}; created ones were removed",
                instance_id=first.id,
            )
        free = self.pool.v2_free_memory(existing)
        # The kernel logs why it skipped; without its errno the likely one is inferred: memory
        # beyond what is free is the reservation's ENOMEM, anything else a refused property.
        code = errno.ENOMEM if free is not None and first.memory_bytes > free else errno.EINVAL
        raise KernelError(
            code,
            f"rfc-v2 skipped instance(s) {names} although the device_tree write succeeded "
            f"(spec 5.2; errno inferred, the kernel log has the reason); created ones were removed",
            instance_id=first.id,
        )

    def _create_tree(self, specs: list[InstanceSpec]) -> list[KernelInstance]:
        applied: list[int] = []
        created: list[KernelInstance] = []
        try:
            for spec in specs:
                tx = self.overlays.create_instance(spec, free_memory=self._tree_free_memory)
                applied.append(tx.id)
                self._known[spec.id] = (spec.name, "")  # where to read it back: no directory scan
                created.append(self._check_created_resources(spec, tx.name))
        except KernelError:
            # All or nothing: roll back the transactions that applied, newest first.
            for tx_id in reversed(applied):
                self.fs.remove_transaction(tx_id)
            raise
        return created

    def _check_created_resources(self, spec: InstanceSpec, tx_name: str) -> KernelInstance:
        # spec 5.3: CPUs or devices the pool could not give are only logged; the instance is
        # created without them, which no operator wants.
        got = self._read_one(spec.id)
        missing_cpus = sorted(set(spec.cpus) - set(got.cpus))
        # PCI devices show in the instance DTB's PCI bridge tree, not /resources/devices (spec
        # 5.3), so only platform devices can be checked here.
        platform_devices = {device for device in spec.devices if not is_pci_id(device)}
        missing_devices = sorted(platform_devices - set(got.devices))
        if missing_cpus or missing_devices:
            what = []
            if missing_cpus:
                what.append(f"CPUs {missing_cpus}")
            if missing_devices:
                what.append(f"devices {missing_devices}")
            raise KernelError(
                errno.EBUSY,
                f"{tx_name} created {spec.name!r} without {' and '.join(what)} (not free in the pool, "
                "spec 5.3); rolled back",
                instance_id=spec.id,
            )
        return got

    def update_instance(self, spec: InstanceSpec) -> KernelInstance:
        with self._lock:
            if self.profile() == "rfc-v2":
                raise KernelError(errno.EOPNOTSUPP, "rfc-v2 cannot change an instance's resources", instance_id=spec.id)
            current = self._read_one(spec.id)
            self._holdings_by_name.pop(current.name, None)
            if current.kernel_state == "active":
                # spec 8.7: hot-plug through the spawn's ACK, op by op, no undo.
                free_cpus = set(self.pool.read(self.fs.profile(), self._read_all()).free_cpus)
                self.overlays.update_active_instance(current, spec, free_cpus=free_cpus)
            else:
                self.overlays.update_instance(current, spec, free_memory=self._free_memory)
            return self._read_one(spec.id)

    def delete_instance(self, instance_id: int) -> None:
        with self._lock:
            instance = self._read_one(instance_id)
            self._holdings_by_name.pop(instance.name, None)
            if self.profile() == "rfc-v2":
                # spec 1.1: rmdir destroys; ACTIVE/LOADING → EBUSY from the kernel.
                self.fs.remove_instance_dir(instance.name)
            else:
                self.overlays.remove_instance(instance)
            self.state.forget_load(instance_id)
            self._known.pop(instance_id, None)

    # -- kexec ------------------------------------------------------------------------------

    def kexec_file_load(self, request: LoadRequest) -> KernelInstance:
        flags = request.flags
        if request.initrd is None:
            # spec 2.7.1 step 4: there is no "optional initrd"; without the flag the kernel reads
            # fd -1 and fails EBADF. With it, the initrd fd is never touched.
            flags |= KEXEC_FILE_NO_INITRAMFS
        instance_id = kexec_get_mk_id(flags)
        with (
            self._lock,
            _open_read_only(request.kernel) as kernel_fd,
            _open_read_only(request.initrd) as initrd_fd,
        ):
            self.io.kexec_file_load(kernel_fd, initrd_fd, request.cmdline, flags)
            loaded = self._read_one(instance_id)
            record = LoadRecord(
                kernel_sha256=request.kernel_sha256,
                initrd_sha256=request.initrd_sha256,
                cmdline=(request.cmdline or b"").rstrip(b"\0").decode(errors="replace"),
                loader=image_loader(request.kernel) if request.kernel is not None else "unknown",
            )
            if not self._kernel_shows_segments():
                # The real kernel keeps segment addresses to itself (spec 2.6): plan them with the
                # same loaders over the instance's chunks, as the kernel placed them.
                env = replace(self.loader_env(), profile=self.fs.profile())
                record = replace(record, segments=compute_segments(env, replace(request, flags=flags), loaded.memory))
            self.state.set_load_record(instance_id, record)
            return self._read_one(instance_id)

    def unload(self, instance_id: int) -> KernelInstance:
        with self._lock:
            profile = self.profile()
            if not self.capabilities(profile)["per_instance_unload"]:
                raise KernelError(
                    errno.EOPNOTSUPP,
                    "rfc-v2 has no per-instance unload: KEXEC_FILE_UNLOAD drops whichever image holds "
                    "the kexec_image slot and kexec_load with no segments drops every multikernel "
                    "image (spec 2.5)",
                    instance_id=instance_id,
                )
            # spec 2.4 step 2: UNLOAD|MULTIKERNEL|id frees that instance's kimage; no fds are read.
            flags = KEXEC_FILE_UNLOAD | KEXEC_MULTIKERNEL | kexec_mk_id(_encodable(instance_id))
            self.io.kexec_file_load(-1, -1, None, flags)
            self.state.forget_load(instance_id)
            return self._read_one(instance_id)

    def start(self, instance_id: int) -> KernelInstance:
        with self._lock:
            self.io.reboot(LINUX_REBOOT_CMD_MULTIKERNEL, instance_id)
            return self._read_one(instance_id)

    def stop(self, instance_id: int, *, force: bool) -> KernelInstance:
        with self._lock:
            if self.profile() == "rfc-v2":
                raise KernelError(errno.EINVAL, "rfc-v2 has no halt", instance_id=instance_id)
            command = LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE if force else LINUX_REBOOT_CMD_MULTIKERNEL_HALT
            self.io.reboot(command, instance_id)
            return self._read_one(instance_id)

    # -- watch ------------------------------------------------------------------------------

    async def watch(self) -> AsyncIterator[KernelEvent]:
        """Poll instances/*/status; yield what changed since this backend last looked.

        Changes this backend made are seen by its own read-back (under the same lock) before
        the next poll, so only changes the kernel made on its own are reported.
        """
        await asyncio.to_thread(self.poll_changes)
        while not self._closed.is_set():
            await asyncio.sleep(self.poll_interval_s)
            for event in await asyncio.to_thread(self.poll_changes):
                yield event

    def poll_changes(self, running: Collection[int] | None = None) -> list[KernelEvent]:
        """What changed since this backend last looked, by the kernel's own doing (the tree
        raises no notification, spec 8.1.2). With `running`, only those instances' status files
        are read (the kernel changes nothing else on its own, spec 8.2.2), beside one listing of
        the instances directory for the ones that went away; else every id and status file."""
        if running is not None:
            return self._poll_running(running)
        with self._lock:
            before = dict(self._known)
            seen = self.fs.read_statuses()
            self._known = seen
        events = []
        for instance_id, (name, status) in sorted(seen.items()):
            old = before.get(instance_id)
            if old is not None and old[1] != status:
                events.append(KernelEvent(instance_id, name, old[1], status, reason="kernel status changed"))
        for instance_id, (name, status) in sorted(before.items()):
            if instance_id not in seen:
                events.append(KernelEvent(instance_id, name, status, "deleted", reason="instance disappeared"))
        return events

    def _poll_running(self, running: Collection[int]) -> list[KernelEvent]:
        """A remembered name stands for its id while the directory is listed (an id never
        changes for a name while the instance exists), so each running instance costs one
        status read, and an instance that is not running costs nothing beyond the listing."""
        with self._lock:
            events = self._gone(set(self.fs.instance_names()))
            named: list[tuple[int, str]] = []
            for instance_id in sorted(running):
                known = self._known.get(instance_id)
                name = known[0] if known is not None else self.fs.find_instance_name(instance_id)
                if name is not None:  # else not there (any more): the listing reports it once known
                    named.append((instance_id, name))
            statuses = self.fs.read_statuses_of([name for _, name in named])
            for (instance_id, name), status in zip(named, statuses, strict=True):
                if status is None:
                    continue
                known = self._known.get(instance_id)
                if known is not None and known[1] != status:
                    events.append(KernelEvent(instance_id, name, known[1], status, reason="kernel status changed"))
                self._known[instance_id] = (name, status)
        return events

    def read_status(self, instance_id: int) -> str | None:
        """One instance's status file as the kernel says it now (what a poll read may have been
        overtaken by), remembered as seen; None when the instance is not there."""
        with self._lock:
            known = self._known.get(instance_id)
            name = known[0] if known is not None else self.fs.find_instance_name(instance_id)
            status = self.fs.read_status(name) if name is not None else None
            if name is None or status is None:
                return None
            self._known[instance_id] = (name, status)
            return status

    def _gone(self, listed: set[str]) -> list[KernelEvent]:
        """The remembered instances whose directory is no longer listed, forgotten. (Each poll
        asks this of every remembered instance: the common answer, none, costs one set difference.)"""
        if not {name for name, _ in self._known.values()} - listed:
            return []
        events = []
        for instance_id, (name, status) in sorted(self._known.items()):
            if name not in listed:
                del self._known[instance_id]
                events.append(KernelEvent(instance_id, name, status, "deleted", reason="instance disappeared"))
        return events

    # -- console (spec 8.8) -------------------------------------------------------------------

    def open_console(self, instance_id: int) -> ConsoleFile:
        """A non-blocking console file connected to `instance_id` (the newest reader gets the
        output, 8.8.4). KernelError with the device's errno: ENOENT without the device, ENODEV
        for an unknown id."""
        try:
            console = self.io.open_console()
        except OSError as exc:
            raise kernel_error_from_os(exc, "cannot open the console device") from exc
        try:
            console.write(f"{instance_id}\n".encode())
        except OSError as exc:
            console.close()
            raise kernel_error_from_os(exc, f"cannot connect the console to instance {instance_id}") from exc
        return console

    def close(self) -> None:
        self._closed.set()
        self.io.close()

    # -- reading instances ------------------------------------------------------------------

    def _read_all(self) -> list[KernelInstance]:
        profile = self.fs.profile()
        regions = self._instance_chunks(profile)
        kimages = self.procfs.kimages()
        segments = read_kernel_segments(self.io)
        instances = [
            self._instance(files, profile, regions, kimages, segments) for files in self.fs.read_instances()
        ]
        names = {instance.name for instance in instances}
        self._parsed_trees = {name: parsed for name, parsed in self._parsed_trees.items() if name in names}
        self._known = {instance.id: (instance.name, instance.kernel_state) for instance in instances}
        self._holdings_by_name = {instance.name: instance for instance in instances}
        return sorted(instances, key=lambda instance: instance.id)

    def _read_one(self, instance_id: int) -> KernelInstance:
        """One instance: its directory found by name (remembered, else by reading the id files
        alone), so reading one of n instances parses one device tree, not n."""
        files = None
        known = self._known.get(instance_id)
        if known is not None:
            files = self.fs.read_instance(known[0])
        if files is None or files.id != instance_id:
            name = self.fs.find_instance_name(instance_id)
            files = self.fs.read_instance(name) if name is not None else None
        if files is None or files.id != instance_id:
            self._known.pop(instance_id, None)
            raise KernelError(errno.ENOENT, f"no instance with id {instance_id}", instance_id=instance_id)
        profile = self.fs.profile()
        instance = self._instance(
            files, profile, self._instance_chunks(profile, only=instance_id), self.procfs.kimages(),
            read_kernel_segments(self.io)
        )
        self._known[instance.id] = (instance.name, instance.kernel_state)
        return instance

    def _instance_chunks(self, profile: KernelProfile, only: int | None = None) -> dict[int, tuple[MemChunk, ...]]:
        """Instance id -> its chunks from iomem (spec 3.2), each with the NUMA node of the tree
        pool chunk it was carved from (the pool DTB's numa-node-id, spec 5.1); `only` one id."""
        if only is not None:
            own = self.procfs.regions_of(only)
            regions = {only: own} if own else {}
        else:
            regions = self.procfs.instance_regions()
        if profile != "tree" or not regions:
            return regions
        pool = parse_pool_dtb(self.fs.read_root_tree()).chunks

        def node_of(chunk: MemChunk) -> int | None:
            owner = next((p for p in pool if p.base <= chunk.base < p.base + p.bytes), None)
            return owner.numa_node if owner is not None else None

        return {
            mk_id: tuple(MemChunk(c.base, c.bytes, node_of(c)) for c in chunks) for mk_id, chunks in regions.items()
        }

    def _names_and_ids(self) -> dict[str, int]:
        """Instance name -> id. The remembered ids serve while the directory names are exactly
        the remembered ones (an id never changes for a name while the instance exists)."""
        names = self.fs.instance_names()
        known = {name: instance_id for instance_id, (name, _) in self._known.items()}
        if set(names) == set(known):
            return known
        return self.fs.instance_ids()

    def _kernel_shows_segments(self) -> bool:
        return read_kernel_segments(self.io) is not None

    def _tree_free_memory(self) -> int:
        """Free pool memory for the errno of a failed transaction: the pool's chunks less the
        instance regions in /proc/iomem (two file reads, whatever the number of instances)."""
        pool_bytes = sum(chunk.bytes for chunk in parse_pool_dtb(self.fs.read_root_tree()).chunks)
        used = sum(chunk.bytes for chunks in self.procfs.instance_regions().values() for chunk in chunks)
        return max(0, pool_bytes - used)

    def _free_memory(self) -> int:
        return self.pool.read(self.fs.profile(), self._read_all()).free_memory_bytes

    def _resources_of(self, files: InstanceFiles) -> InstanceResources:
        tree = files.device_tree if files.device_tree is not None else files.device_tree_source
        cached = self._parsed_trees.get(files.name)
        if tree is not None and cached is not None and cached[0] == tree:
            return cached[1]
        resources = _instance_resources(files)
        if tree is not None:
            self._parsed_trees[files.name] = (tree, resources)
        return resources

    def _instance(
        self,
        files: InstanceFiles,
        profile: KernelProfile,
        regions: dict[int, tuple[MemChunk, ...]],
        kimages: dict[int, KimageRow] | None,
        kernel_segments: dict[int, tuple[Segment, ...]] | None,
    ) -> KernelInstance:
        resources = self._resources_of(files)
        row = kimages.get(files.id) if kimages is not None else None
        # Where the kernel lists its kimages (spec 2.6), a status without a row is no kimage: the
        # rfc-v2 bug-compatible dangling pointer after a failed load (spec 2.3 note) is on no list.
        has_kimage = row is not None if kimages is not None else files.status in KIMAGE_STATES
        return KernelInstance(
            id=files.id,
            name=files.name,
            kernel_state=files.status,
            cpus=resources.cpus,
            # The instance pool's chunks are only visible as iomem regions (spec 3.2).
            memory=regions.get(files.id, ()),
            memory_bytes=resources.memory_bytes,
            llc_way_mask=None,  # no kernel read implements LLC ways (spec 4.1, documentation only)
            devices=resources.devices,
            kimage=describe_kimage(profile, self.state.load_record(files.id), row, kernel_segments)
            if has_kimage
            else None,
            failure=_failure(files.status, has_kimage),
        )


def _failure(status: str, has_kimage: bool) -> str | None:
    if status == "failed":
        return "the kernel reports the instance failed"
    if status in KIMAGE_STATES and not has_kimage:
        return (f"the kernel says {status!r} but lists no kimage for it: a dangling kimage (the rfc-v2 "
                "bug-compatible failed load, spec 2.3)")
    return None


def _encodable(instance_id: int) -> int:
    """Ids travel in 11 flag bits; one that does not fit is refused, never masked (DESIGN "Ids")."""
    if not MIN_INSTANCE_ID <= instance_id <= MAX_INSTANCE_ID:
        raise KernelError(
            errno.EINVAL, f"instance id {instance_id} is outside {MIN_INSTANCE_ID}..{MAX_INSTANCE_ID}",
            instance_id=instance_id,
        )
    return instance_id


def _instance_resources(files: InstanceFiles) -> InstanceResources:
    if files.device_tree is not None:
        return parse_instance_dtb(files.device_tree)
    if files.device_tree_source is not None:
        return parse_instance_dts(files.device_tree_source)
    return InstanceResources(cpus=(), memory_base=None, memory_bytes=0)


def _refuse_duplicates(specs: list[InstanceSpec], existing: dict[str, int]) -> None:
    # v2 silently skips a known name and fails a known id in the IDR; the tree answers EEXIST
    # for both (spec 5.2, 5.3). Refusing first keeps the batch all or nothing.
    names = set(existing)
    ids = set(existing.values())
    for spec in specs:
        if spec.name in names:
            raise KernelError(errno.EEXIST, f"an instance named {spec.name!r} exists", instance_id=spec.id)
        if spec.id in ids:
            raise KernelError(errno.EEXIST, f"instance id {spec.id} is in use", instance_id=spec.id)
        names.add(spec.name)
        ids.add(spec.id)


@contextmanager
def _open_read_only(path: Path | None) -> Iterator[int]:
    """An O_RDONLY|O_CLOEXEC fd for `path` (-1 for None), closed whatever happens."""
    if path is None:
        yield -1
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        # The daemon's own image file (the request named it by hash): a host fault, not the
        # client's, and no server path goes into the problem (DESIGN "Errors": EIO is 502).
        reason = os.strerror(exc.errno) if exc.errno is not None else "unknown error"
        raise KernelError(errno.EIO, f"the stored image file cannot be opened ({reason})") from exc
    try:
        yield fd
    finally:
        os.close(fd)
