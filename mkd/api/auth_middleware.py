"""Token check for requests that arrive from beyond loopback (DESIGN "Security")."""

from __future__ import annotations

import hmac
import ipaddress
import re

from starlette.types import ASGIApp, Receive, Scope, Send

from mkd.api.problems import problem_response
from mkd.api.session_cookie import COOKIE, SessionSigner
from mkd.auth_tokens import Token, TokenFile, find_token
from mkd.errors import Forbidden, MkdError, Unauthorized

OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/", "/v1/session")
OPEN_PREFIXES = ("/static/",)  # the dashboard's own files: the page asks for a token itself
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# DESIGN "Fleet", Images: what the peer token may do, and nothing else.
PEER_READABLE = re.compile(r"^/v1/images/[0-9a-f]{64}/content$")
PEER_METHODS = ("GET", "HEAD")


def _from_loopback(scope: Scope) -> bool:
    client = scope.get("client")
    if not client:  # unix socket: guarded by the socket's file mode (0660)
        return True
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return client[0] in ("testclient", "localhost")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack socket shows 127.0.0.1 as ::ffff:127.0.0.1
    return address.is_loopback


class TokenAuthMiddleware:
    def __init__(self, app: ASGIApp, token_file: TokenFile, signer: SessionSigner,
                 peer_token: str | None = None) -> None:
        self.app = app
        self.token_file = token_file  # read at each request: SIGHUP swaps its tokens
        self.signer = signer
        self.peer_token = peer_token  # `[fleet] peer_token_file`: reads image content only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (scope["type"] not in ("http", "websocket") or path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)
                or _from_loopback(scope)):
            await self.app(scope, receive, send)
            return
        presented = None
        for key, value in scope.get("headers", []):
            if key == b"authorization" and value[:7].lower() == b"bearer ":
                presented = value[7:].decode("latin-1").strip()
        if presented and self.peer_token and hmac.compare_digest(self.peer_token.encode(), presented.encode()):
            await self._as_peer(scope, receive, send)
            return
        tokens = self.token_file.tokens
        token = find_token(tokens, presented) if presented else self._from_cookie(scope, tokens)
        # The audit log (outside this middleware) names the token of refused attempts too.
        scope.setdefault("state", {})["token_name"] = token.name if token else ""
        error: MkdError | None = None
        if token is None:
            error = Unauthorized("a bearer token (or a dashboard session) is required from beyond loopback",
                                 headers={"WWW-Authenticate": "Bearer"})
        elif token.role == "read" and scope.get("method", "GET") not in SAFE_METHODS:
            error = Forbidden(f"token {token.name!r} is read-only")
        if error is not None:
            await problem_response(error.problem(scope["path"]), error.headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _as_peer(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})["token_name"] = "fleet-peer"
        if scope["type"] != "http" or scope.get("method") not in PEER_METHODS or not PEER_READABLE.match(scope["path"]):
            error = Forbidden("the fleet peer token only reads image content (GET /v1/images/{sha256}/content)")
            await problem_response(error.problem(scope["path"]), error.headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _from_cookie(self, scope: Scope, tokens: list[Token]) -> Token | None:
        for key, value in scope.get("headers", []):
            if key == b"cookie":
                for part in value.decode("latin-1").split(";"):
                    name, _, cookie = part.strip().partition("=")
                    if name == COOKIE:
                        return self.signer.verify(cookie, tokens)
        return None
