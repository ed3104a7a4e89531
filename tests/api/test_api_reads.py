"""Reads from the read model (issue 15): the same bytes the response models gave before, every
write seen at once, and conditional reads (If-None-Match → 304, lists included)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from mkd.api.schemas import HostOut, InstanceList, InstanceOut, PoolOut
from mkd.db import repository
from mkd.db.session import transaction
from mkd.services.context import Daemon
from mkd.services.pool import get_pool
from mkd.services.records import instance_public
from mkd.testing import imagegen
from tests.api.test_api_desired import document, wait
from tests.conftest import MakeClient
from tests.helpers import MiB, create, upload


def model_bytes(model: Any, body: Any, *, exclude_unset: bool) -> bytes:
    """What FastAPI answers for `body` through `model`: the routes' response_model path."""
    app = FastAPI()

    @app.get("/x", response_model=model, response_model_exclude_unset=exclude_unset)
    def x() -> Any:
        return body

    with TestClient(app) as client:
        return client.get("/x").content


def daemon_of(client: TestClient) -> Daemon:
    daemon: Daemon = client.app.state.daemon  # type: ignore[attr-defined]
    return daemon


def public_bodies(daemon: Daemon) -> list[dict[str, Any]]:
    with transaction(daemon.engine) as session:
        return [instance_public(r, daemon.host.capabilities) for r in repository.list_instances(session=session)]


@pytest.fixture
def varied(make_client: MakeClient) -> TestClient:
    """Instances in several shapes: plain, loaded (a kimage), patched, declared (spec, labels, conditions)."""
    client = make_client(simulator={"kernel_profile": "tree"}, reconciler={"poll_interval_s": 0.05})
    kernel = upload(client, imagegen.vmlinux())
    create(client, "plain", cpus=[2])
    create(client, "loaded", cpus=[3])
    assert client.post("/v1/instances/loaded/load", json={"kernel": kernel, "cmdline": "quiet ü"}).status_code == 200
    create(client, "patched", cpus=[4], memory_bytes=128 * MiB)
    assert client.patch("/v1/instances/patched", json={"resources": {"cpus": [4, 5]}}).status_code == 200
    reply = client.put("/v1/instances/web", json=document("web", kernel, state="Ready", labels={"team": "web"},
                                                     resources={"cpus": [8, 9], "memory_bytes": 256 * MiB}))
    assert reply.status_code == 201, reply.text
    assert wait(client, "web", generation=1).status_code == 200  # the reconciler is done with it
    return client


def test_bodies_are_the_bytes_the_response_models_give(varied: TestClient) -> None:
    client = varied
    daemon = daemon_of(client)
    bodies = public_bodies(daemon)
    assert {b["name"] for b in bodies} == {"plain", "loaded", "patched", "web"}
    assert any("labels" in b for b in bodies) and any(b["kimage"] for b in bodies)
    for body in bodies:
        for ref in (str(body["id"]), body["name"]):
            reply = client.get(f"/v1/instances/{ref}")
            assert reply.content == model_bytes(InstanceOut, body, exclude_unset=True)
            assert reply.headers["content-type"] == "application/json"
            assert reply.headers["etag"] == f'"{body["uid"]}-{body["version"]}"'
    listed = client.get("/v1/instances", params={"limit": 2})
    page = {"items": bodies[:2], "next_cursor": listed.json()["next_cursor"]}
    assert listed.content == model_bytes(InstanceList, page, exclude_unset=True)
    assert listed.json()["next_cursor"] is not None
    assert client.get("/v1/instances").content == model_bytes(
        InstanceList, {"items": bodies, "next_cursor": None}, exclude_unset=True)
    pool, pool_etag = get_pool(daemon=daemon)
    reply = client.get("/v1/pool")
    assert reply.content == model_bytes(PoolOut, pool, exclude_unset=False) and reply.headers["etag"] == pool_etag
    assert client.get("/v1/host").content == model_bytes(HostOut, asdict(daemon.host), exclude_unset=False)


def test_filters_and_refusals_are_the_same(varied: TestClient) -> None:
    client = varied
    assert [i["name"] for i in client.get("/v1/instances", params={"state": "LOADED"}).json()["items"]] == ["loaded"]
    assert [i["name"] for i in client.get("/v1/instances", params={"label": "team=web"}).json()["items"]] == ["web"]
    assert client.get("/v1/instances", params={"label": "team=db"}).json() == {"items": [], "next_cursor": None}
    first = client.get("/v1/instances", params={"limit": 1}).json()
    rest = client.get("/v1/instances", params={"limit": 10, "cursor": first["next_cursor"]}).json()
    assert [i["name"] for i in first["items"] + rest["items"]] == ["plain", "loaded", "patched", "web"]
    assert client.get("/v1/instances/0").status_code == 422
    assert client.get("/v1/instances/2048").json()["errno"] == "EINVAL"
    missing = client.get("/v1/instances/77")
    assert missing.status_code == 404 and missing.json()["instance_id"] == 77
    assert client.get("/v1/instances/nobody").json()["errno"] == "ENOENT"
    assert client.get("/v1/instances/..").status_code == 404


