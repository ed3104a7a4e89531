"""Dashboard sessions: a signed cookie made from a token, since EventSource cannot send headers.

The cookie names the token (not its secret), its role and an expiry, signed with a key that lives
only in this daemon process: a restart ends every session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from mkd.auth_tokens import Token

COOKIE = "mkd_session"
TTL_S = 12 * 3600


class SessionSigner:
    def __init__(self, key: bytes | None = None) -> None:
        self.key = key or secrets.token_bytes(32)

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self.key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def issue(self, token: Token, *, now: float | None = None) -> str:
        expires = int((now or time.time()) + TTL_S)
        payload = f"{token.name}|{token.role}|{expires}"
        return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=") + "." + self._sign(payload)

    def verify(self, value: str, tokens: list[Token], *, now: float | None = None) -> Token | None:
        encoded, _, signature = value.partition(".")
        try:
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
            name, role, expires = payload.split("|")
            expiry = int(expires)
        except ValueError:
            return None
        # Bytes, not str: compare_digest refuses a str holding non-ASCII (a 500, issue 11).
        if (not hmac.compare_digest(self._sign(payload).encode(), signature.encode("utf-8", "surrogateescape"))
                or expiry < (now or time.time())):
            return None
        # The token must still be in the file with the same role: removing a token ends its sessions.
        return next((t for t in tokens if t.name == name and t.role == role), None)
