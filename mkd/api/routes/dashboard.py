"""GET /: the web dashboard, and the static files it is made of (DESIGN.md "Recommended layout": web/).

Plain HTML, CSS and ES modules shipped in the package: nothing is fetched from elsewhere at run
time, so the page works on an air-gapped host. The routes stay out of the OpenAPI document, which
describes the API only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mkd.errors import NotFound

router = APIRouter(tags=["dashboard"])

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
PAGE = WEB_DIR / "templates" / "index.html"
STATIC_DIR = WEB_DIR / "static"

# Explicit types: module scripts are refused by browsers unless served as JavaScript, and the
# platform's mimetypes table (which varies between distributions) must not decide that.
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}

# The page runs only its own files; no inline script or style, no framing (clickjacking), and
# form submissions go through fetch, never a navigation.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # Revalidate on every load so a daemon upgrade never runs a stale script against a new API.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    media_type: str
    etag: str


def _read(path: Path, media_type: str) -> StaticFile:
    body = path.read_bytes()
    return StaticFile(body=body, media_type=media_type, etag=f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def _static_files() -> dict[str, StaticFile]:
    """Servable files by name: a fixed set read once at start-up, so no request path ever reaches the
    filesystem and a page load costs no file I/O (or worker thread) in a busy daemon."""
    if not STATIC_DIR.is_dir():
        return {}
    return {path.name: _read(path, MEDIA_TYPES[path.suffix])
            for path in STATIC_DIR.iterdir() if path.is_file() and path.suffix in MEDIA_TYPES}


STATIC_FILES = _static_files()
PAGE_FILE = _read(PAGE, "text/html; charset=utf-8")


def _serve(file: StaticFile, request: Request) -> Response:
    # `no-cache` (SECURITY_HEADERS) makes the browser revalidate; an unchanged file is then a 304.
    headers = {**SECURITY_HEADERS, "ETag": file.etag}
    if request.headers.get("if-none-match") == file.etag:
        return Response(status_code=304, headers=headers)
    return Response(file.body, media_type=file.media_type, headers=headers)


# async: answered on the event loop from memory, never queued behind the daemon's worker threads.
@router.get("/", include_in_schema=False)
async def dashboard_page(request: Request) -> Response:
    """The dashboard's single page; it reads everything else from /v1."""
    return _serve(PAGE_FILE, request)


@router.get("/static/{name}", include_in_schema=False)
async def dashboard_static(name: str, request: Request) -> Response:
    """One of the dashboard's scripts or stylesheets."""
    file = STATIC_FILES.get(name)
    if file is None:
        raise NotFound(f"no dashboard file named {name!r}")
    return _serve(file, request)
