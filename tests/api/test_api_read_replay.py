"""Reads replayed with their route's bytes (mkd.api.read_replay, issue 15): the same status,
headers and body as the route gave, the route not run again until a commit moves the read
model's generation, and every middleware still applied (tokens, cross-site guard, metrics,
conditional GET)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import Response, StreamingResponse

from mkd.api import read_replay
from mkd.api.read_replay import ReadReplay
from mkd.api.routes import host as host_routes
from mkd.api.routes import instances as instance_routes
from mkd.app import create_app
from mkd.services import pool as pool_service
from mkd.services.context import Daemon
from mkd.testing import imagegen
from tests.api.test_api_desired import document, wait
from tests.conftest import MakeClient, MakeSettings
from tests.helpers import POOL, MiB, assert_problem, create, upload, write_tokens

READ_TOKEN = "reader-token-000000000001"
REMOTE = ("10.9.8.7", 4321)


def daemon_of(client: TestClient) -> Daemon:
    daemon: Daemon = client.app.state.daemon  # type: ignore[attr-defined]
    return daemon


def counting(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[int]:
    """Count the calls of `owner.name` (the route's own work): a replayed read makes none."""
    calls: list[int] = []
    original: Callable[..., Any] = getattr(owner, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return calls


def test_a_replayed_read_is_the_routes_status_headers_and_bytes(client: TestClient,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    create(client, "web", cpus=[2])
    create(client, "db", cpus=[3])
    work = {
        "/v1/instances/web": counting(monkeypatch, instance_routes.service, "get_instance"),
        "/v1/instances?limit=1": counting(monkeypatch, instance_routes.service, "list_instances"),
        "/v1/pool": counting(monkeypatch, daemon_of(client).reads, "pool_current"),
        "/v1/host": counting(monkeypatch, host_routes, "host_body"),
    }
    for url, calls in work.items():
        first = client.get(url)
        assert first.status_code == 200 and calls == [1], url
        for _ in range(3):
            again = client.get(url)
            assert (again.status_code, again.headers.raw, again.content) == \
                   (first.status_code, first.headers.raw, first.content), url
        assert calls == [1], f"{url}: the route ran again"
    by_id = client.get("/v1/instances/1")  # another path to the same instance: its own reply
    assert by_id.content == client.get("/v1/instances/web").content
    assert client.get("/healthz").json() == client.get("/healthz").json() == {"status": "ok"}


def test_every_commit_moves_the_replayed_reads(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "tree"}, reconciler={"poll_interval_s": 0.05})
    kernel = upload(client, imagegen.vmlinux())
    create(client, "web", cpus=[2])
    before = {url: client.get(url).json() for url in ("/v1/instances/web", "/v1/instances", "/v1/pool")}
    assert client.patch("/v1/instances/web", json={"resources": {"cpus": [2, 3]}}).status_code == 200
    assert client.get("/v1/instances/web").json()["resources"]["cpus"] == [2, 3]
    assert client.get("/v1/instances").json()["items"][0]["resources"]["cpus"] == [2, 3]
    assert 3 in before["/v1/pool"]["free"]["cpus"] and 3 not in client.get("/v1/pool").json()["free"]["cpus"]
    # A write through the desired state (a declared row only) moves them too.
    assert client.put("/v1/instances/api", json=document("api", kernel, state="Ready", labels={"team": "a"},
                                                        resources={"cpus": [5], "memory_bytes": 64 * MiB})
                      ).status_code == 201
    assert wait(client, "api", generation=1).status_code == 200
    assert client.get("/v1/instances/api").json()["labels"] == {"team": "a"}
    assert client.put("/v1/instances/api", json=document("api", kernel, state="Ready", labels={"team": "b"},
                                                        resources={"cpus": [5], "memory_bytes": 64 * MiB})
                      ).status_code == 200
    assert client.get("/v1/instances/api").json()["labels"] == {"team": "b"}
    assert client.delete("/v1/instances/web").status_code == 204
    assert client.get("/v1/instances/web").status_code == 404


def test_reads_outside_the_read_model_are_not_replayed(client: TestClient) -> None:
    assert client.get("/v1/images").json()["items"] == []
    sha = upload(client, imagegen.initrd("cpio", 4096))  # no instance, declared or pool row written
    assert [image["sha256"] for image in client.get("/v1/images").json()["items"]] == [sha]


def test_a_replayed_read_honours_if_none_match(client: TestClient) -> None:
    create(client, "web", cpus=[2])
    for url in ("/v1/instances/web", "/v1/instances", "/v1/host"):
        first = client.get(url)
        etag = first.headers["etag"]
        reply = client.get(url, headers={"If-None-Match": etag})
        assert reply.status_code == 304 and reply.content == b"" and reply.headers["etag"] == etag, url
        assert "content-type" not in reply.headers
        other = client.get(url, headers={"If-None-Match": '"other"'})
        assert other.status_code == 200 and other.content == first.content, url
    pool = client.get("/v1/pool")  # DESIGN "HTTP API": never 304
    assert client.get("/v1/pool", headers={"If-None-Match": pool.headers["etag"]}).status_code == 200


def test_a_replayed_read_still_asks_for_a_token_and_a_known_host(make_settings: MakeSettings,
                                                                 tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens", f"viewer:read:{READ_TOKEN}\n")
    app = create_app(make_settings(daemon={"tokens_file": tokens}))
    with TestClient(app, raise_server_exceptions=False, client=("127.0.0.1", 40000)) as local, \
            TestClient(app, raise_server_exceptions=False, client=REMOTE) as remote:
        assert local.put("/v1/pool", json=POOL).status_code == 201
        create(local, "web", cpus=[2])
        urls = ("/v1/instances/web", "/v1/instances", "/v1/pool", "/v1/host")
        answers = {url: local.get(url) for url in urls}  # kept for replay by a loopback client
        for url in urls:
            assert_problem(remote.get(url), 401)
            reply = remote.get(url, headers={"Authorization": f"Bearer {READ_TOKEN}"})
            assert reply.status_code == 200 and reply.content == answers[url].content, url
            assert_problem(local.get(url, headers={"Host": "rebound.example"}), 403)


def test_replayed_reads_are_counted_by_route_template(client: TestClient) -> None:
    create(client, "web", cpus=[2])
    for _ in range(5):
        assert client.get("/v1/instances/web").status_code == 200
        assert client.get("/v1/host").status_code == 200
    assert client.get("/v1/instances/web", headers={"If-None-Match": "*"}).status_code == 304
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(client.get("/metrics").text) for s in family.samples}

    def count(route: str, status: str) -> float:
        return samples[("mkd_http_requests_total", (("method", "GET"), ("route", route), ("status", status)))]

    assert count("/v1/instances/{ref}", "200") == 5
    assert count("/v1/instances/{ref}", "304") == 1
    assert count("/v1/host", "200") == 5
    timed = ("mkd_http_request_seconds_count", (("method", "GET"), ("route", "/v1/instances/{ref}")))
    assert samples[timed] == 6


# -- the middleware alone, around a small app --

def small_app(generation: list[int | None]) -> tuple[FastAPI, dict[str, int]]:
    """Routes that count their calls; `generation[0]` plays the read model's."""
    app = FastAPI()
    calls = {"item": 0, "missing": 0, "stream": 0, "other": 0, "fixed": 0}

    @app.get("/item/{n}")
    async def item(n: int) -> Response:
        calls["item"] += 1
        return Response(f'{{"n":{n},"calls":{calls["item"]}}}'.encode() + b" " * n, media_type="application/json")

    @app.get("/missing")
    async def missing() -> Response:
        calls["missing"] += 1
        return Response(b"{}", status_code=404, media_type="application/json")

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        calls["stream"] += 1
        return StreamingResponse(iter([b"a", b"b"]))

    @app.get("/other")
    async def other() -> Response:
        calls["other"] += 1
        return Response(b"{}", media_type="application/json")

    @app.get("/fixed")
    async def fixed() -> Response:
        calls["fixed"] += 1
        return Response(b"{}", media_type="application/json")

    app.add_middleware(ReadReplay, generation=lambda _scope: generation[0],
                       read_model_endpoints=(item, missing, stream), constant_endpoints=(fixed,))
    return app, calls


def test_only_whole_200s_of_the_routes_given_are_replayed() -> None:
    generation: list[int | None] = [1]
    app, calls = small_app(generation)
    with TestClient(app) as client:
        for _ in range(3):
            assert client.get("/item/1").json() == {"n": 1, "calls": 1}
            assert client.get("/missing").status_code == 404
            assert client.get("/stream").content == b"ab"
            assert client.get("/other").status_code == 200
            assert client.get("/fixed").status_code == 200
            assert client.post("/item/1").status_code == 405
        assert calls == {"item": 1, "missing": 3, "stream": 3, "other": 3, "fixed": 1}
        assert client.get("/item/1?x=1").json()["calls"] == 2  # another query, another reply
        generation[0] = 2  # a commit
        assert client.get("/item/1").json()["calls"] == 3
        assert client.get("/item/1").json()["calls"] == 3
        assert client.get("/fixed").status_code == 200 and calls["fixed"] == 1  # constant: kept
        generation[0] = None  # not ready (starting, shutting down): nothing replayed, nothing kept
        assert client.get("/item/1").json()["calls"] == 4
        assert client.get("/item/1").json()["calls"] == 5
        assert client.get("/fixed").status_code == 200 and calls["fixed"] == 2


def test_replies_kept_are_bounded_by_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_replay, "MAX_BYTES", 1000)
    app, calls = small_app([1])
    with TestClient(app) as client:
        for n in (400, 401, 402):  # each reply ~420 bytes: the third pushes the first out
            assert client.get(f"/item/{n}").status_code == 200
        assert calls["item"] == 3
        client.get("/item/402")
        client.get("/item/401")
        assert calls["item"] == 3
        client.get("/item/400")
        assert calls["item"] == 4


def test_the_pool_is_read_from_the_kernel_again_only_when_it_may_have_moved(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Spec 8: the global pool gives and takes back at create, delete and resize; loading,
    starting, stopping and unloading use the instance's own memory."""
    kernel = upload(client, imagegen.vmlinux())
    reads = counting(monkeypatch, pool_service, "get_pool")  # what the read model calls to read the kernel

    def free_cpus() -> list[int]:
        cpus: list[int] = client.get("/v1/pool").json()["free"]["cpus"]
        return cpus

    assert 2 in free_cpus() and len(reads) == 1
    create(client, "web", cpus=[2])
    assert 2 not in free_cpus() and len(reads) == 2
    for action in ("load", "start", "stop", "unload"):
        reply = client.post(f"/v1/instances/web/{action}", json={"kernel": kernel} if action == "load" else {})
        assert reply.status_code == 200, reply.text
        assert 2 not in free_cpus() and len(reads) == 2, action
    assert client.patch("/v1/instances/web", json={"resources": {"cpus": [2, 3]}}).status_code == 200
    assert 3 not in free_cpus() and len(reads) == 3
    assert client.put("/v1/pool", json={**POOL, "cpus": list(range(2, 15))}).status_code == 200
    assert 15 not in free_cpus() and len(reads) == 4
    assert client.delete("/v1/instances/web").status_code == 204
    assert {2, 3} <= set(free_cpus()) and len(reads) == 5


def test_a_write_leaves_the_read_model_current(client: TestClient) -> None:
    """The writer's thread re-reads what it wrote before it answers: the readers that waited for
    it answer from memory."""
    daemon = daemon_of(client)
    generation = daemon.reads.generation
    create(client, "web", cpus=[2])
    assert daemon.reads.generation > generation and daemon.reads.current
    assert client.post("/v1/instances/web/stop", json={}).status_code in (409, 422)
    assert daemon.reads.current
