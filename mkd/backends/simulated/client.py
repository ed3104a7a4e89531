"""`backend = "simulated"`: the one kernel client over the simulated kernel (DESIGN "Two backends")."""

from __future__ import annotations

from mkd.backends.host.backend import HostBackend
from mkd.backends.simulated.faults import Faults
from mkd.backends.simulated.kernel import SimulatedKernel
from mkd.backends.simulated.kernel_files import SimulatedKernelIO
from mkd.config import Settings

# The machine string the client would read from uname(2) on the simulated architecture.
MACHINES = {"x86_64": "x86_64", "arm64": "aarch64"}
CLIENT_STATE_FILE = "simulated-client.json"


def simulated_client(
    settings: Settings, faults: Faults | None = None, *, poll_interval_s: float | None = None
) -> HostBackend:
    kernel = SimulatedKernel(settings.simulator, settings.simulator_state_path, faults)
    return HostBackend(
        settings,
        SimulatedKernelIO(kernel),
        name="simulated",
        machine=MACHINES[settings.simulator.arch],
        poll_interval_s=poll_interval_s,
        state_file=settings.daemon.state_dir / CLIENT_STATE_FILE,
    )
