"""Conditional reads (DESIGN "HTTP API"): a GET whose If-None-Match names the response's ETag gets
304 Not Modified with that ETag and no body, whichever route answered (RFC 9110 13.1.2: weak
comparison, `*` matches any). One place for every GET with an ETag, lists included.

`GET /v1/pool` is the exception DESIGN makes: its ETag names the definition while `free` moves,
so a poller must always get the body.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE = ("GET", "HEAD")
EXEMPT = ("/v1/pool",)
_DROPPED = (b"content-length", b"content-type")  # a 304 has no body to describe


def not_modified(if_none_match: str, etag: str) -> bool:
    candidates = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in candidates or etag.removeprefix("W/") in candidates


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


class ConditionalGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in SAFE or scope["path"] in EXEMPT:
            await self.app(scope, receive, send)
            return
        wanted = _header(scope.get("headers", []), b"if-none-match")
        if wanted is None:
            await self.app(scope, receive, send)
            return
        matched = False

        async def conditional_send(message: Message) -> None:
            nonlocal matched
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = list(message.get("headers", []))
                etag = _header(headers, b"etag")
                if etag is not None and not_modified(wanted.decode("latin-1"), etag.decode("latin-1")):
                    matched = True
                    kept = [(key, value) for key, value in headers if key.lower() not in _DROPPED]
                    await send({"type": "http.response.start", "status": 304, "headers": kept})
                    return
            elif message["type"] == "http.response.body" and matched:
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": b""})
                return
            await send(message)

        await self.app(scope, receive, conditional_send)