def test_every_write_is_read_at_once(client: TestClient) -> None:
    kernel = upload(client, imagegen.vmlinux())
    web = create(client, "web", cpus=[2])

    def seen(ref: str = "web") -> dict[str, Any]:
        body: dict[str, Any] = client.get(f"/v1/instances/{ref}").json()
        listed = [i for i in client.get("/v1/instances").json()["items"] if i["name"] == ref]
        assert listed == [body]
        return body

    assert seen() == web
    for action, state in (("load", "LOADED"), ("start", "ACTIVE"), ("stop", "LOADED"), ("unload", "READY")):
        reply = client.post(f"/v1/instances/web/{action}", json={"kernel": kernel} if action == "load" else {})
        assert reply.status_code == 200, reply.text
        assert seen() == reply.json() and reply.json()["state"] == state
    refused = client.post("/v1/instances/web/start", json={})
    # a refusal changes nothing
    assert refused.status_code in (409, 422) and seen()["version"] == reply.json()["version"]
    reply = client.patch("/v1/instances/web", json={"resources": {"cpus": [2, 3]}})
    assert seen() == reply.json()
    free_before = client.get("/v1/pool").json()["free"]["cpus"]
    assert 3 not in free_before
    assert client.delete("/v1/instances/web").status_code == 204
    assert client.get("/v1/instances/web").status_code == 404
    assert client.get("/v1/instances").json()["items"] == []
    assert {2, 3} <= set(client.get("/v1/pool").json()["free"]["cpus"])  # the pool body moved too
    again = create(client, "web", cpus=[4])
    assert seen() == again and again["uid"] != web["uid"]


def test_a_declared_change_shows_in_the_instance(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "tree"}, reconciler={"poll_interval_s": 0.05})
    kernel = upload(client, imagegen.vmlinux())
    assert client.put("/v1/instances/web", json=document("web", kernel, state="Ready")).status_code == 201
    relabelled = client.put("/v1/instances/web", json=document("web", kernel, state="Ready", labels={"team": "db"}))
    assert relabelled.status_code == 200, relabelled.text
    assert client.get("/v1/instances/web").json()["labels"] == {"team": "db"}
    assert [i["name"] for i in client.get("/v1/instances", params={"label": "team=db"}).json()["items"]] == ["web"]
    assert client.get("/v1/instances", params={"label": "team=web"}).json()["items"] == []


def not_modified(client: TestClient, path: str, etag: str, **params: Any) -> bool:
    reply = client.get(path, params=params, headers={"If-None-Match": etag})
    if reply.status_code == 304:
        assert reply.content == b"" and "content-type" not in reply.headers
        sent = [tag.strip().removeprefix("W/") for tag in etag.split(",")]
        assert etag == "*" or reply.headers["etag"] in sent
        return True
    assert reply.status_code == 200 and reply.headers["etag"] != etag
    return False


def test_if_none_match_on_an_instance(client: TestClient) -> None:
    create(client, "web", cpus=[2])
    etag = client.get("/v1/instances/web").headers["etag"]
    assert not_modified(client, "/v1/instances/web", etag)
    assert not_modified(client, "/v1/instances/1", f'"other", W/{etag}')
    assert not_modified(client, "/v1/instances/web", "*")
    assert not not_modified(client, "/v1/instances/web", '"other"')
    assert client.patch("/v1/instances/web", json={"resources": {"cpus": [2, 3]}}).status_code == 200
    assert not not_modified(client, "/v1/instances/web", etag)
    assert client.get("/v1/instances/nobody", headers={"If-None-Match": "*"}).status_code == 404


def test_a_list_etag_moves_with_its_page(client: TestClient) -> None:
    for name, cpu in (("a", 2), ("b", 3), ("c", 4)):
        create(client, name, cpus=[cpu])
    first = client.get("/v1/instances", params={"limit": 2})
    etag = first.headers["etag"]
    assert not_modified(client, "/v1/instances", etag, limit=2)
    assert not not_modified(client, "/v1/instances", etag, limit=3)  # another page, another ETag
    # an instance beyond the page changes: the page's ETag stays
    assert client.patch("/v1/instances/c", json={"resources": {"cpus": [4, 5]}}).status_code == 200
    assert not_modified(client, "/v1/instances", etag, limit=2)
    # an instance in the page changes
    assert client.patch("/v1/instances/b", json={"resources": {"cpus": [3, 6]}}).status_code == 200
    assert not not_modified(client, "/v1/instances", etag, limit=2)
    etag = client.get("/v1/instances", params={"limit": 2}).headers["etag"]
    # membership: one leaves the page, another takes its place
    assert client.delete("/v1/instances/a").status_code == 204
    assert not not_modified(client, "/v1/instances", etag, limit=2)
    etag = client.get("/v1/instances", params={"limit": 5}).headers["etag"]
    create(client, "d", cpus=[7])
    assert not not_modified(client, "/v1/instances", etag, limit=5)


def test_if_none_match_on_host_and_images_but_not_the_pool(client: TestClient) -> None:
    host = client.get("/v1/host").headers["etag"]
    assert not_modified(client, "/v1/host", host)
    sha = upload(client, imagegen.initrd("cpio", 4096))
    image = client.get(f"/v1/images/{sha}").headers["etag"]
    assert not_modified(client, f"/v1/images/{sha}", image)
    # DESIGN "HTTP API": the pool's ETag names the definition while `free` moves, so always the body
    pool = client.get("/v1/pool")
    again = client.get("/v1/pool", headers={"If-None-Match": pool.headers["etag"]})
    assert again.status_code == 200 and again.content == pool.content
