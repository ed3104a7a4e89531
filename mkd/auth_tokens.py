"""Bearer tokens from the tokens file: `name:role:token` lines, role `read` or `write`."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mkd.errors import InvalidInput


@dataclass(frozen=True)
class Token:
    name: str
    role: Literal["read", "write"]
    secret: str


def load_tokens(path: Path) -> list[Token]:
    """Parse the tokens file; anything wrong (unreadable, malformed, empty, ambiguous) is InvalidInput."""
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


def find_token(tokens: list[Token], presented: str) -> Token | None:
    found = None
    for token in tokens:
        if hmac.compare_digest(token.secret.encode(), presented.encode()):
            found = token
    return found
