"""Concurrent requests against a real daemon: exactly one wins, the loser gets the errno, nothing half-done."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess
from tests.helpers import POOL, MiB

ROUNDS = 5
RACERS = 2

Request = Callable[[httpx.Client], httpx.Response]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    state = tmp_path_factory.mktemp("races") / "state"
    with DaemonProcess(state) as running, running.client() as http:
        assert http.put("/v1/pool", json=POOL).status_code == 201
        yield running


@pytest.fixture(scope="module")
def kernel_sha(daemon: DaemonProcess) -> str:
    with daemon.client() as http:
        reply = http.post("/v1/images", content=imagegen.vmlinux())
        assert reply.status_code == 201, reply.text  # a new daemon: the image is new
        sha: str = reply.json()["sha256"]
        return sha


@pytest.fixture
def http(daemon: DaemonProcess) -> Iterator[httpx.Client]:
    with daemon.client() as client:
        yield client
        # Leave no instance behind for the next test: unload (force) then delete whatever is left.
        for item in client.get("/v1/instances").json()["items"]:
            if item["kimage"] is not None:
                client.post(f"/v1/instances/{item['id']}/unload", json={"force": True})
            client.delete(f"/v1/instances/{item['id']}")
        assert client.get("/v1/instances").json()["items"] == []


def race(daemon: DaemonProcess, request: Request, racers: int = RACERS) -> list[httpx.Response]:
    """Send `racers` copies of one request at the same moment, each on its own connection."""
    barrier = threading.Barrier(racers)
    replies: list[httpx.Response | BaseException] = [RuntimeError("no reply")] * racers

    def racer(slot: int) -> None:
        with daemon.client() as client:
            client.get("/healthz")  # connection open before the barrier, so the requests really overlap
            barrier.wait(timeout=10)
            try:
                replies[slot] = request(client)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                replies[slot] = exc

    threads = [threading.Thread(target=racer, args=(slot,)) for slot in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(isinstance(r, httpx.Response) for r in replies), replies
    return [r for r in replies if isinstance(r, httpx.Response)]


def outcomes(replies: list[httpx.Response]) -> Counter[tuple[int, str | None]]:
    """(status, errno) of each reply; errno None for successes."""
    return Counter((r.status_code, r.json().get("errno") if r.status_code >= 400 else None) for r in replies)


def assert_pool_matches_instances(http: httpx.Client) -> None:
    """What is free is the pool minus what the instances hold: no half-done reservation."""
    pool = http.get("/v1/pool").json()
    items: list[dict[str, Any]] = http.get("/v1/instances").json()["items"]
    held_bytes = sum(i["resources"]["memory_bytes"] for i in items)
    assert pool["free"]["memory_bytes"] == pool["memory_bytes"] - held_bytes, (pool, items)
    for item in items:
        assert sum(c["bytes"] for c in item["memory"]) == item["resources"]["memory_bytes"], item
    held_cpus = {cpu for i in items for cpu in i["resources"]["cpus"]}
    assert set(pool["free"]["cpus"]) == set(pool["cpus"]) - held_cpus
    assert all(i["state"] not in ("LOADING",) for i in items), items


def create_instance(http: httpx.Client, name: str, cpus: list[int]) -> dict[str, Any]:
    reply = http.post("/v1/instances", json={"name": name, "resources": {"cpus": cpus, "memory_bytes": 256 * MiB}})
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body


def test_two_loads_of_one_ready_instance(daemon: DaemonProcess, http: httpx.Client, kernel_sha: str) -> None:
    for round_ in range(ROUNDS):
        name = f"load{round_}"
        created = create_instance(http, name, [2 + round_])
        replies = race(daemon, lambda c, n=name: c.post(f"/v1/instances/{n}/load", json={"kernel": kernel_sha}))
        assert outcomes(replies) == Counter({(200, None): 1, (409, "EBUSY"): 1}), [r.text for r in replies]
        winner = next(r for r in replies if r.status_code == 200).json()
        instance = http.get(f"/v1/instances/{name}").json()
        assert instance["state"] == "LOADED" and instance["kimage"] is not None
        assert instance["kimage"]["segments"] == winner["kimage"]["segments"]  # one kimage: the winner's
        # The image is in use by exactly this instance: deleting it names it.
        in_use = http.delete(f"/v1/images/{kernel_sha}")
        assert in_use.status_code == 409 and in_use.json()["detail"].endswith(f"instance(s) {created['id']}")
        assert_pool_matches_instances(http)
        # ...and a single unload frees it all: the loser left nothing behind to unload.
        assert http.post(f"/v1/instances/{name}/unload").status_code == 200
        assert http.post(f"/v1/instances/{name}/unload").status_code == 404
        assert http.delete(f"/v1/instances/{name}").status_code == 204
        assert_pool_matches_instances(http)


def test_two_starts_of_one_loaded_instance(daemon: DaemonProcess, http: httpx.Client, kernel_sha: str) -> None:
    for round_ in range(ROUNDS):
        name = f"start{round_}"
        create_instance(http, name, [2 + round_])
        assert http.post(f"/v1/instances/{name}/load", json={"kernel": kernel_sha}).status_code == 200
        replies = race(daemon, lambda c, n=name: c.post(f"/v1/instances/{n}/start"))
        assert outcomes(replies) == Counter({(200, None): 1, (409, "EBUSY"): 1}), [r.text for r in replies]
        instance = http.get(f"/v1/instances/{name}").json()
        assert instance["state"] == "ACTIVE" and instance["failure"] is None, instance
        assert_pool_matches_instances(http)


def test_two_unloads_of_one_loaded_instance(daemon: DaemonProcess, http: httpx.Client, kernel_sha: str) -> None:
    for round_ in range(ROUNDS):
        name = f"unload{round_}"
        create_instance(http, name, [2 + round_])
        assert http.post(f"/v1/instances/{name}/load", json={"kernel": kernel_sha}).status_code == 200
        replies = race(daemon, lambda c, n=name: c.post(f"/v1/instances/{n}/unload"))
        assert outcomes(replies) == Counter({(200, None): 1, (404, "ENOENT"): 1}), [r.text for r in replies]
        instance = http.get(f"/v1/instances/{name}").json()
        assert instance["state"] == "READY" and instance["kimage"] is None, instance
        assert_pool_matches_instances(http)


def test_two_deletes_of_one_instance(daemon: DaemonProcess, http: httpx.Client) -> None:
    for round_ in range(ROUNDS):
        name = f"del{round_}"
        create_instance(http, name, [5, 6])
        replies = race(daemon, lambda c, n=name: c.delete(f"/v1/instances/{n}"))
        assert outcomes(replies) == Counter({(204, None): 1, (404, "ENOENT"): 1}), [r.text for r in replies]
        assert http.get(f"/v1/instances/{name}").status_code == 404
        assert_pool_matches_instances(http)


def test_two_creates_with_one_name(daemon: DaemonProcess, http: httpx.Client) -> None:
    for round_ in range(ROUNDS):
        name = f"dup{round_}"
        body = {"name": name, "resources": {"cpu_count": 1, "memory_bytes": 128 * MiB}}
        replies = race(daemon, lambda c, b=body: c.post("/v1/instances", json=b))
        assert outcomes(replies) == Counter({(201, None): 1, (409, "EEXIST"): 1}), [r.text for r in replies]
        names = [i["name"] for i in http.get("/v1/instances").json()["items"]]
        assert names.count(name) == 1
        assert_pool_matches_instances(http)


def test_many_creates_competing_for_one_cpu(daemon: DaemonProcess, http: httpx.Client) -> None:
    for round_ in range(ROUNDS):
        # Four racers want the same CPU under different names: one gets it, three are EBUSY.
        replies = race(daemon, lambda c, r=round_: c.post("/v1/instances", json={
            "name": f"cpu{r}-{threading.get_ident()}", "resources": {"cpus": [15 - r], "memory_bytes": 64 * MiB}}),
            racers=4)
        assert outcomes(replies) == Counter({(201, None): 1, (409, "EBUSY"): 3}), [r.text for r in replies]
        assert_pool_matches_instances(http)
