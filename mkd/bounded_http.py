"""uvicorn's httptools protocol with the connection limits of DESIGN "Limits".

uvicorn 0.54 (the version pinned here) has none of them: a new connection has no timer at all
until its first response (only `timeout_keep_alive`, armed after a response), so a client that
sends half a request holds its socket forever; headers may grow without bound (llhttp has no
size cap); a request body may stall forever; and `limit_concurrency` answers every request past
the cap, `/healthz` and the unix socket included, with a plain-text 503 without `Retry-After`.
uvicorn takes a protocol class (`http=`), so this subclass adds what is missing and leaves the
parsing, flow control and ASGI cycle to uvicorn:

- header_timeout_s from the connection's (or the request's) first byte to the end of its headers;
- keepalive_timeout_s between requests (uvicorn's own timer, given the setting);
- body_stall_timeout_s without a byte of a body the app is waiting for, or without the client
  taking response bytes (a paused write);
- max_connections busy TCP connections: past it, requests are still parsed (under the header
  timeout) and marked, and mkd.api.connection_limit answers them (probes as usual, else 503);
  unix-socket connections are never counted. Past the file-descriptor budget a new TCP
  connection is closed at once, so accept() never meets EMFILE and every listener keeps working.
"""

from __future__ import annotations

import asyncio
import resource
import socket
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mkd.api.connection_limit import OVER_CONNECTION_LIMIT
from mkd.config import LimitSettings

MAX_HEADER_BYTES = 64 * 1024  # request line and headers together; a real client sends a few hundred
# File descriptors kept for everything but TCP clients: the database, image files, dtc pipes,
# the audit log, unix-socket clients.
FD_RESERVE = 256
_TCP = (socket.AF_INET, socket.AF_INET6)
_HEADER_TOO_LARGE_BODY = (b'{"type":"https://mkd.dev/problems/over-limit","title":"Request header fields too large",'
                          b'"status":431,"limit":"max_header_bytes"}')
_HEADER_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/problem+json\r\n"
                     b"connection: close\r\ncontent-length: " + str(len(_HEADER_TOO_LARGE_BODY)).encode() + b"\r\n\r\n"
                     + _HEADER_TOO_LARGE_BODY)


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (DESIGN "Limits": the limits hold however the
    daemon is started, e.g. under systemd's soft 1024). Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            with open("/proc/sys/fs/nr_open") as fh:
                target = int(fh.read())
        except (OSError, ValueError):
            target = max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


class LimitCounter(Protocol):
    def hit(self, limit: str) -> None: ...


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[LimitSettings]
    refusals: ClassVar[LimitCounter]
    tcp_connections: ClassVar[set[BoundedHttpToolsProtocol]]
    connection_ceiling: ClassVar[int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._is_tcp = False
        self._reading_headers = True
        self._header_bytes = 0
        self._reading_body = False
        self._last_body_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None

    # -- connection --------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        self._is_tcp = sock is not None and sock.family in _TCP
        if self._is_tcp:
            if len(self.tcp_connections) >= self.connection_ceiling:
                self.refusals.hit("max_connections")
                transport.abort()
                return
            self.tcp_connections.add(self)
        self._arm(self.limits.header_timeout_s, self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.tcp_connections.discard(self)
        self._disarm()
        if self._write_timer is not None:
            self._write_timer.cancel()
        super().connection_lost(exc)

    # -- headers -----------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._reading_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._reading_headers and self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self.refusals.hit("max_header_bytes")
            self.transport.write(_HEADER_TOO_LARGE)
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._reading_headers:
            self._reading_headers = True
            self._header_bytes = 0
        if self._timer is None:
            self._arm(self.limits.header_timeout_s, self._header_timeout)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._header_bytes = 0
        self._disarm()
        if self._is_tcp and len(self.tcp_connections) > self.limits.max_connections:
            self.scope[OVER_CONNECTION_LIMIT] = True  # type: ignore[literal-required]
        super().on_headers_complete()
        if not self.transport.is_closing():
            self._reading_body = True
            self._last_body_at = self.loop.time()
            self._arm(self.limits.body_stall_timeout_s, self._body_stall)

    def _header_timeout(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.refusals.hit("header_timeout_s")
            self.transport.close()

    # -- body --------------------------------------------------------------------------------
    def on_body(self, body: bytes) -> None:
        self._last_body_at = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._reading_body:
            self._reading_body = False
            self._disarm()
        super().on_message_complete()

    def _body_stall(self) -> None:
        self._timer = None
        if not self._reading_body or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:
            self._last_body_at = now  # the app has not asked for more yet: not the client's stall
        quiet = now - self._last_body_at
        if quiet < self.limits.body_stall_timeout_s:
            self._arm(self.limits.body_stall_timeout_s - quiet, self._body_stall)
            return
        self.refusals.hit("body_stall_timeout_s")
        self.transport.close()  # the app's receive() says http.disconnect: a partial upload is removed

    # -- response ----------------------------------------------------------------------------
    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.limits.body_stall_timeout_s, self._write_stall)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_stall(self) -> None:
        self._write_timer = None
        if not self.transport.is_closing():
            self.refusals.hit("body_stall_timeout_s")
            self.transport.abort()  # close() would wait for the buffered bytes the client won't take

    # -- timers ------------------------------------------------------------------------------
    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(max(delay, 0.0), callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def bounded_protocol(limits: LimitSettings, refusals: LimitCounter,
                     open_files: int) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for one server, with its own limits and connection count."""
    ceiling = max(16, open_files - FD_RESERVE)

    class Configured(BoundedHttpToolsProtocol):
        pass

    Configured.limits = limits
    Configured.refusals = refusals
    Configured.tcp_connections = set()
    Configured.connection_ceiling = ceiling
    return Configured
