"""The dashboard's files over HTTP: every ES module is served as JavaScript under the page's
security headers, and the page preloads each one (so a new module cannot be left out)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from mkd.api.routes.dashboard import CONTENT_SECURITY_POLICY, STATIC_DIR
from tests.conftest import MakeClient


def test_every_module_is_served_as_javascript_under_the_policy(make_client: MakeClient) -> None:
    client: TestClient = make_client(pool=None, simulator={"kernel_profile": "tree"})
    modules = sorted(path.name for path in STATIC_DIR.glob("*.js"))
    assert {"dashboard.js", "cpumap.js", "memmap.js", "eventlog.js", "instances.js", "live.js"} <= set(modules)
    for name in modules:
        reply = client.get(f"/static/{name}")
        assert reply.status_code == 200, name
        assert reply.headers["content-type"] == "text/javascript; charset=utf-8"
        assert reply.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert reply.headers["x-content-type-options"] == "nosniff"
        # Imports stay among the dashboard's own files: relative, and each one present.
        for imported in re.findall(r'^import .* from "\./([\w-]+\.js)";$', reply.text, flags=re.MULTILINE):
            assert imported in modules, f"{name} imports {imported}"
        assert not re.search(r'from "(https?:)?//', reply.text), f"{name} imports from elsewhere"
    # Module scripts from 'self' only; no inline script.
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY and "unsafe-inline" not in CONTENT_SECURITY_POLICY


def test_the_page_loads_and_preloads_every_module(make_client: MakeClient) -> None:
    client: TestClient = make_client(pool=None, simulator={"kernel_profile": "tree"})
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    entry = re.findall(r'<script type="module" src="/static/([\w-]+\.js)"></script>', page.text)
    preloaded = re.findall(r'<link rel="modulepreload" href="/static/([\w-]+\.js)">', page.text)
    assert entry == ["dashboard.js"]
    assert sorted(entry + preloaded) == sorted(path.name for path in STATIC_DIR.glob("*.js"))
    assert "<script>" not in page.text and " style=" not in page.text  # the CSP would refuse them


def test_an_unknown_file_is_a_problem(make_client: MakeClient) -> None:
    client: TestClient = make_client(pool=None, simulator={"kernel_profile": "tree"})
    reply = client.get("/static/nothing.js")
    assert reply.status_code == 404
    assert reply.headers["content-type"].startswith("application/problem+json")


def test_an_unchanged_file_revalidates_as_304(make_client: MakeClient) -> None:
    # `Cache-Control: no-cache` makes the browser ask again on every load; the ETag keeps that cheap.
    client: TestClient = make_client(pool=None, simulator={"kernel_profile": "tree"})
    for path in ("/", "/static/dashboard.js"):
        first = client.get(path)
        assert first.status_code == 200 and first.headers["cache-control"] == "no-cache"
        again = client.get(path, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == first.headers["etag"]
        assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200
