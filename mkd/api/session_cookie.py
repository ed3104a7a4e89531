"""Dashboard sessions: a signed cookie made from a token, since EventSource cannot send headers.

The cookie names the token (not its secret), its role, an expiry and a session id, signed with a
key that lives only in this daemon process: a restart ends every session. The daemon keeps the ids
of live sessions, so logout ends a session on the server too (a copied cookie stops working).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time

from mkd.auth_tokens import Token

COOKIE = "mkd_session"
TTL_S = 12 * 3600
# Live sessions kept at most (each made by someone holding a token); past it the oldest ends.
MAX_LIVE_SESSIONS = 10_000


class SessionSigner:
    def __init__(self, key: bytes | None = None) -> None:
        self.key = key or secrets.token_bytes(32)
        self._live: dict[str, float] = {}  # session id -> expiry, oldest first
        self._lock = threading.Lock()

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self.key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def issue(self, token: Token, *, now: float | None = None) -> str:
        now = now or time.time()
        expires = int(now + TTL_S)
        session_id = secrets.token_urlsafe(12)
        with self._lock:
            for old_id, expiry in list(self._live.items()):
                if expiry < now or len(self._live) >= MAX_LIVE_SESSIONS:
                    del self._live[old_id]
            self._live[session_id] = expires
        payload = f"{token.name}|{token.role}|{expires}|{session_id}"
        return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=") + "." + self._sign(payload)

    def _session_of(self, value: str, now: float | None) -> tuple[str, str, str] | None:
        """(token name, role, session id) of a genuine, unexpired, live cookie value."""
        encoded, _, signature = value.partition(".")
        try:
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
            name, role, expires, session_id = payload.split("|")
            expiry = int(expires)
        except ValueError:
            return None
        # Bytes, not str: compare_digest refuses a str holding non-ASCII (a 500, issue 11).
        if not hmac.compare_digest(self._sign(payload).encode(), signature.encode("utf-8", "surrogateescape")):
            return None
        if expiry < (now or time.time()) or session_id not in self._live:
            return None
        return name, role, session_id

    def verify(self, value: str, tokens: list[Token], *, now: float | None = None) -> Token | None:
        found = self._session_of(value, now)
        if found is None:
            return None
        name, role, _ = found
        # The token must still be in the file with the same role: removing a token ends its sessions.
        return next((t for t in tokens if t.name == name and t.role == role), None)

    def revoke(self, value: str) -> None:
        """Logout: end this session on the server, whoever holds a copy of the cookie."""
        found = self._session_of(value, None)
        if found is not None:
            with self._lock:
                self._live.pop(found[2], None)
