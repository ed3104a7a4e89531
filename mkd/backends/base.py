"""The Backend protocol: the only way the daemon talks to a (simulated or real) multikernel kernel.

Every method has raw kernel semantics: it raises mkd.errors.KernelError with the errno the kernel
would return, in the kernel's check order. The daemon's own checks (strict isolation, ownership,
ref lookup) live above this layer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from typing import Literal, Protocol

from mkd.backends.kernel_io import ConsoleFile
from mkd.kernel_types import (
    HostInfo,
    InstanceSpec,
    KernelEvent,
    KernelInstance,
    LoadRequest,
    PoolSpec,
    PoolState,
)
from mkd.kexec.env import KexecEnv


class Backend(Protocol):
    """What the daemon needs from a kernel. All methods are synchronous and thread-safe."""

    name: Literal["simulated", "host"]

    def probe(self) -> HostInfo: ...

    def read_pool(self) -> PoolState: ...

    def apply_pool(self, spec: PoolSpec) -> PoolState: ...

    def list_instances(self) -> list[KernelInstance]: ...

    def read_instance(self, instance_id: int) -> KernelInstance: ...

    def create_instances(self, specs: list[InstanceSpec]) -> list[KernelInstance]: ...

    def update_instance(self, spec: InstanceSpec) -> KernelInstance: ...

    def delete_instance(self, instance_id: int) -> None: ...

    def kexec_file_load(self, request: LoadRequest) -> KernelInstance: ...

    def unload(self, instance_id: int) -> KernelInstance: ...

    def start(self, instance_id: int) -> KernelInstance: ...

    def stop(self, instance_id: int, *, force: bool) -> KernelInstance: ...

    def watch(self) -> AsyncIterator[KernelEvent]: ...

    def poll_changes(self, running: Collection[int] | None = None) -> list[KernelEvent]:
        """What the kernel changed on its own since the last look (the tree raises no
        notification, spec 8.1.2): instances whose status moved, and instances that went away.
        `running`: the ids of the instances the daemon records as running, the only ones the
        kernel changes on its own (spec 8.2.2, 8.4): only their status files are read, beside
        the instance directory's listing. None reads every instance's status. Blocking; call
        it off the loop."""
        ...

    def read_status(self, instance_id: int) -> str | None:
        """One instance's status as the kernel says it now (its status file alone), or None when
        the kernel does not list it. Blocking."""
        ...

    def open_console(self, instance_id: int) -> ConsoleFile:
        """A non-blocking reader of the instance's console (spec 8.8), connected."""
        ...

    def loader_env(self) -> KexecEnv:
        """The environment the kernel's loaders run under (memory map, lockdown, signature
        enforcement, paging): configured for the simulator, read from the machine on a host."""
        ...

    def close(self) -> None: ...
