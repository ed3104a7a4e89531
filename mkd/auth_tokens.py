"""Bearer tokens from the tokens file: `name:role:token` lines, role `read` or `write`."""

from __future__ import annotations

import hmac
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mkd.errors import InvalidInput


@dataclass(frozen=True)
class Token:
    name: str
    role: Literal["read", "write"]
    secret: str


def check_private(path: Path) -> None:
    """DESIGN "Security": a tokens file others can read (or write) is refused, with the fix."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as exc:
        raise InvalidInput(f"cannot read the tokens file {path}: {exc.strerror}") from exc
    if mode & 0o077:
        raise InvalidInput(f"the tokens file {path} is open to its group or to others (mode {mode:04o}); "
                           f"it holds secrets: chmod 600 {path}")


def load_tokens(path: Path) -> list[Token]:
    """Parse the tokens file; anything wrong (unreadable, open to others, malformed, empty, ambiguous)
    is InvalidInput."""
    check_private(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the tokens file {path}: {exc}") from exc
    tokens: list[Token] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(":")
        role, _, secret = rest.partition(":")
        if not name or role not in ("read", "write") or len(secret) < 16:
            raise InvalidInput(f"{path}:{number}: expected name:read|write:token (token of 16+ characters)")
        if any(t.name == name for t in tokens):
            raise InvalidInput(f"{path}:{number}: token name {name!r} is used twice")
        if any(t.secret == secret for t in tokens):
            raise InvalidInput(f"{path}:{number}: this token is already given to another name")
        tokens.append(Token(name, "read" if role == "read" else "write", secret))
    if not tokens:
        raise InvalidInput(f"the tokens file {path} holds no token (lines 'name:read|write:token')")
    return tokens


def load_peer_token(path: Path) -> str:
    """`[fleet] peer_token_file`: one token (16+ characters) that fleet peers present to pull images.
    Refused like a tokens file when others can read it."""
    check_private(path)
    try:
        secret = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the peer token file {path}: {exc}") from exc
    if len(secret) < 16 or any(c.isspace() for c in secret):
        raise InvalidInput(f"the peer token file {path} must hold one token of 16+ characters and no spaces")
    return secret


def find_token(tokens: list[Token], presented: str) -> Token | None:
    found = None
    for token in tokens:
        if hmac.compare_digest(token.secret.encode(), presented.encode()):
            found = token
    return found


class TokenFile:
    """The tokens file's current tokens; `reload` (on SIGHUP) swaps them all at once, so a removed
    token stops working with the next request (its dashboard sessions too)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tokens = load_tokens(path)
        self._lock = threading.Lock()

    def reload(self) -> list[Token]:
        """Read the file again; on any error the old tokens stay (InvalidInput says why)."""
        with self._lock:
            self.tokens = load_tokens(self.path)
            return self.tokens
