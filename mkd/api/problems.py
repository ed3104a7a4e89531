"""Every error leaves the daemon as application/problem+json (RFC 9457)."""

from __future__ import annotations

import errno
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from mkd.errors import PROBLEM_BASE, InvalidInput, KernelError, MkdError, OverLimit, errno_value

log = logging.getLogger("mkd")
PROBLEM_JSON = "application/problem+json"


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=int(body["status"]), media_type=PROBLEM_JSON, headers=headers)


def _describe(errors: list[Any]) -> str:
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


# A location part is an index or a key the client chose: long keys are cut, not echoed whole.
_MAX_LOC_PART = 64
SCHEMA_INVALID = "mkd_schema_invalid"  # request.state flag: the body failed schema validation


def bounded_errors(errors: Sequence[Any], limit: int) -> dict[str, Any]:
    """DESIGN "Limits" max_validation_errors: the first `limit` errors (loc, msg, type), and the total."""
    kept = [
        {"loc": [p if isinstance(p, int) or len(str(p)) <= _MAX_LOC_PART else str(p)[:_MAX_LOC_PART] + "…"
                 for p in e.get("loc", ())],
         "msg": str(e.get("msg", "invalid"))[:256], "type": e.get("type", "")}
        for e in errors[:limit]
    ]
    return {"errors": kept, "errors_total": len(errors)}


def max_validation_errors(request: Request) -> int:
    limit: int = request.app.state.settings.limits.max_validation_errors
    return limit


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(MkdError)
    async def mkd_error(request: Request, exc: MkdError) -> JSONResponse:
        if isinstance(exc, OverLimit):
            request.app.state.limit_refusals.hit(exc.limit)
        return problem_response(exc.problem(request.url.path), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        setattr(request.state, SCHEMA_INVALID, True)  # never stored for an Idempotency-Key
        return problem_response({
            "type": PROBLEM_BASE + "invalid-input", "title": "Invalid input", "status": 422,
            "detail": _describe(list(errors[:5])), "instance": request.url.path, "errno": "EINVAL",
            "errno_value": errno_value("EINVAL"), **bounded_errors(errors, max_validation_errors(request)),
        })

    @app.exception_handler(OperationalError)
    async def database_error(request: Request, exc: OperationalError) -> JSONResponse:
        if "disk is full" not in str(exc.orig):
            return await unexpected(request, exc)
        # DESIGN "Limits": a database write that meets a full disk is ENOSPC 409; reads go on.
        error = KernelError(errno.ENOSPC, "the state directory's disk is full: nothing was changed")
        return problem_response(error.problem(request.url.path))

    @app.exception_handler(ClientDisconnect)
    async def client_went_away(request: Request, _: ClientDisconnect) -> JSONResponse:
        # Nobody reads this answer; it keeps a vanished client (or a body refused by
        # BodyLimitMiddleware) out of the "unexpected error" log.
        return problem_response({
            "type": PROBLEM_BASE + "client-disconnected", "title": "Client disconnected", "status": 400,
            "detail": "the client went away before the request body was read", "instance": request.url.path,
        })

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem_response({
            "type": PROBLEM_BASE + slug, "title": str(exc.detail), "status": exc.status_code,
            "detail": f"{request.method} {request.url.path}: {exc.detail}", "instance": request.url.path,
        }, headers=dict(exc.headers or {}))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response({
            "type": PROBLEM_BASE + "internal", "title": "Internal error", "status": 500,
            "detail": f"{type(exc).__name__}: the daemon hit a bug; see its log", "instance": request.url.path,
        })

    app.add_exception_handler(Exception, unexpected)


def validation_problem(exc: ValidationError, request: Request) -> InvalidInput:
    """A body that failed schema validation (validated by hand, off the event loop): 422 EINVAL
    listing at most max_validation_errors errors, and never stored for an Idempotency-Key."""
    errors = exc.errors()
    detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])[:128] or 'body'}: {e['msg']}" for e in errors[:5])
    setattr(request.state, SCHEMA_INVALID, True)
    return InvalidInput(detail, extra={"errno": "EINVAL", "errno_value": errno_value("EINVAL"),
                                       **bounded_errors(errors, max_validation_errors(request))})
