"""Garbage-collector settings for the daemon process (issue 15: reads' p99).

With 1,000–2,000 instances the daemon tracks ~180,000 objects (the read model, the simulated
kernel's model, FastAPI's and pydantic's schemas), and CPython's full collection walks them all:
measured 50–140 ms with the GIL held on the shared 2-core VM, every few seconds under a writer,
which is a reader's p99 by itself. Freezing what start-up made (modules, classes: ~65,000 objects
that live as long as the process) takes it out of every collection, and a larger first generation
makes full collections rare (CPython also waits until a quarter more objects survived since the
last one).
"""

from __future__ import annotations

import gc

# Objects allocated between first-generation collections (CPython's default 700), and the
# collections of each generation that trigger one of the next (defaults 10 and 10).
THRESHOLDS = (7000, 20, 100)


def tune_gc() -> None:
    """Once, after the imports and before serving: what exists now lives as long as the process."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
