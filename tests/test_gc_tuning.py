"""Garbage-collector settings of `mkd serve` (mkd.gc_tuning): start-up's objects frozen out of
every collection, full collections made rare."""

from __future__ import annotations

import json
import subprocess
import sys

from mkd.gc_tuning import THRESHOLDS

_TUNED = """
import gc, json
import mkd.app  # what `mkd serve` has imported when it tunes
from mkd.gc_tuning import tune_gc
before = gc.get_freeze_count()
tune_gc()
print(json.dumps({"before": before, "frozen": gc.get_freeze_count(), "thresholds": gc.get_threshold()}))
"""


def test_tune_gc_freezes_what_start_up_made_and_sets_the_thresholds() -> None:
    # In a process of its own: the settings are the whole interpreter's.
    done = subprocess.run([sys.executable, "-c", _TUNED], capture_output=True, text=True, check=True, timeout=120)
    tuned = json.loads(done.stdout)
    assert tuned["before"] == 0 and tuned["frozen"] > 10_000
    assert tuple(tuned["thresholds"]) == THRESHOLDS
