"""Desired state (DESIGN "Desired state"): what a declared instance should be, and the steps
that take the kernel there. Pure: no I/O, no services."""
