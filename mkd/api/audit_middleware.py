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
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, AUDIT_LOG_MODE))
        os.chmod(path, AUDIT_LOG_MODE)  # an older log made with the umask's mode

    def write(self, entry: dict[str, object]) -> None:
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)


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
