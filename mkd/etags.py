"""ETags for responses that have no version of their own: a digest of what they say."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def etag_of_bytes(data: bytes, *, variant: str = "") -> str:
    """Strong ETag of a representation; `variant` keeps two formats of the same thing apart."""
    return '"' + hashlib.sha256(variant.encode() + b"\0" + data).hexdigest()[:32] + '"'


def etag_of_json(body: Any) -> str:
    return etag_of_bytes(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
