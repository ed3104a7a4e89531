"""The simulated multikernel kernel: `kernel.SimulatedKernel`, its interface `kernel_files.SimulatedKernelIO`,
the daemon's client over it `client.simulated_client`, and `backend.SimulatedBackend` (rule-level test harness)."""
