"""The read model: instances and the pool as the API shows them, serialised once per change and
kept in step with the database (issue 15: reads cost close to nothing at 2,047 instances).

One place keeps it current: a commit hook on the daemon's sessions notes every instance, declared
(desired-state) and pool row a transaction wrote, whichever service wrote it, and the next read
re-reads just those rows off the event loop. A read that finds nothing noted answers from memory
with bytes serialised once, without a thread hand-off or a query.

Read-your-writes: the hook runs inside the writer's commit, before its HTTP response is sent, so
a client that saw a write's response never reads what was there before it.
"""

from __future__ import annotations

import bisect
import hashlib
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy import event, inspect, or_
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlmodel import col, select

from mkd.db.models import DeclaredRecord, InstanceRecord, PoolRecord
from mkd.db.session import transaction
from mkd.etags import etag_of_bytes
from mkd.services.records import etag_of, instance_public, not_found, parse_ref


class Wire(Protocol):
    """The API's serialisation of the bodies (the bytes its response models would produce)."""

    def instance(self, body: dict[str, Any]) -> bytes: ...

    def instance_list(self, items: Sequence[bytes], next_cursor: str | None) -> bytes: ...

    def pool(self, body: dict[str, Any]) -> bytes: ...


@dataclass(frozen=True)
class InstanceView:
    id: int
    name: str
    state: str
    labels: Mapping[str, str] | None  # a declared instance's labels; None: not declared
    body: bytes
    etag: str
    digest: bytes  # of `body`: a list's ETag changes with any item of its page


@dataclass(frozen=True)
class InstancePage:
    items: Sequence[InstanceView]
    next_cursor: str | None
    body: bytes
    etag: str


_T = TypeVar("_T")
PageKey = tuple[int, int, str | None, tuple[tuple[str, str], ...]]
MAX_CACHED_PAGES = 256  # distinct (cursor, limit, state, labels) pages kept per snapshot


@dataclass(frozen=True)
class Serialised:
    body: bytes
    etag: str


@dataclass(frozen=True)
class _Snapshot:
    views: dict[int, InstanceView]
    by_name: dict[str, int]
    order: list[int]  # ids, ascending
    # Pages served from this snapshot: pollers ask for the same ones again and again.
    pages: dict[PageKey, InstancePage] = field(default_factory=dict)


