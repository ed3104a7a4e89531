"""Refuse what a hostile web page could make a browser send to a daemon on loopback.

Without a token on loopback, any site the operator visits could POST to the daemon (a text/plain
body needs no CORS preflight), and a DNS name rebound to 127.0.0.1 could read it. So: a mutating
request that a browser marks cross-site, or whose Origin is not this host, is refused; and a Host
header must be an IP literal, localhost, or a configured name.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from mkd.api.problems import problem_response
from mkd.errors import Forbidden

MUTATING = ("POST", "PUT", "PATCH", "DELETE")
# Probes and scrapes address the daemon by whatever name the prober uses; these answer to anyone
# even beyond loopback (DESIGN "Security"), so a rebound name learns nothing it could not ask.
PROBES = ("/healthz", "/readyz", "/metrics")
MAX_VERDICTS = 1024


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class CrossSiteGuard:
    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.allowed = {h.lower() for h in allowed_hosts} | {"localhost"}
        self._verdicts: dict[str, bool] = {}  # Host header -> known; the few a daemon sees, bounded

    def _known_host(self, host: str) -> bool:
        known = self._verdicts.get(host)
        if known is None:
            name = _host_name(host).lower()
            known = _is_ip(name) or name in self.allowed
            if len(self._verdicts) >= MAX_VERDICTS:
                self._verdicts.clear()
            self._verdicts[host] = known
        return known

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"] in ("GET", "HEAD") and scope["path"] in PROBES):
            await self.app(scope, receive, send)
            return
        raw_headers = scope.get("headers", [])
        if scope["method"] not in MUTATING:  # only the Host matters: found without decoding the rest
            host = next((v.decode("latin-1") for k, v in raw_headers if k == b"host"), "")
            headers = {}
        else:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers}
            host = headers.get("host", "")
        reason = None
        if host and not self._known_host(host):
            reason = f"Host {host!r} is not an address or a configured name of this daemon ([daemon] allowed_hosts)"
        elif scope["method"] in MUTATING:
            origin = headers.get("origin")
            if headers.get("sec-fetch-site") == "cross-site":
                reason = "cross-site requests may not change the daemon"
            elif origin and origin != "null" and urlsplit(origin).netloc.lower() != host.lower():
                reason = f"Origin {origin} is not this daemon ({host})"
            elif origin == "null":
                reason = "requests from an opaque origin may not change the daemon"
        if reason is not None:
            error = Forbidden(reason, slug="cross-site")
            await problem_response(error.problem(scope["path"]))(scope, receive, send)
            return
        await self.app(scope, receive, send)
