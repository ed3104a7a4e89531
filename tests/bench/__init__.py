"""Benchmarks run by `make bench` (`python -m tests.bench`); module names avoid pytest's `test_` prefix."""
