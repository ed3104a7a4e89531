"""SimulatedBackend: the Backend protocol over the simulated kernel (DESIGN "Two backends")."""

from __future__ import annotations

import errno
from typing import Literal

from mkd.backends.simulated.events import EventStream
from mkd.backends.simulated.faults import Faults
from mkd.backends.simulated.kernel import SimulatedKernel
from mkd.backends.simulated.reboot import (
    LINUX_REBOOT_CMD_MULTIKERNEL,
    LINUX_REBOOT_CMD_MULTIKERNEL_HALT,
    LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE,
)
from mkd.config import Settings
from mkd.errors import KernelError
from mkd.kernel_types import (
    MAX_INSTANCE_ID,
    MIN_INSTANCE_ID,
    HostInfo,
    InstanceSpec,
    KernelInstance,
    LoadRequest,
    PoolSpec,
    PoolState,
)
from mkd.kexec.env import KexecEnv
from mkd.kexec.flags import KEXEC_FILE_UNLOAD, KEXEC_MULTIKERNEL, kexec_mk_id

_CAPABILITIES = {
    "rfc-v2": {
        "halt": False,
        "per_instance_unload": True,
        "hot_update": False,
        "numa": False,
        "active_reported": False,
    },
    "tree": {"halt": True, "per_instance_unload": True, "hot_update": True, "numa": True, "active_reported": True},
}


def _encodable(instance_id: int) -> int:
    """Ids travel in 11 flag bits; one that does not fit is refused, never masked (DESIGN "Ids")."""
    if not MIN_INSTANCE_ID <= instance_id <= MAX_INSTANCE_ID:
        raise KernelError(
            errno.EINVAL, f"instance id {instance_id} is outside {MIN_INSTANCE_ID}..{MAX_INSTANCE_ID}",
            instance_id=instance_id,
        )
    return instance_id


class SimulatedBackend:
    name: Literal["simulated", "host"] = "simulated"

    def __init__(self, settings: Settings, faults: Faults | None = None) -> None:
        self.settings = settings
        self.kernel = SimulatedKernel(settings.simulator, settings.simulator_state_path, faults)

    @property
    def faults(self) -> Faults:
        return self.kernel.faults

    def probe(self) -> HostInfo:
        sim = self.settings.simulator
        return HostInfo(
            backend="simulated",
            kernel_profile=sim.kernel_profile,
            arch=sim.arch,
            capabilities=dict(_CAPABILITIES[sim.kernel_profile]),
            topology=self.kernel.topology,
        )

    def read_pool(self) -> PoolState:
        return self.kernel.read_pool()

    def apply_pool(self, spec: PoolSpec) -> PoolState:
        return self.kernel.apply_pool(spec)

    def list_instances(self) -> list[KernelInstance]:
        return self.kernel.list_instances()

    def read_instance(self, instance_id: int) -> KernelInstance:
        return self.kernel.read_instance(instance_id)

    def create_instances(self, specs: list[InstanceSpec]) -> list[KernelInstance]:
        return self.kernel.create_instances(specs)

    def update_instance(self, spec: InstanceSpec) -> KernelInstance:
        return self.kernel.update_instance(spec)

    def delete_instance(self, instance_id: int) -> None:
        self.kernel.delete_instance(instance_id)

    def kexec_file_load(self, request: LoadRequest) -> KernelInstance:
        loaded = self.kernel.load(request)
        if loaded is None:
            raise KernelError(errno.EINVAL, "not a multikernel load: no instance was loaded")
        return loaded

    def unload(self, instance_id: int) -> KernelInstance:
        flags = KEXEC_FILE_UNLOAD | KEXEC_MULTIKERNEL | kexec_mk_id(_encodable(instance_id))
        self.kernel.kexec_file_load(None, None, None, flags)
        return self.kernel.read_instance(instance_id)

    def start(self, instance_id: int) -> KernelInstance:
        self.kernel.reboot(LINUX_REBOOT_CMD_MULTIKERNEL, instance_id)
        return self.kernel.read_instance(instance_id)

    def stop(self, instance_id: int, *, force: bool) -> KernelInstance:
        if self.settings.simulator.kernel_profile == "rfc-v2":
            raise KernelError(errno.EINVAL, "rfc-v2 has no halt", instance_id=instance_id)
        cmd = LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE if force else LINUX_REBOOT_CMD_MULTIKERNEL_HALT
        self.kernel.reboot(cmd, instance_id)
        return self.kernel.read_instance(instance_id)

    def loader_env(self) -> KexecEnv:
        return self.kernel.loader_env

    def watch(self) -> EventStream:
        return self.kernel.watch()

    def close(self) -> None:
        self.kernel.close()
