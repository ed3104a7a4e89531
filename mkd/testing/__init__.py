"""Helpers for tests and benchmarks: synthetic kernel and initrd images (imagegen)."""
