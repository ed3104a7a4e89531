"""Images between nodes (DESIGN "Fleet", Images): pulled from real peer daemons on loopback into
a node's store, checked against their sha256 before they are visible; a failed peer is skipped and
leaves nothing behind."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from mkd.fleet.image_pull import ImagePullFailed, pull_image
from mkd.services.context import Daemon
from mkd.testing.daemon_process import DaemonProcess, free_port
from tests.conftest import MakeClient
from tests.helpers import MiB, assert_problem

KERNEL = os.urandom(5 * MiB + 123)  # several spool batches
KERNEL_SHA = hashlib.sha256(KERNEL).hexdigest()


@dataclass(frozen=True)
class Peers:
    honest: str  # has KERNEL
    liar: str  # claims KERNEL, serves other bytes (its stored file was overwritten)
    dead: str  # nothing listens there


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peers]:
    root = tmp_path_factory.mktemp("peers")
    env = {"MKD_SIMULATOR__KERNEL_PROFILE": "tree"}
    honest, liar = DaemonProcess(root / "honest", env=env), DaemonProcess(root / "liar", env=env)
    with ThreadPoolExecutor(2) as starting:  # side by side: each start is mostly waiting
        started = [starting.submit(peer.start) for peer in (honest, liar)]
    try:
        for future in started:
            future.result()
        for peer in (honest, liar):
            with peer.client() as http:
                assert http.post("/v1/images", content=KERNEL).json()["sha256"] == KERNEL_SHA
        stored = root / "liar" / "images" / KERNEL_SHA[:2] / KERNEL_SHA
        stored.chmod(0o600)
        stored.write_bytes(bytes(len(KERNEL)))  # same size, other bytes
        yield Peers(honest=honest.url, liar=liar.url, dead=f"http://127.0.0.1:{free_port()}")
    finally:
        honest.stop()
        liar.stop()


def daemon_of(client: TestClient) -> Daemon:
    daemon: Daemon = client.app.state.daemon  # type: ignore[attr-defined]
    return daemon


def pull(client: TestClient, peer_urls: list[str], **options: Any) -> dict[str, Any]:
    return asyncio.run(pull_image(daemon=daemon_of(client), sha256=KERNEL_SHA, peers=peer_urls, **options))


def leftovers(client: TestClient) -> list[Path]:
    return list(daemon_of(client).store.tmp.iterdir())


def test_an_image_pulled_from_a_peer_is_stored_and_served(make_client: MakeClient, peers: Peers) -> None:
    node = make_client(pool=None)
    assert_problem(node.get(f"/v1/images/{KERNEL_SHA}"), 404, "ENOENT")
    image = pull(node, [peers.honest])
    assert image["sha256"] == KERNEL_SHA and image["size"] == len(KERNEL)
    assert node.get(f"/v1/images/{KERNEL_SHA}").json() == image
    assert node.get(f"/v1/images/{KERNEL_SHA}/content").content == KERNEL
    assert leftovers(node) == []


def test_a_dead_peer_and_a_lying_one_are_skipped_for_the_next(make_client: MakeClient, peers: Peers) -> None:
    node = make_client(pool=None)
    assert pull(node, [peers.dead, peers.liar, peers.honest])["sha256"] == KERNEL_SHA
    assert node.get(f"/v1/images/{KERNEL_SHA}/content").content == KERNEL
    assert leftovers(node) == []


def test_a_peer_that_lies_about_the_hash_is_refused_and_nothing_is_kept(make_client: MakeClient,
                                                                        peers: Peers) -> None:
    node = make_client(pool=None)
    with pytest.raises(ImagePullFailed) as failed:
        pull(node, [peers.liar])
    assert f"hash to {hashlib.sha256(bytes(len(KERNEL))).hexdigest()}" in failed.value.detail
    assert failed.value.extra["failures"][0].startswith(peers.liar)
    assert_problem(node.get(f"/v1/images/{KERNEL_SHA}"), 404, "ENOENT")
    assert node.get("/v1/images").json()["items"] == [] and leftovers(node) == []


def test_every_peer_failing_names_each_reason(make_client: MakeClient, peers: Peers) -> None:
    node = make_client(pool=None)
    with pytest.raises(ImagePullFailed) as failed:
        pull(node, [peers.dead, peers.liar])
    first, second = failed.value.extra["failures"]
    assert first.startswith(peers.dead) and "ConnectError" in first
    assert second.startswith(peers.liar) and "hash to" in second
    assert failed.value.status == 502
    with pytest.raises(ImagePullFailed, match="no peer advertises it"):
        pull(node, [])


def test_a_peer_without_the_image_is_skipped(make_client: MakeClient, peers: Peers) -> None:
    node = make_client(pool=None)
    other = hashlib.sha256(b"nobody has this").hexdigest()
    with pytest.raises(ImagePullFailed, match="answered 404"):
        asyncio.run(pull_image(daemon=daemon_of(node), sha256=other, peers=[peers.honest]))


def test_an_image_over_max_image_bytes_is_refused_before_writing(make_client: MakeClient, peers: Peers) -> None:
    node = make_client(pool=None, limits={"max_image_bytes": MiB})
    with pytest.raises(ImagePullFailed, match="over \\[limits\\] max_image_bytes"):
        pull(node, [peers.honest])
    assert node.get("/v1/images").json()["items"] == [] and leftovers(node) == []


def test_an_image_already_stored_is_not_pulled_again(make_client: MakeClient, peers: Peers) -> None:
    node = make_client(pool=None)
    assert node.post("/v1/images", content=KERNEL).status_code == 201
    assert pull(node, [peers.dead])["sha256"] == KERNEL_SHA  # no peer asked: the dead one would fail


def test_a_stream_past_the_limit_without_a_length_leaves_nothing(make_client: MakeClient) -> None:
    """A peer that sends no Content-Length is still cut off at the limit while streaming."""
    node = make_client(pool=None, limits={"max_image_bytes": MiB})
    seen: list[str | None] = []

    def endless(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))

        async def body() -> Any:
            while True:
                yield b"\1" * 65536

        return httpx.Response(200, content=body())

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(endless)) as client:
            await pull_image(daemon=daemon_of(node), sha256=KERNEL_SHA, peers=["http://peer.test"],
                             token="peer-token-0123456789", client=client)

    with pytest.raises(ImagePullFailed, match="larger than the limit"):
        asyncio.run(run())
    assert seen == ["Bearer peer-token-0123456789"]
    assert node.get("/v1/images").json()["items"] == [] and leftovers(node) == []
