"""The simulated multikernel kernel (default backend): `backend.SimulatedBackend`, `kernel.SimulatedKernel`."""
