"""Images between nodes (DESIGN "Fleet", Images): a node that lacks a kernel or initrd a placed
instance names pulls it from a peer that advertises it (`images/<sha256>/<node>` → the node's
`url`), streamed into the local store through the same spool, hash and limit as an upload, and
made visible only once its bytes hash to the name asked for.

A peer that fails (unreachable, refuses, sends other bytes, sends too many) is skipped for the
next one; nothing of a failed attempt stays on disk (the spool removes its file).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import httpx

from mkd.config import FleetSettings
from mkd.errors import MkdError, PayloadTooLarge
from mkd.services.context import Daemon
from mkd.services.images import get_image, has_image, store_pulled_image

log = logging.getLogger("mkd.fleet")


class ImagePullFailed(MkdError):
    """No peer gave the image: every attempt's reason is in the detail."""

    status = 502
    title = "Image pull failed"
    slug = "image-pull-failed"


class PeerRefused(MkdError):
    """A peer answered, but not with the image (404, 401/403 for a wrong peer token, 5xx)."""

    status = 502
    title = "Peer refused"
    slug = "peer-refused"


def peer_client(fleet: FleetSettings | None, *, connect_timeout_s: float = 5.0,
                stall_timeout_s: float = 30.0) -> httpx.AsyncClient:
    """An HTTP client for peers: `[fleet] tls_ca` checks them and `tls_cert`/`tls_key` present this
    node when set. The read timeout is per read (a stalled peer), never the whole transfer."""
    verify: str | bool = True
    cert: tuple[str, str] | None = None
    if fleet is not None:
        if fleet.tls_ca is not None:
            verify = str(fleet.tls_ca)
        if fleet.tls_cert is not None and fleet.tls_key is not None:
            cert = (str(fleet.tls_cert), str(fleet.tls_key))
    return httpx.AsyncClient(verify=verify, cert=cert, follow_redirects=False,
                             timeout=httpx.Timeout(stall_timeout_s, connect=connect_timeout_s))


def content_url(peer_url: str, sha256: str) -> str:
    return f"{peer_url.rstrip('/')}/v1/images/{sha256}/content"


async def pull_image(sha256: str, peers: Sequence[str], token: str | None = None, *, daemon: Daemon,
                     client: httpx.AsyncClient | None = None) -> dict[str, Any]:
    """Make image `sha256` present locally, pulling it from the first of `peers` (base URLs) that
    gives it whole and true; returns the image as `GET /v1/images/{sha256}` shows it.
    `token` is the fleet's peer token (sent as Bearer). ImagePullFailed when every peer failed."""
    if has_image(daemon=daemon, sha256=sha256):
        return get_image(daemon=daemon, sha256=sha256)
    own_client = client is None
    if client is None:
        fleet = daemon.settings.fleet
        client = peer_client(fleet, connect_timeout_s=fleet.request_timeout_s if fleet else 5.0,
                             stall_timeout_s=daemon.settings.limits.body_stall_timeout_s)
    failures: list[str] = []
    try:
        for peer in peers:
            try:
                image = await _pull_from(daemon, client, content_url(peer, sha256), sha256, token)
            except (httpx.HTTPError, MkdError) as exc:
                reason = f"{peer}: {_describe(exc)}"
                log.warning("image pull of %s failed: %s", sha256, reason)
                failures.append(reason)
                continue
            log.info("pulled image %s from %s", sha256, peer)
            return image
    finally:
        if own_client:
            await client.aclose()
    tried = "; ".join(failures) if failures else "no peer advertises it"
    raise ImagePullFailed(f"image {sha256} could not be pulled: {tried}", extra={"failures": failures})


async def _pull_from(daemon: Daemon, client: httpx.AsyncClient, url: str, sha256: str,
                     token: str | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limit = daemon.settings.limits.max_image_bytes
    async with client.stream("GET", url, headers=headers) as reply:
        if reply.status_code != 200:
            raise PeerRefused(f"answered {reply.status_code} {reply.reason_phrase}")
        declared = reply.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:  # refused before a byte is written
            raise PayloadTooLarge(f"the image is {declared} bytes, over [limits] max_image_bytes ({limit})")
        image, _ = await store_pulled_image(daemon=daemon, sha256=sha256, chunks=reply.aiter_bytes())
        return image


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MkdError):
        return str(exc.detail)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
