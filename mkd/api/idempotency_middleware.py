"""ASGI middleware that makes POST requests with an Idempotency-Key safe to retry."""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mkd.api.auth_middleware import OPEN_PATHS
from mkd.api.limit_refusals import count_refusal
from mkd.api.problems import SCHEMA_INVALID, problem_response
from mkd.api.routes.fleet import PREFIX as FLEET_PREFIX
from mkd.errors import InvalidInput, MkdError, PayloadTooLarge
from mkd.services.context import Daemon
from mkd.services.idempotency import (
    MAX_STORED_REFUSAL,
    IdempotencyClaim,
    StoredResponse,
    claim,
    claim_upload,
    current_claim,
    release,
    scope_of,
    store_after,
)

MAX_KEY = 255
KEPT_HEADERS = ("content-type", "location", "etag")
UPLOAD_PATH = "/v1/images"  # streamed: never buffered here (see mkd.services.idempotency)


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = _header(scope, b"idempotency-key") if scope["type"] == "http" and scope["method"] == "POST" else None
        app = scope.get("app")
        daemon = getattr(app.state, "daemon", None) if app is not None else None
        if (key is None or scope["method"] != "POST" or daemon is None or not daemon.ready
                or scope["path"] in OPEN_PATHS  # DESIGN "Limits": open paths take no keys
                or scope["path"].startswith(FLEET_PREFIX)):  # DESIGN "Fleet": writes go to etcd, not the database
            await self.app(scope, receive, send)
            return
        if not key or len(key) > MAX_KEY:
            await _send_problem(scope, send, InvalidInput(f"Idempotency-Key must be 1..{MAX_KEY} characters"))
            return
        token = scope.get("state", {}).get("token_name", "")
        key_scope = scope_of(token, scope["method"], scope["path"], key)
        try:
            if scope["path"] == UPLOAD_PATH:
                stored = await _claim_upload(daemon, key_scope, receive)
            else:
                body, receive = await _buffer(receive)
                digest = hashlib.sha256(scope["path"].encode() + b"?" + scope.get("query_string", b"") + b"\0" + body)
                stored = await run_in_threadpool(claim, daemon, scope=key_scope, request_hash=digest.hexdigest())
        except MkdError as exc:
            await _send_problem(scope, send, exc)
            return
        if stored is not None:
            await _replay(stored, send)
            return
        active = IdempotencyClaim(scope=key_scope)
        status = 0
        headers: dict[str, str] = {}
        parts: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", []):
                    lname = name.decode("latin-1").lower()
                    if lname in KEPT_HEADERS:
                        headers[lname] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
            await send(message)

        token_ = current_claim.set(active)
        try:
            await self.app(scope, receive, capture)
        except BaseException:
            await run_in_threadpool(release, daemon, active)
            raise
        finally:
            current_claim.reset(token_)
        body = b"".join(parts)
        if status and scope["path"] != UPLOAD_PATH and _keep(scope, status, body):
            await run_in_threadpool(store_after, daemon, active, StoredResponse(status, headers, body))
        elif not active.stored:
            # No response, or an upload that stored nothing (413, empty body): a retry runs again.
            await run_in_threadpool(release, daemon, active)


async def _claim_upload(daemon: Daemon, key_scope: str, receive: Receive) -> StoredResponse | None:
    """Claim an upload's key. For a finished one, drain and hash this body: the same bytes get the
    stored response, other bytes 422. Nothing is stored either way."""
    found = await run_in_threadpool(claim_upload, daemon, scope=key_scope)
    if found is None:
        return None
    stored, body_sha256 = found
    digest = hashlib.sha256()
    size, limit = 0, daemon.settings.limits.max_image_bytes
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            raise MkdError("the client went away", status=400, slug="invalid-input")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"image is larger than the limit of {limit} bytes")
        await run_in_threadpool(digest.update, chunk)  # hashlib drops the GIL: the loop stays free
        more = message.get("more_body", False)
    if digest.hexdigest() != body_sha256:
        raise InvalidInput("this Idempotency-Key was used with another request body")
    return stored


def _keep(scope: Scope, status: int, body: bytes) -> bool:
    """Whether a response stored after the fact (not by the change's own transaction) is kept:
    never one to a body that failed schema validation (a retry runs again, safely: nothing
    changed), a refusal only up to MAX_STORED_REFUSAL (DESIGN "Limits")."""
    if scope.get("state", {}).get(SCHEMA_INVALID):
        return False
    return status < 400 or len(body) <= MAX_STORED_REFUSAL


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            decoded: str = value.decode("latin-1")
            return decoded.strip()
    return None


async def _buffer(receive: Receive) -> tuple[bytes, Receive]:
    parts: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        more = message.get("more_body", False)  # bounded by BodyLimitMiddleware
    body = b"".join(parts)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


async def _replay(stored: StoredResponse, send: Send) -> None:
    headers = [(k.encode(), v.encode()) for k, v in stored.headers.items()]
    headers.append((b"idempotent-replayed", b"true"))
    headers.append((b"content-length", str(len(stored.body)).encode()))
    await send({"type": "http.response.start", "status": stored.status, "headers": headers})
    await send({"type": "http.response.body", "body": stored.body})


async def _send_problem(scope: Scope, send: Send, exc: MkdError) -> None:
    count_refusal(scope, exc)
    response = problem_response(exc.problem(scope["path"]), exc.headers)

    async def no_body() -> Any:
        return {"type": "http.disconnect"}

    await response(scope, no_body, send)
