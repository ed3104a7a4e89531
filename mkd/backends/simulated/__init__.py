"""The simulated multikernel kernel: `kernel.SimulatedKernel`, its interface `kernel_files.SimulatedKernelIO`,
and the daemon's client over it `client.simulated_client` (the one client of mkd.backends.host)."""
