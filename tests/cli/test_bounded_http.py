"""mkd.bounded_http's timers, driven on a real event loop with a stand-in transport (the same
limits against a real daemon are in tests/e2e/test_abuse.py)."""

from __future__ import annotations

import asyncio
from unittest import mock

import uvicorn
from uvicorn.server import ServerState

from mkd.bounded_http import bounded_protocol
from mkd.config import LimitSettings


class Counted:
    def __init__(self) -> None:
        self.hits: list[str] = []

    def hit(self, limit: str) -> None:
        self.hits.append(limit)


async def _app(scope: object, receive: object, send: object) -> None:
    return None


def _protocol(limits: LimitSettings, counted: Counted) -> tuple[asyncio.Protocol, mock.MagicMock]:
    protocol_class = bounded_protocol(limits, counted, open_files=1024)
    config = uvicorn.Config(_app, http=protocol_class)
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = mock.MagicMock()
    transport.is_closing.return_value = False
    transport.get_extra_info.return_value = None  # neither a TCP socket nor an address
    protocol.connection_made(transport)
    return protocol, transport


def test_a_client_that_stops_reading_the_response_is_cut_off() -> None:
    async def scenario() -> tuple[Counted, mock.MagicMock]:
        counted = Counted()
        protocol, transport = _protocol(LimitSettings(body_stall_timeout_s=0.05, header_timeout_s=60), counted)
        protocol.pause_writing()
        await asyncio.sleep(0.3)
        return counted, transport

    counted, transport = asyncio.run(scenario())
    assert "body_stall_timeout_s" in counted.hits
    transport.abort.assert_called_once()


def test_a_client_that_resumes_reading_is_kept() -> None:
    async def scenario() -> tuple[Counted, mock.MagicMock]:
        counted = Counted()
        protocol, transport = _protocol(LimitSettings(body_stall_timeout_s=0.2, header_timeout_s=60), counted)
        protocol.pause_writing()
        await asyncio.sleep(0.05)
        protocol.resume_writing()
        await asyncio.sleep(0.3)
        return counted, transport

    counted, transport = asyncio.run(scenario())
    assert counted.hits == []
    transport.abort.assert_not_called()


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout() -> None:
    async def scenario() -> tuple[Counted, mock.MagicMock]:
        counted = Counted()
        _, transport = _protocol(LimitSettings(header_timeout_s=0.05), counted)
        await asyncio.sleep(0.3)
        return counted, transport

    counted, transport = asyncio.run(scenario())
    assert counted.hits == ["header_timeout_s"]
    transport.close.assert_called()
