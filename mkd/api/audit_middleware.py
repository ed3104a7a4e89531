"""Audit log: one JSON line per mutating request (who, what, outcome) in the state directory."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MUTATING = ("POST", "PUT", "PATCH", "DELETE")
AUDIT_LOG_MODE = 0o600  # DESIGN "Security": it names tokens and peers


class AuditLog:
    """Appends JSON lines; past `max_bytes` the file is rotated (audit.log → audit.log.1 → …),
    keeping `files` files in all (DESIGN "Limits" audit_max_bytes)."""

    def __init__(self, path: Path, *, max_bytes: int = 64 << 20, files: int = 4) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.files = files
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, AUDIT_LOG_MODE))
        os.chmod(path, AUDIT_LOG_MODE)  # an older log made with the umask's mode

    def write(self, entry: dict[str, object]) -> None:
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self._lock:
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size and size + len(line) > self.max_bytes:
                self._rotate()
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)

    def _rotate(self) -> None:
        oldest = self.path.with_name(f"{self.path.name}.{self.files - 1}")
        oldest.unlink(missing_ok=True)
        for n in range(self.files - 2, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                older.rename(self.path.with_name(f"{self.path.name}.{n + 1}"))
        if self.files > 1:
            self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()


class AuditMiddleware:
    def __init__(self, app: ASGIApp, log: AuditLog) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            client = scope.get("client")
            self.log.write({
                "time": time.time(), "method": scope["method"], "path": scope["path"],
                "query": scope.get("query_string", b"").decode("latin-1"),
                "client": client[0] if client else "unix", "status": status,
                "token": scope.get("state", {}).get("token_name", ""),
            })
