"""The content-addressed image store: upload (streamed), list, read, delete."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import anyio.to_thread
from sqlalchemy.exc import IntegrityError

from mkd.db import repository
from mkd.db.models import ImageRecord
from mkd.db.session import transaction
from mkd.errors import KernelError
from mkd.images.store import ReceivedUpload, check_sha256, disk_full
from mkd.kexec.image_format import detect_image_format
from mkd.services.context import Daemon
from mkd.services.desired import images_in_specs
from mkd.services.idempotency import remember
from mkd.services.records import check_if_match
from mkd.services.signals import IMAGES_CHANGED


def image_etag(sha256: str) -> str:
    return f'"{sha256}"'  # an image's ETag is its hash


def image_headers(sha256: str) -> dict[str, str]:
    return {"location": f"/v1/images/{sha256}", "etag": image_etag(sha256)}


def image_public(record: ImageRecord) -> dict[str, Any]:
    return {"sha256": record.sha256, "size": record.size, "format": record.format,
            "created_at": record.created_at.isoformat()}


async def upload_image(*, daemon: Daemon, chunks: AsyncIterator[bytes]) -> tuple[dict[str, Any], bool]:
    """Store the body; returns (image, created). 201 when new, 200 when already stored."""
    upload = await daemon.store.receive(chunks, limit=daemon.settings.limits.max_image_bytes)
    return await anyio.to_thread.run_sync(_record, daemon, upload)


class ImageHashMismatch(KernelError):
    """A peer sent other bytes than the image it was asked for (corrupt store, or lying)."""

    def __init__(self, detail: str) -> None:
        super().__init__(errno.EBADMSG, detail)


async def store_pulled_image(*, daemon: Daemon, sha256: str,
                             chunks: AsyncIterator[bytes]) -> tuple[dict[str, Any], bool]:
    """An image a fleet peer sends: received through the same spool and limit as an upload, and
    made visible only when its bytes hash to `sha256` (else ImageHashMismatch, nothing kept)."""
    check_sha256(sha256)
    upload = await daemon.store.receive(chunks, limit=daemon.settings.limits.max_image_bytes)
    if upload.sha256 != sha256:
        await anyio.to_thread.run_sync(upload.spool.discard)
        raise ImageHashMismatch(f"the bytes received for image {sha256} hash to {upload.sha256}: not stored")
    return await anyio.to_thread.run_sync(_record, daemon, upload)


def _record(daemon: Daemon, upload: ReceivedUpload) -> tuple[dict[str, Any], bool]:
    """Place the received file and its row (blocking). File and row under one lock (DESIGN
    "Durability"): a delete of the same bytes either ran before (both gone, both made again
    here) or waits for this (and removes both)."""
    with daemon.store.lock:
        try:
            daemon.store.place(upload)
        except OSError as exc:
            upload.spool.discard()
            raise disk_full(exc) from exc
        except BaseException:
            upload.spool.discard()
            raise
        with transaction(daemon.engine) as session:
            existing = repository.get_image(session=session, sha256=upload.sha256)
            if existing is not None:
                image, created = image_public(existing), False
            else:
                row = ImageRecord(sha256=upload.sha256, size=upload.size,
                                  format=detect_image_format(upload.head))
                session.add(row)
                session.flush()
                image, created = image_public(row), True
            remember(session, status=201 if created else 200, body=image,
                     headers=image_headers(upload.sha256), request_hash=upload.sha256)
        daemon.signals.notify([IMAGES_CHANGED])
        return image, created


def has_image(*, daemon: Daemon, sha256: str) -> bool:
    check_sha256(sha256)
    with transaction(daemon.engine) as session:
        return repository.get_image(session=session, sha256=sha256) is not None


def get_image(*, daemon: Daemon, sha256: str) -> dict[str, Any]:
    check_sha256(sha256)
    with transaction(daemon.engine) as session:
        row = repository.get_image(session=session, sha256=sha256)
        if row is None:
            raise KernelError(errno.ENOENT, f"no image {sha256}")
        return image_public(row)


# Read and sent this much at a time: large enough that a thread hop per read costs little,
# small enough that a slow reader holds little memory.
CONTENT_CHUNK = 1 << 20


@dataclass
class ImageContent:
    """An image's bytes, opened: the file stays readable even when the image is deleted meanwhile."""

    sha256: str
    size: int
    file: BinaryIO

    async def chunks(self) -> AsyncIterator[bytes]:
        """The bytes in CONTENT_CHUNK reads off the event loop; closes the file at the end."""
        try:
            while chunk := await anyio.to_thread.run_sync(self.file.read, CONTENT_CHUNK):
                yield chunk
        finally:
            self.file.close()