class ReadModel:
    def __init__(self, engine: Engine, capabilities: Mapping[str, bool], wire: Wire) -> None:
        self._engine = engine
        self._capabilities = capabilities
        self._wire = wire
        self._lock = threading.Lock()  # the notes below
        self._refreshing = threading.Lock()  # one refresh at a time
        self._changed_ids: set[int] = set()
        self._changed_names: set[str] = set()
        self._marks = 0  # commits that wrote an instance, declared or pool row
        self._pool_marks = 0  # those that may have moved what the pool shows
        self._clean = -1  # `_marks` as of the snapshot (-1: nothing loaded yet)
        self._snapshot = _Snapshot({}, {}, [])
        self._pool: tuple[int, Serialised] | None = None
        self._pool_lock = threading.Lock()
        self._memos: dict[str, tuple[int, Any]] = {}
        _models[engine] = self
        install_commit_hook()

    # -- kept in step by the commit hook --

    def note(self, ids: set[int], names: set[str], *, pool: bool = True) -> None:
        """`pool`: the commit may have moved what the pool shows (see _collect)."""
        with self._lock:
            self._changed_ids |= ids
            self._changed_names |= names
            self._marks += 1
            if pool:
                self._pool_marks += 1

    @property
    def generation(self) -> int:
        """Moves with every commit that wrote an instance, declared or pool row: a body computed
        at one generation is what a read shows for as long as the generation holds."""
        return self._marks

    def memo(self, key: str, compute: Callable[[], _T]) -> _T:
        """`compute()` (a query over instance, declared or pool rows) as of the current generation:
        asked again only after a commit wrote such a row, so an idle daemon's periodic work (the
        status poll's ACTIVE ids, the reconciler's tick) runs no query. Blocking: off the event loop."""
        generation = self._marks  # read before the query: a commit meanwhile makes the next call ask again
        cached = self._memos.get(key)
        if cached is not None and cached[0] == generation:
            value: _T = cached[1]
            return value
        value = compute()
        self._memos[key] = (generation, value)
        return value

    @property
    def current(self) -> bool:
        """Whether memory holds what the database holds: reads answer without a query."""
        return self._clean == self._marks

    def refresh(self) -> None:
        """Re-read what commits noted (everything, the first time). Blocking: off the event loop."""
        with self._refreshing:
            with self._lock:
                if self.current:
                    return
                marks, ids, names = self._marks, self._changed_ids, self._changed_names
                self._changed_ids, self._changed_names = set(), set()
                first = self._clean < 0
            try:
                self._snapshot = self._reread(None if first else (ids, names))
            except BaseException:
                with self._lock:  # noted again, so the next read retries
                    self._changed_ids |= ids
                    self._changed_names |= names
                raise
            self._clean = marks

    def _reread(self, changed: tuple[set[int], set[str]] | None) -> _Snapshot:
        query = select(InstanceRecord)
        if changed is not None:
            ids, names = changed
            if not ids and not names:
                return self._snapshot  # only the pool changed
            query = query.where(or_(col(InstanceRecord.id).in_(ids), col(InstanceRecord.name).in_(names)))
        with transaction(self._engine) as session:
            fresh = [self._view(record) for record in session.exec(query).all()]
        old = self._snapshot
        views = {} if changed is None else dict(old.views)
        if changed is not None:
            for gone in changed[0] - {view.id for view in fresh}:
                views.pop(gone, None)
        for view in fresh:
            views[view.id] = view
        order = old.order if changed is not None and views.keys() == old.views.keys() else sorted(views)
        return _Snapshot(views, {view.name: view.id for view in views.values()}, order)

    def _view(self, record: InstanceRecord) -> InstanceView:
        body = self._wire.instance(instance_public(record, self._capabilities))
        labels = dict(record.declared.labels) if record.declared is not None else None
        return InstanceView(id=record.id, name=record.name, state=record.state, labels=labels, body=body,
                            etag=etag_of(record), digest=hashlib.blake2b(body, digest_size=16).digest())

    # -- reads: only when `current` (else `refresh` first) --

    def instance(self, ref: str) -> InstanceView:
        """GET /v1/instances/{ref}: the same refusals as every other endpoint (parse_ref)."""
        parsed = parse_ref(ref)
        snapshot = self._snapshot
        found = parsed if isinstance(parsed, int) else snapshot.by_name.get(parsed)
        view = snapshot.views.get(found) if found is not None else None
        if view is None:
            raise not_found(parsed)
        return view

    def page(self, *, after: int, limit: int, state: str | None,
             labels: Mapping[str, str] | None, encode_cursor: Callable[[int], str]) -> InstancePage:
        """GET /v1/instances: ids above `after`, oldest first; a label selector matches only
        declared instances carrying every label given."""
        snapshot = self._snapshot
        key: PageKey = (after, limit, state, tuple(sorted((labels or {}).items())))
        cached = snapshot.pages.get(key)
        if cached is not None:
            return cached
        items: list[InstanceView] = []
        more = False
        for instance_id in snapshot.order[bisect.bisect_right(snapshot.order, after):]:
            view = snapshot.views[instance_id]
            if state is not None and view.state != state:
                continue
            if labels and (view.labels is None or any(view.labels.get(k) != v for k, v in labels.items())):
                continue
            if len(items) == limit:
                more = True
                break
            items.append(view)
        cursor = encode_cursor(items[-1].id) if more else None
        tag = b"".join(view.digest for view in items) + b"\0" + (cursor or "").encode()
        page = InstancePage(items=items, next_cursor=cursor,
                            body=self._wire.instance_list([view.body for view in items], cursor),
                            etag=etag_of_bytes(tag, variant="instance-list"))
        if len(snapshot.pages) >= MAX_CACHED_PAGES:
            snapshot.pages.clear()
        snapshot.pages[key] = page
        return page

    def pool(self, load: Callable[[], tuple[dict[str, Any], str]]) -> Serialised:
        """GET /v1/pool, read from the kernel again only after a commit that may have moved it:
        the pool definition, or an instance created, deleted or resized (spec 8: the global pool
        gives and takes back only then; loading, starting and stopping use the instance's own
        memory). Blocking: off the loop. One reader reads the kernel at a time; the others wait
        for its answer instead of reading again."""
        with self._pool_lock:
            marks = self._pool_marks
            cached = self._pool
            if cached is not None and cached[0] == marks:
                return cached[1]
            body, etag = load()
            serialised = Serialised(self._wire.pool(body), etag)
            self._pool = (marks, serialised)
            return serialised

    def pool_current(self) -> Serialised | None:
        cached = self._pool
        return cached[1] if cached is not None and cached[0] == self._pool_marks else None


# -- the commit hook: one listener for every session, each engine's model found by its engine --

_models: weakref.WeakKeyDictionary[Engine, ReadModel] = weakref.WeakKeyDictionary()
_NOTES = "mkd.read_model.changed"


_HOLDINGS = ("resources", "memory")  # an instance's columns that say what it takes from the pool


def _collect(session: Session, _context: Any) -> None:
    """after_flush: the rows this flush wrote (session.new/dirty/deleted and the attributes'
    history still show what the flush wrote)."""
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, InstanceRecord | DeclaredRecord | PoolRecord):
            # A pool row alone notes nothing by id: the commit still counts (what is free moves).
            ids, names, pool = session.info.setdefault(_NOTES, (set(), set(), []))
            if isinstance(obj, InstanceRecord):
                ids.add(obj.id)
                if obj in session.new or obj in session.deleted or any(_moved(obj, name) for name in _HOLDINGS):
                    pool.append(True)
            elif isinstance(obj, DeclaredRecord):
                names.add(obj.name)
            else:
                pool.append(True)


def _moved(obj: InstanceRecord, name: str) -> bool:
    """Whether the flush changed the column's value (set again to an equal value is no change)."""
    history = inspect(obj).attrs[name].history
    return bool(history.added or history.deleted) and list(history.added) != list(history.deleted)


def _committed(session: Session) -> None:
    notes = session.info.pop(_NOTES, None)
    if notes is None:
        return
    model = _models.get(session.bind) if isinstance(session.bind, Engine) else None
    if model is not None:
        model.note(notes[0], notes[1], pool=bool(notes[2]))


def _rolled_back(session: Session, *_args: Any) -> None:
    session.info.pop(_NOTES, None)


_hook_lock = threading.Lock()
_hooked = False


def install_commit_hook() -> None:
    """Idempotent: the listeners are process-wide (every daemon's sessions), dispatched by engine."""
    global _hooked
    with _hook_lock:
        if _hooked:
            return
        event.listen(Session, "after_flush", _collect)
        event.listen(Session, "after_commit", _committed)
        event.listen(Session, "after_rollback", _rolled_back)
        _hooked = True
