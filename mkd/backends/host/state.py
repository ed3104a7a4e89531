"""What the host backend must remember because the kernel does not expose it.

* rfc-v2 keeps no baseline: its root device_tree reads back a fixed sentence (spec 5.1), so the
  last applied PoolSpec is kept here.
* No profile exposes which files a kimage came from: /proc/kimage has the id, start, segment
  count and (tree) the command line, not the images (spec 2.6). Each successful load records
  its hashes here, so `kimage` survives a daemon restart.
The file lives in the state directory, next to the daemon's database.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mkd.kernel_types import PoolSpec, Segment


@dataclass(frozen=True)
class LoadRecord:
    kernel_sha256: str
    initrd_sha256: str | None
    cmdline: str
    loader: str
    segments: tuple[Segment, ...] = ()  # computed by the daemon's loaders (kimage.py)


class HostState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._pool: PoolSpec | None = None
        self._loads: dict[int, LoadRecord] = {}
        self._load_file()

    @property
    def pool(self) -> PoolSpec | None:
        return self._pool

    def set_pool(self, spec: PoolSpec) -> None:
        with self._lock:
            self._pool = spec
            self._save()

    def load_record(self, instance_id: int) -> LoadRecord | None:
        return self._loads.get(instance_id)

    def set_load_record(self, instance_id: int, record: LoadRecord) -> None:
        with self._lock:
            self._loads[instance_id] = record
            self._save()

    def forget_load(self, instance_id: int) -> None:
        with self._lock:
            if self._loads.pop(instance_id, None) is not None:
                self._save()

    def _load_file(self) -> None:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        pool = data.get("pool")
        if isinstance(pool, dict):
            self._pool = PoolSpec(
                cpus=tuple(pool["cpus"]),
                memory_base=pool["memory_base"],
                memory_bytes=pool["memory_bytes"],
                llc_way_mask=pool.get("llc_way_mask"),
                devices=tuple(pool.get("devices", ())),
            )
        for key, record in (data.get("loads") or {}).items():
            segments = tuple(Segment(**segment) for segment in record.pop("segments", ()))
            self._loads[int(key)] = LoadRecord(**record, segments=segments)

    def _save(self) -> None:
        data = {
            "pool": asdict(self._pool) if self._pool is not None else None,
            "loads": {str(key): asdict(record) for key, record in self._loads.items()},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(scratch, self.path)
