"""What the fleet routes call (DESIGN "Fleet", API on every node): one object per daemon, present
only when `[fleet]` is configured. Writes go to etcd, never to a peer.

Documents are plain JSON objects shaped as DESIGN says; an instance document carries `status`
(`node`, `phase`, ...) when read back.
"""

from __future__ import annotations

from typing import Any, Protocol

from mkd.errors import MkdError, NotFound

Document = dict[str, Any]


class FleetNotConfigured(NotFound):
    """The fleet routes exist on every node; without `[fleet]` they answer this 404."""

    title = "Fleet not configured"
    slug = "fleet-not-configured"

    def __init__(self) -> None:
        super().__init__("this daemon has no [fleet] section: the fleet is not configured")


class FleetUnavailable(MkdError):
    """etcd did not answer within `[fleet] request_timeout_s`: 503 with Retry-After."""

    status = 503
    title = "Fleet unavailable"
    slug = "fleet-unavailable"

    def __init__(self, detail: str, *, retry_after_s: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})


class FleetSurface(Protocol):
    """The operations behind `/v1/fleet/*`. Each raises an MkdError (NotFound, InvalidInput,
    Conflict, FleetUnavailable) rather than returning an error value."""

    async def nodes(self) -> list[Document]:
        """Every registered node's record (`nodes/<node>`), live ones and cordoned ones."""
        ...

    async def instances(self) -> list[Document]:
        """Every fleet instance document with its `status`."""
        ...

    async def get_instance(self, name: str) -> Document:
        """One instance document with its `status`; NotFound when unknown."""
        ...

    async def put_instance(self, name: str, document: Document) -> tuple[Document, bool]:
        """Store the document under `instances/<name>`; returns (document with status, created)."""
        ...

    async def delete_instance(self, name: str) -> Document:
        """Mark the instance for deletion (the owning node drives it down); returns it."""
        ...

    async def drain(self, node: str) -> Document:
        """Cordon the node and move what may move; returns the node record."""
        ...

    async def uncordon(self, node: str) -> Document:
        """Let the scheduler place on the node again; returns the node record."""
        ...
