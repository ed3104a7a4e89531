"""Helpers for HTTP-level tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

GiB = 1 << 30
MiB = 1 << 20
MEM = 64 * MiB  # memory_bytes for tests about something else (JSON creates require it)
POOL = {"cpus": list(range(2, 16)), "memory_base": 0x1_0000_0000, "memory_bytes": 4 * GiB}


def upload(client: TestClient, data: bytes) -> str:
    reply = client.post("/v1/images", content=data, headers={"content-type": "application/octet-stream"})
    assert reply.status_code in (200, 201), reply.text
    sha: str = reply.json()["sha256"]
    return sha


def create(client: TestClient, name: str, **resources: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "resources": {"memory_bytes": 256 * MiB, **resources}}
    reply = client.post("/v1/instances", json=body)
    assert reply.status_code == 201, reply.text
    result: dict[str, Any] = reply.json()
    return result


def assert_problem(reply: Any, status: int, errno: str | None = None) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json"), reply.headers
    body: dict[str, Any] = reply.json()
    assert body["status"] == status
    assert body["type"] and body["title"] and body["detail"]
    if errno is not None:
        assert body["errno"] == errno, body
    return body


def write_tokens(path: Path, text: str) -> Path:
    """A tokens file as an operator must make it: 0600 (DESIGN "Security" refuses wider)."""
    path.write_text(text)
    path.chmod(0o600)
    return path
