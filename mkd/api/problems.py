"""Every error leaves the daemon as application/problem+json (RFC 9457)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mkd.errors import PROBLEM_BASE, MkdError, errno_value

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


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(MkdError)
    async def mkd_error(request: Request, exc: MkdError) -> JSONResponse:
        return problem_response(exc.problem(request.url.path), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()
        ]
        return problem_response({
            "type": PROBLEM_BASE + "invalid-input", "title": "Invalid input", "status": 422,
            "detail": _describe(errors), "instance": request.url.path, "errno": "EINVAL",
            "errno_value": errno_value("EINVAL"), "errors": errors,
        })

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem_response({
            "type": PROBLEM_BASE + slug, "title": str(exc.detail), "status": exc.status_code,
            "detail": f"{request.method} {request.url.path}: {exc.detail}", "instance": request.url.path,
        }, headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response({
            "type": PROBLEM_BASE + "internal", "title": "Internal error", "status": 500,
            "detail": f"{type(exc).__name__}: the daemon hit a bug; see its log", "instance": request.url.path,
        })
