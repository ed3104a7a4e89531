"""HTTP client for the CLI: TCP or unix socket, problem+json turned into exit codes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

# DESIGN "cli": 3 not found, 4 conflict/412, 5 invalid/413, 6 auth, 7 unreachable.
EXIT_NOT_FOUND, EXIT_CONFLICT, EXIT_INVALID, EXIT_AUTH, EXIT_UNREACHABLE = 3, 4, 5, 6, 7


def exit_code_for(status: int) -> int:
    if status == 404:
        return EXIT_NOT_FOUND
    if status in (409, 412):
        return EXIT_CONFLICT
    if status in (400, 413, 415, 422):
        return EXIT_INVALID
    if status in (401, 403):
        return EXIT_AUTH
    return 1


class CliError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Target:
    url: str = "http://127.0.0.1:8080"
    socket: Path | None = None
    token: str | None = None
    timeout: float = 120.0

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if self.socket is not None:
            transport = httpx.HTTPTransport(uds=str(self.socket))
            # Host: localhost, a name the daemon's Host guard always accepts (mkd/api/cross_site_guard.py).
            return httpx.Client(transport=transport, base_url="http://localhost", headers=headers,
                                timeout=self.timeout)
        return httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout)


def raise_for(reply: httpx.Response) -> None:
    if reply.status_code < 400:
        return
    try:
        body = reply.json()
        errno = f" [{body['errno']}]" if body.get("errno") else ""
        message = f"{reply.status_code} {body.get('title', '')}{errno}: {body.get('detail', '')}"
    except (ValueError, KeyError, AttributeError):
        message = f"{reply.status_code}: {reply.text[:500]}"
    raise CliError(message, exit_code_for(reply.status_code))


def call(target: Target, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        with target.client() as http:
            reply = http.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        where = f"unix:{target.socket}" if target.socket else target.url
        raise CliError(f"cannot reach mkd at {where}: {exc}", EXIT_UNREACHABLE) from exc
    raise_for(reply)
    return reply


def follow_events(target: Target, last_event_id: str | None) -> Iterator[tuple[str, str, str]]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    try:
        with target.client() as http, connect_sse(http, "GET", "/v1/events", headers=headers,
                                                  timeout=None) as source:
            if source.response.status_code >= 400:
                source.response.read()  # a streamed reply: read the problem body before decoding it
                raise_for(source.response)
            for sse in source.iter_sse():
                if sse.event == "message" and not sse.data:
                    continue  # a heartbeat comment (DESIGN "Events"), not an event
                yield sse.id, sse.event, sse.data
    except httpx.TransportError as exc:
        where = f"unix:{target.socket}" if target.socket else target.url
        raise CliError(f"cannot reach mkd at {where}: {exc}", EXIT_UNREACHABLE) from exc
