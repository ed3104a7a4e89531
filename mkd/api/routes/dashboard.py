"""GET /: the web dashboard, and the static files it is made of (DESIGN.md "Recommended layout": web/).

Plain HTML, CSS and ES modules shipped in the package: nothing is fetched from elsewhere at run
time, so the page works on an air-gapped host. The routes stay out of the OpenAPI document, which
describes the API only.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

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


def _static_files() -> dict[str, Path]:
    """Servable files by name: a fixed set read once, so no request path ever reaches the filesystem."""
    if not STATIC_DIR.is_dir():
        return {}
    return {path.name: path for path in STATIC_DIR.iterdir() if path.is_file() and path.suffix in MEDIA_TYPES}


STATIC_FILES = _static_files()


@router.get("/", include_in_schema=False)
def dashboard_page() -> Response:
    """The dashboard's single page; it reads everything else from /v1."""
    return FileResponse(PAGE, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


@router.get("/static/{name}", include_in_schema=False)
def dashboard_static(name: str) -> Response:
    """One of the dashboard's scripts or stylesheets."""
    path = STATIC_FILES.get(name)
    if path is None:
        raise NotFound(f"no dashboard file named {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=SECURITY_HEADERS)
