"""The one kernel client (HostBackend) and the real OS's side of the kernel interface."""