def open_image(*, daemon: Daemon, sha256: str) -> ImageContent:
    """GET /v1/images/{sha256}/content: open the stored file. Under the store's lock, so the row
    and the file are seen together (a delete runs before, 404, or after, and the open file
    keeps its bytes). Blocking."""
    check_sha256(sha256)
    with daemon.store.lock:
        with transaction(daemon.engine) as session:
            row = repository.get_image(session=session, sha256=sha256)
            if row is None:
                raise KernelError(errno.ENOENT, f"no image {sha256}")
            size = row.size
        try:
            file = open(daemon.store.path_for(sha256), "rb")  # closed by chunks() or the 304 path
        except FileNotFoundError as exc:  # a row without its file: the store was tampered with
            raise KernelError(errno.ENOENT, f"image {sha256} has no stored file") from exc
    return ImageContent(sha256=sha256, size=size, file=file)


def list_images(*, daemon: Daemon, limit: int, cursor: str | None) -> dict[str, Any]:
    after = check_sha256(cursor) if cursor else ""
    with transaction(daemon.engine) as session:
        rows = repository.list_images(session=session, after=after, limit=limit + 1)
        items = [image_public(r) for r in rows[:limit]]
    return {"items": items, "next_cursor": rows[limit - 1].sha256 if len(rows) > limit else None}


def delete_image(*, daemon: Daemon, sha256: str, if_match: str | None = None) -> None:
    check_sha256(sha256)
    with daemon.kernel_lock, daemon.store.lock:  # kernel_lock first, as loads take it
        try:
            with transaction(daemon.engine) as session:
                row = repository.get_image(session=session, sha256=sha256)
                if row is None:
                    raise KernelError(errno.ENOENT, f"no image {sha256}")
                check_if_match(if_match, image_etag(sha256))
                users = repository.image_users(session=session, sha256=sha256)
                if users:
                    raise KernelError(errno.EBUSY, f"image {sha256} is used by the kimage of instance(s) "
                                      + ", ".join(str(u) for u in users), extra={"instances": users})
                declared = images_in_specs(session).get(sha256)
                if declared:
                    raise KernelError(errno.EBUSY, f"image {sha256} is named by the spec of instance(s) "
                                      + ", ".join(declared), extra={"instances": declared})
                session.delete(row)
        except IntegrityError as exc:  # a load raced us: the foreign key keeps the image
            raise KernelError(errno.EBUSY, f"image {sha256} is in use") from exc
        daemon.store.remove(sha256)
    daemon.signals.notify([IMAGES_CHANGED])


def prune_images(*, daemon: Daemon) -> dict[str, Any]:
    """POST /v1/images/prune: delete every image no kimage and no spec uses."""
    removed: list[str] = []
    with daemon.kernel_lock:
        with transaction(daemon.engine) as session:
            in_specs = images_in_specs(session)
            for row in repository.unused_images(session=session):
                if row.sha256 not in in_specs:
                    removed.append(row.sha256)
                    session.delete(row)
        for sha256 in removed:
            daemon.store.remove(sha256)
    if removed:
        daemon.signals.notify([IMAGES_CHANGED])
    return {"removed": removed}
