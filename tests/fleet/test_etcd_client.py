"""The etcd gateway client against a real 3-member etcd 3.4 cluster."""

from __future__ import annotations

import base64
import json
from functools import partial

import anyio
import httpx
import pytest

from mkd.fleet.etcd import EtcdClient, EtcdError, EtcdUnavailable, mod_is, prefix_end, put_op, range_op
from mkd.testing.daemon_process import free_port
from mkd.testing.etcd_cluster import EtcdCluster


def test_prefix_end() -> None:
    assert prefix_end("/a/") == b"/a0"
    assert prefix_end("") == b"\0"  # everything


def test_put_get_range_delete(etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    async def run() -> None:
        client = EtcdClient(etcd_cluster.endpoints, timeout_s=5)
        try:
            revision = await client.put(f"{fleet_prefix}/x/a", b'{"n": 1}')
            await client.put(f"{fleet_prefix}/x/b", b"two")
            await client.put(f"{fleet_prefix}/y", b"other")
            found = await client.get(f"{fleet_prefix}/x/a")
            assert found is not None and found.json() == {"n": 1} and found.mod_revision == revision
            items, read_at = await client.range(f"{fleet_prefix}/x/", prefix=True)
            assert [kv.key for kv in items] == [f"{fleet_prefix}/x/a", f"{fleet_prefix}/x/b"]
            assert read_at >= revision
            assert await client.delete(f"{fleet_prefix}/x/", prefix=True) == 2
            assert await client.get(f"{fleet_prefix}/x/a") is None
        finally:
            await client.close()

    anyio.run(run)


def test_txn_compares_revisions(etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    async def run() -> None:
        client = EtcdClient(etcd_cluster.endpoints, timeout_s=5)
        key = f"{fleet_prefix}/k"
        try:
            created = await client.txn([mod_is(key, "=", 0)], [put_op(key, "1")], [range_op(key)])
            assert created.succeeded
            again = await client.txn([mod_is(key, "=", 0)], [put_op(key, "2")], [range_op(key)])
            assert not again.succeeded and again.ranges(0)[0].value == b"1"
            moved = await client.txn([mod_is(key, "=", created.revision)], [put_op(key, "3")])
            assert moved.succeeded
        finally:
            await client.close()

    anyio.run(run)


def test_lease_expiry_deletes_its_keys(etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    async def run() -> None:
        client = EtcdClient(etcd_cluster.endpoints, timeout_s=5)
        key = f"{fleet_prefix}/leased"
        try:
            lease = await client.grant(2)
            await client.put(key, "alive", lease=lease)
            assert await client.keepalive(lease) == 2
            await client.revoke(lease)
            assert await client.get(key) is None
            assert await client.keepalive(lease) == 0  # gone: renewing says so
        finally:
            await client.close()

    anyio.run(run)


def test_watch_sees_puts_and_deletes_from_a_revision(etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    async def run() -> None:
        client = EtcdClient(etcd_cluster.endpoints, timeout_s=5)
        try:
            start = await client.put(f"{fleet_prefix}/w/a", "1")
            await client.put(f"{fleet_prefix}/w/b", "2")
            await client.delete(f"{fleet_prefix}/w/a")
            seen: list[tuple[str, str]] = []
            with anyio.fail_after(10):
                async for batch in client.watch(f"{fleet_prefix}/w/", prefix=True, start_revision=start):
                    seen.extend((event.kind, event.kv.key.rsplit("/", 1)[1]) for event in batch)
                    if len(seen) >= 3:
                        break
            assert seen == [("put", "a"), ("put", "b"), ("delete", "a")]
        finally:
            await client.close()

    anyio.run(run)


def test_an_endpoint_down_moves_to_the_next(etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    async def run() -> None:
        dead = f"http://127.0.0.1:{free_port()}"
        client = EtcdClient([dead, *etcd_cluster.endpoints], timeout_s=5)
        try:
            await client.put(f"{fleet_prefix}/m", "x")
            assert (await client.get(f"{fleet_prefix}/m")) is not None
        finally:
            await client.close()

    anyio.run(run)


def test_no_endpoint_answers_is_unavailable() -> None:
    async def run() -> None:
        client = EtcdClient([f"http://127.0.0.1:{free_port()}"], timeout_s=0.5)
        try:
            with pytest.raises(EtcdUnavailable):
                await client.get("/x")
        finally:
            await client.close()

    anyio.run(run)


def test_an_unknown_lease_is_an_error(etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    async def run() -> None:
        client = EtcdClient(etcd_cluster.endpoints, timeout_s=5)
        try:
            with pytest.raises(EtcdError):
                await client.put(f"{fleet_prefix}/l", "x", lease=123456789)
        finally:
            await client.close()

    anyio.run(run)


def test_follow_several_prefixes_and_deletes_only(etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    async def run() -> None:
        client = EtcdClient(etcd_cluster.endpoints, timeout_s=5)
        seen: list[tuple[str, str]] = []
        deleted: list[str] = []
        try:
            start = await client.put(f"{fleet_prefix}/a/1", "x")
            await client.put(f"{fleet_prefix}/b/1", "y")
            await client.put(f"{fleet_prefix}/c/1", "not watched")
            await client.delete(f"{fleet_prefix}/a/1")
            with anyio.move_on_after(3):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(partial(client.follow, [f"{fleet_prefix}/a/", f"{fleet_prefix}/b/"],
                                             start_revision=start, on_batch=lambda batch: seen.extend(
                                                 (e.kind, e.kv.key[len(fleet_prefix):]) for e in batch)))
                    tasks.start_soon(partial(client.follow, [f"{fleet_prefix}/a/"], start_revision=start, no_puts=True,
                                             on_batch=lambda batch: deleted.extend(e.kv.key for e in batch)))
                    while len(seen) < 3 or not deleted:
                        await anyio.sleep(0.02)
                    tasks.cancel_scope.cancel()
            assert sorted(seen) == [("delete", "/a/1"), ("put", "/a/1"), ("put", "/b/1")]
            assert deleted == [f"{fleet_prefix}/a/1"]
        finally:
            await client.close()

    anyio.run(run)


def test_a_watch_resumes_on_the_next_member_when_one_is_closing() -> None:
    """A stopping member's gateway ends a watch with gRPC UNAVAILABLE ("transport is closing"):
    the watch goes on from the next endpoint, it does not fail (issue 17: member restarts)."""
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.host)
        if len(asked) == 1:
            closing = {"error": {"grpc_code": 14, "http_code": 503, "message": "transport is closing",
                                 "http_status": "Service Unavailable"}}
            return httpx.Response(200, content=json.dumps(closing).encode() + b"\n")
        kv = {"key": base64.b64encode(b"/k").decode(), "value": base64.b64encode(b"{}").decode(),
              "mod_revision": "7"}
        event = {"result": {"header": {"revision": "7"}, "events": [{"kv": kv}]}}
        return httpx.Response(200, content=json.dumps(event).encode() + b"\n")

    async def first_batch() -> list[str]:
        client = EtcdClient(["http://member-a:2379", "http://member-b:2379"], timeout_s=1)
        client._http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
        try:
            async for batch in client.watch("/k", start_revision=1):
                return [event.kv.key for event in batch]
        finally:
            await client.close()
        return []

    assert anyio.run(first_batch) == ["/k"]
    assert asked == ["member-a", "member-b"]
