"""Request bodies are bounded while they are read, before anything buffers them (DESIGN "Limits").

A declared Content-Length over the limit is refused before a byte of the body is read; a body
that grows past it (chunked, or lying about its length) is refused as soon as it does. Either way
the 413 closes the connection, so the rest of the body is never read.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mkd.api.limit_refusals import LimitRefusals
from mkd.api.problems import problem_response
from mkd.config import LimitSettings
from mkd.errors import BodyOverLimit

# Content types that carry a device tree (DTS text or a DTB); every other body is JSON or YAML.
DEVICE_TREE_TYPES = ("text/plain", "text/x-dts", "application/octet-stream", "application/x-dtb")
UPLOAD = ("POST", "/v1/images")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            found: bytes = value
            return found
    return None


def _has_body(scope: Scope) -> bool:
    """RFC 9112 6.3: a request has a body only with a Content-Length or a Transfer-Encoding."""
    return any(key in (b"content-length", b"transfer-encoding") for key, _ in scope.get("headers", []))


def limit_for(scope: Scope, limits: LimitSettings) -> tuple[str, int]:
    """The setting that bounds this request's body, and its value."""
    if (scope["method"], scope["path"]) == UPLOAD:
        return "max_image_bytes", limits.max_image_bytes
    content_type = (_header(scope, b"content-type") or b"").split(b";")[0].strip().lower().decode("latin-1")
    if content_type in DEVICE_TREE_TYPES:
        return "max_dt_bytes", limits.max_dt_bytes
    return "max_json_bytes", limits.max_json_bytes


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limits: LimitSettings, refusals: LimitRefusals) -> None:
        self.app = app
        self.limits = limits
        self.refusals = refusals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        name, limit = limit_for(scope, self.limits)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, name, limit)
            return
        size = 0
        refused = False
        started = False

        async def bounded_receive() -> Message:
            nonlocal size, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    refused = True
                    if not started:
                        await self._refuse(scope, receive, send, name, limit)
                    # The app sees the client go away: whatever it answers is dropped below.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, bounded_receive, guarded_send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, name: str, limit: int) -> None:
        self.refusals.hit(name)
        error = BodyOverLimit(name, limit)
        response = problem_response(error.problem(scope["path"]), {"Connection": "close"})
        await response(scope, receive, send)
