"""Idempotency-Key for POST (DESIGN "HTTP API").

Scope is (token, method, path, key). The first request claims the key in its own transaction
(status NULL = in flight). A service that changes something stores the response in the same
transaction as the change through `remember()`; anything else (a refusal, a dry run) is stored right
after the response. A replay returns the stored response with `Idempotent-Replayed: true` and emits
no event; the same key with another body is 422; a key whose first request is in flight is 409.

Uploads (POST /v1/images) are not buffered to hash them first: their claim starts without a
request hash, the service stores the image's sha256 as the hash with the response, and a retry
hashes its body as it drains it before it is replayed (or refused with 422).
"""

from __future__ import annotations

import contextvars
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, func, select

from mkd.db.models import IdempotencyRecord, utcnow
from mkd.db.session import transaction
from mkd.errors import Conflict, InvalidInput, OverLimit
from mkd.services.context import Daemon


@dataclass
class IdempotencyClaim:
    scope: str
    stored: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: dict[str, str]
    body: bytes


current_claim: contextvars.ContextVar[IdempotencyClaim | None] = contextvars.ContextVar(
    "mkd_idempotency_claim", default=None
)


# A refusal's response is kept only up to this size (DESIGN "Limits"); a change's always is.
MAX_STORED_REFUSAL = 64 * 1024


def scope_of(token: str, method: str, path: str, key: str) -> str:
    """`<token tag>:<sha256 of the whole scope>`: the tag makes one token's keys a range of the
    unique index, so its quota is counted without another column."""
    tag = hashlib.sha256(token.encode()).hexdigest()[:16]
    return tag + ":" + hashlib.sha256("\0".join((token, method, path, key)).encode()).hexdigest()


def _check_quota(daemon: Daemon, session: Session, scope: str) -> None:
    """DESIGN "Limits": idempotency_keys_per_token / idempotency_bytes_per_token → 429 for new keys."""
    limits = daemon.settings.limits
    tag = scope.partition(":")[0]
    mine = (col(IdempotencyRecord.scope) > tag + ":", col(IdempotencyRecord.scope) < tag + ";")
    keys, size, oldest = session.exec(
        select(func.count(), func.coalesce(func.sum(func.length(IdempotencyRecord.body)), 0),
               func.min(IdempotencyRecord.created_at)).where(*mine)).one()
    limit = ("idempotency_keys_per_token" if keys >= limits.idempotency_keys_per_token
             else "idempotency_bytes_per_token" if size >= limits.idempotency_bytes_per_token else None)
    if limit is None:
        return
    ttl = daemon.settings.daemon.idempotency_ttl_s
    wait = ttl - (utcnow() - _aware(oldest)).total_seconds() if oldest is not None else 1
    raise OverLimit(limit, f"this client holds {keys} Idempotency-Keys ({size} bytes of stored responses), "
                    f"its quota ([limits] {limit}); retry when the oldest expires, or send no key",
                    retry_after_s=max(1, int(wait) + 1))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _claim(daemon: Daemon, scope: str, request_hash: str) -> IdempotencyRecord | None:
    """Claim the key (None) or return its record, once expired ones are gone; in flight → 409."""
    ttl = timedelta(seconds=daemon.settings.daemon.idempotency_ttl_s)
    with transaction(daemon.engine) as session:
        session.exec(delete(IdempotencyRecord).where(
            col(IdempotencyRecord.scope) == scope, col(IdempotencyRecord.created_at) < utcnow() - ttl))
        existing = session.exec(select(IdempotencyRecord).where(IdempotencyRecord.scope == scope)).first()
        if existing is None:
            _check_quota(daemon, session, scope)
            session.add(IdempotencyRecord(scope=scope, request_hash=request_hash))
            try:
                session.flush()
            except IntegrityError as exc:
                raise Conflict("a request with this Idempotency-Key is in flight") from exc
            return None
        if existing.status is None and existing.request_hash == request_hash:
            raise Conflict("a request with this Idempotency-Key is in flight")
        return existing


def _response_of(record: IdempotencyRecord) -> StoredResponse:
    assert record.status is not None
    return StoredResponse(record.status, dict(record.headers), record.body)


def claim(daemon: Daemon, *, scope: str, request_hash: str) -> StoredResponse | None:
    """Claim the key; returns the stored response for a replay, raises while in flight or on mismatch."""
    existing = _claim(daemon, scope, request_hash)
    if existing is None:
        return None
    if existing.request_hash != request_hash:
        raise InvalidInput("this Idempotency-Key was used with another request body")
    return _response_of(existing)


def claim_upload(daemon: Daemon, *, scope: str) -> tuple[StoredResponse, str] | None:
    """Claim the key of an upload; for a finished one, its response and the sha256 of its body.
    An upload in flight has no hash yet (""), so it always meets the in-flight 409."""
    existing = _claim(daemon, scope, "")
    if existing is None:
        return None
    return _response_of(existing), existing.request_hash


def remember(session: Session, *, status: int, body: Any, headers: dict[str, str] | None = None,
             request_hash: str | None = None) -> None:
    """Store the response of the current request (if it carries a key) in the caller's transaction;
    `request_hash` fills in the hash of an upload's body (see claim_upload)."""
    active = current_claim.get()
    if active is None or active.stored:
        return
    raw = b"" if body is None else json.dumps(body).encode()
    kept = ({} if body is None else {"content-type": "application/json"}) | (headers or {})
    _store(session, active.scope, status, kept, raw, request_hash)
    active.stored = True


def store_after(daemon: Daemon, active: IdempotencyClaim, response: StoredResponse) -> None:
    if active.stored:
        return
    with transaction(daemon.engine) as session:
        _store(session, active.scope, response.status, response.headers, response.body)
    active.stored = True


def release(daemon: Daemon, active: IdempotencyClaim) -> None:
    """The request died before any response: let a retry run it."""
    with transaction(daemon.engine) as session:
        session.exec(delete(IdempotencyRecord).where(
            col(IdempotencyRecord.scope) == active.scope, col(IdempotencyRecord.status).is_(None)))


def _store(session: Session, scope: str, status: int, headers: dict[str, str], body: bytes,
           request_hash: str | None = None) -> None:
    record = session.exec(select(IdempotencyRecord).where(IdempotencyRecord.scope == scope)).first()
    if record is None:
        return
    record.status, record.headers, record.body = status, headers, body
    if request_hash is not None:
        record.request_hash = request_hash
    session.add(record)


def expire_idempotency(daemon: Daemon) -> None:
    cutoff = utcnow() - timedelta(seconds=daemon.settings.daemon.idempotency_ttl_s)
    with transaction(daemon.engine) as session:
        session.exec(delete(IdempotencyRecord).where(col(IdempotencyRecord.created_at) < cutoff))


def drop_in_flight(daemon: Daemon) -> None:
    """At start-up no request is in flight: claims left by a crash are released (their outcome is
    whatever reconciliation found; a retry meets the kernel's own answer)."""
    with transaction(daemon.engine) as session:
        session.exec(delete(IdempotencyRecord).where(col(IdempotencyRecord.status).is_(None)))
