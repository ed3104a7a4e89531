"""The placements this node held when it last heard from etcd, kept in its state directory
(DESIGN "Fleet", fencing: a node that starts without etcd stops every instance whose placement is
not its own "by the placements it stored last").

Written before the agent acts on a change (a new placement is stored before its instance is
declared), atomically (temporary file, fsync, rename, fsync of the directory), so a killed daemon
finds either the old set or the new one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

FILE_NAME = "fleet-placements.json"


class LastPlacements:
    def __init__(self, state_dir: Path, node: str) -> None:
        self.path = state_dir / FILE_NAME
        self.node = node
        self._written: dict[str, Any] | None = None

    def load(self) -> dict[str, dict[str, Any]]:
        """name -> placement, as stored last for this node; empty when none was (or another node's)."""
        try:
            stored = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        if not isinstance(stored, dict) or stored.get("node") != self.node:
            return {}
        placements = stored.get("placements") or {}
        return {str(name): dict(p) for name, p in placements.items()}

    def save(self, placements: dict[str, dict[str, Any]]) -> None:
        document = {"node": self.node, "placements": placements}
        if document == self._written:
            return
        payload = json.dumps(document, sort_keys=True).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, scratch = tempfile.mkstemp(prefix=f".{FILE_NAME}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())
            os.replace(scratch, self.path)
        except BaseException:
            Path(scratch).unlink(missing_ok=True)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self._written = {"node": self.node, "placements": {n: dict(p) for n, p in placements.items()}}
