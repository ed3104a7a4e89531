"""Declared instances over HTTP (DESIGN "Desired state", issue 13): PUT documents, the
reconciler converging them, wait, labels, documents round-trip, delete 202, prune."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mkd.testing import imagegen
from tests.conftest import MakeClient
from tests.helpers import MiB, assert_problem, create, upload

FAST = {"poll_interval_s": 0.05}


def document(name: str, kernel: str, **spec: Any) -> dict[str, Any]:
    labels = spec.pop("labels", {"team": "web"})
    body: dict[str, Any] = {"resources": {"cpus": [2, 3], "memory_bytes": 256 * MiB}, "kernel": kernel}
    body.update(spec)
    return {"apiVersion": "mkd.dev/v1", "kind": "Instance", "metadata": {"name": name, "labels": labels},
            "spec": body}


def wait(client: TestClient, ref: str, **query: Any) -> Any:
    return client.get(f"/v1/instances/{ref}/wait", params={"timeout_s": 20, **query})


@pytest.fixture(params=["tree", "rfc-v2"])
def declared_client(request: pytest.FixtureRequest, make_client: MakeClient) -> TestClient:
    return make_client(simulator={"kernel_profile": request.param, "halt_ack_timeout_s": 0.2}, reconciler=FAST)


def test_put_creates_and_the_reconciler_brings_it_to_active(declared_client: TestClient) -> None:
    client = declared_client
    kernel = upload(client, imagegen.vmlinux())
    reply = client.put("/v1/instances/web", json=document("web", kernel))
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["generation"] == 1 and body["spec"]["state"] == "Active" and body["labels"] == {"team": "web"}
    assert reply.headers["location"] == f"/v1/instances/{body['id']}"
    done = wait(client, "web", generation=1)
    assert done.status_code == 200, done.text
    active = done.json()
    assert active["state"] == "ACTIVE" and active["observed_generation"] == 1
    assert {c["type"]: c["status"] for c in active["conditions"]} == {
        "ResourcesApplied": "True", "KernelLoaded": "True", "Running": "True"}
    profile = client.get("/v1/host").json()["kernel_profile"]
    # under tree the reconciler adds the multikernel console so a panic is visible
    assert active["kimage"]["cmdline"] == ("console=mktty0" if profile == "tree" else "")


def test_the_same_document_twice_changes_nothing(client: TestClient) -> None:
    kernel = upload(client, imagegen.vmlinux())
    doc = document("web", kernel, state="Ready")
    first = client.put("/v1/instances/web", json=doc)
    assert first.status_code == 201
    assert wait(client, "web", generation=1).status_code == 200
    settled = client.get("/v1/instances/web")
    create(client, "before", cpus=[8], memory_bytes=64 * MiB)
    again = client.put("/v1/instances/web", json=doc)
    create(client, "after", cpus=[9], memory_bytes=64 * MiB)
    assert again.status_code == 200
    assert again.headers["etag"] == settled.headers["etag"]
    assert again.json()["generation"] == 1
    assert _events_between(client, "before", "after") == []


def _events_between(client: TestClient, first: str, last: str) -> list[dict[str, Any]]:
    """Events after `first`'s created event up to `last`'s, read from the persisted log."""
    seen: list[dict[str, Any]] = []
    inside = False
    with client.stream("GET", "/v1/events", headers={"Last-Event-ID": "0"}) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            data = json.loads(line.removeprefix("data:"))
            if data.get("name") == last and data.get("to") == "READY":
                return seen
            if inside:
                seen.append(data)
            if data.get("name") == first and data.get("to") == "READY":
                inside = True
    raise AssertionError("the stream ended early")


def test_dry_run_answers_the_would_be_instance_and_its_plan(client: TestClient) -> None:
    kernel = upload(client, imagegen.vmlinux())
    reply = client.put("/v1/instances/web?dry_run=true", json=document("web", kernel))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [step["action"] for step in body["plan"]] == ["create", "load", "start"]
    assert body["name"] == "web"
    assert_problem(client.get("/v1/instances/web"), 404, "ENOENT")  # nothing stored


def test_yaml_documents_and_the_document_round_trip(client: TestClient) -> None:
    kernel = upload(client, imagegen.vmlinux())
    text = (
        "apiVersion: mkd.dev/v1\nkind: Instance\nmetadata:\n  name: db\n  labels: {tier: data}\n"
        f"spec:\n  kernel: {kernel}\n  state: Loaded\n  resources:\n    cpus: [4]\n"
        f"    memory_bytes: {128 * MiB}\n"
    )
    reply = client.put("/v1/instances/db", content=text, headers={"content-type": "application/yaml"})
    assert reply.status_code == 201, reply.text
    assert wait(client, "db", generation=1).status_code == 200
    doc = client.get("/v1/instances/db", params={"format": "document"})
    assert doc.status_code == 200
    shown = doc.json()
    assert shown["kind"] == "Instance" and shown["metadata"] == {"name": "db", "labels": {"tier": "data"}}
    before = client.get("/v1/instances/db").headers["etag"]
    back = client.put("/v1/instances/db", json=shown)  # what `get -o yaml` prints is taken back unchanged
    assert back.status_code == 200 and back.headers["etag"] == before and back.json()["generation"] == 1


def test_yaml_aliases_and_bad_documents_are_422(client: TestClient) -> None:
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    reply = client.put("/v1/instances/x", content=bomb, headers={"content-type": "application/yaml"})
    assert "aliases" in assert_problem(reply, 422)["detail"]
    assert_problem(client.put("/v1/instances/x", content=b"{", headers={"content-type": "application/json"}), 422)
    kernel = upload(client, imagegen.vmlinux())
    other = document("y", kernel)
    assert "metadata.name" in assert_problem(client.put("/v1/instances/x", json=other), 422)["detail"]
    assert_problem(client.put("/v1/instances/7", json=document("7", kernel)), 422, "EINVAL")
    unknown = document("x", "0" * 64)
    assert_problem(client.put("/v1/instances/x", json=unknown), 422, "ENOENT")
    bad = document("x", kernel, restartPolicy="Sometimes")
    assert_problem(client.put("/v1/instances/x", json=bad), 422)


def test_an_existing_instance_is_adopted(client: TestClient) -> None:
    kernel = upload(client, imagegen.vmlinux())
    made = create(client, "web", cpus=[2, 3], memory_bytes=256 * MiB)
    reply = client.put("/v1/instances/web", json=document("web", kernel))
    assert reply.status_code == 200, reply.text
    assert reply.json()["id"] == made["id"] and reply.json()["generation"] == 1
    assert wait(client, "web", state="ACTIVE").json()["id"] == made["id"]


def test_labels_select(client: TestClient) -> None:
    kernel = upload(client, imagegen.vmlinux())
    client.put("/v1/instances/a", json=document("a", kernel, state="Ready", labels={"team": "web", "env": "prod"},
                                                resources={"cpus": [2], "memory_bytes": 64 * MiB}))
    client.put("/v1/instances/b", json=document("b", kernel, state="Ready", labels={"team": "db"},
                                                resources={"cpus": [3], "memory_bytes": 64 * MiB}))
    create(client, "plain", cpus=[4], memory_bytes=64 * MiB)
    names = [i["name"] for i in client.get("/v1/instances", params={"label": "team=web"}).json()["items"]]
    assert names == ["a"]
    both = client.get("/v1/instances", params=[("label", "team=web"), ("label", "env=prod")]).json()["items"]
    assert [i["name"] for i in both] == ["a"]
    assert client.get("/v1/instances", params={"label": "team=none"}).json()["items"] == []
    assert_problem(client.get("/v1/instances", params={"label": "nokey"}), 422)
    plain = client.get("/v1/instances/plain").json()
    assert "spec" not in plain and "generation" not in plain  # imperative instances look as before


def test_imperative_actions_move_the_spec(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "tree", "halt_ack_timeout_s": 0.2}, reconciler=FAST)
    kernel = upload(client, imagegen.vmlinux())
    client.put("/v1/instances/web", json=document("web", kernel))
    assert wait(client, "web", generation=1).status_code == 200
    stopped = client.post("/v1/instances/web/stop", json={"force": True})
    assert stopped.status_code == 200, stopped.text
    body = stopped.json()
    assert body["state"] == "LOADED" and body["spec"]["state"] == "Loaded" and body["generation"] == 2
    # the reconciler leaves it stopped: that is what the spec says now
    assert wait(client, "web", generation=2).json()["state"] == "LOADED"
    started = client.post("/v1/instances/web/start")
    assert started.json()["spec"]["state"] == "Active" and started.json()["generation"] == 3


def test_a_kernel_change_rolls_the_running_instance(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "tree", "halt_ack_timeout_s": 0.2}, reconciler=FAST)
    first = upload(client, imagegen.vmlinux())
    second = upload(client, imagegen.vmlinux(mk_entry=0x1000080))
    assert first != second
    client.put("/v1/instances/web", json=document("web", first))
    assert wait(client, "web", generation=1).status_code == 200
    reply = client.put("/v1/instances/web", json=document("web", second, cmdline="quiet"))
    assert reply.status_code == 200 and reply.json()["generation"] == 2
    done = wait(client, "web", generation=2).json()
    assert done["state"] == "ACTIVE" and done["kimage"]["kernel"] == second
    assert done["kimage"]["cmdline"] == "quiet console=mktty0"


def test_rfc_v2_reports_unsupported_for_what_it_cannot_do(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "rfc-v2"}, reconciler=FAST)
    kernel = upload(client, imagegen.vmlinux())
    client.put("/v1/instances/web", json=document("web", kernel))
    assert wait(client, "web", generation=1).status_code == 200
    client.put("/v1/instances/web", json=document("web", kernel, state="Loaded"))
    reply = wait(client, "web", generation=2)
    problem = assert_problem(reply, 409, "EBUSY")
    assert "Unsupported" in problem["detail"] and "no halt" in problem["detail"]
    running = {c["type"]: c for c in client.get("/v1/instances/web").json()["conditions"]}["Running"]
    assert (running["status"], running["reason"]) == ("False", "Unsupported")


def test_delete_of_a_declared_instance_is_202_and_drives_it_down(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "tree", "halt_ack_timeout_s": 0.2}, reconciler=FAST)
    kernel = upload(client, imagegen.vmlinux())
    client.put("/v1/instances/web", json=document("web", kernel))
    assert wait(client, "web", state="ACTIVE").status_code == 200
    assert client.delete("/v1/instances/web").status_code == 202
    assert wait(client, "web", deleted="true").status_code == 204
    assert_problem(client.get("/v1/instances/web"), 404, "ENOENT")
    assert wait(client, "web", deleted="true").status_code == 204  # already unknown
    # the name is free again, spec and all
    again = client.put("/v1/instances/web", json=document("web", kernel, state="Ready"))
    assert again.status_code == 201 and again.json()["generation"] == 1


def test_rfc_v2_cannot_delete_a_running_declared_instance(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "rfc-v2"}, reconciler=FAST)
    kernel = upload(client, imagegen.vmlinux())
    client.put("/v1/instances/web", json=document("web", kernel))
    assert wait(client, "web", state="ACTIVE").status_code == 200
    assert_problem(client.delete("/v1/instances/web"), 409, "EBUSY")


def test_images_a_spec_names_stay_and_prune_removes_the_rest(client: TestClient) -> None:
    kernel = upload(client, imagegen.vmlinux())
    spare = upload(client, imagegen.initrd("gzip", size=8192))
    client.put("/v1/instances/web", json=document("web", kernel, state="Ready"))
    problem = assert_problem(client.delete(f"/v1/images/{kernel}"), 409, "EBUSY")
    assert "web" in problem["detail"]
    pruned = client.post("/v1/images/prune")
    assert pruned.status_code == 200 and pruned.json() == {"removed": [spare]}
    assert client.get(f"/v1/images/{kernel}").status_code == 200
    assert client.get(f"/v1/images/{spare}").status_code == 404


def test_wait_times_out_409_and_validates_its_query(client: TestClient) -> None:
    create(client, "web", cpus=[2], memory_bytes=64 * MiB)
    reply = client.get("/v1/instances/web/wait", params={"state": "ACTIVE", "timeout_s": 0.2})
    problem = assert_problem(reply, 409, "ETIMEDOUT")
    assert "READY" in problem["detail"]
    assert client.get("/v1/instances/web/wait", params={"state": "READY"}).json()["state"] == "READY"
    assert_problem(client.get("/v1/instances/web/wait", params={"timeout_s": 1}), 422)
    assert_problem(client.get("/v1/instances/web/wait", params={"state": "READY", "timeout_s": 301}), 422)
    assert_problem(client.get("/v1/instances/web/wait", params={"generation": 1}), 422)  # no spec
    assert_problem(client.get("/v1/instances/nope/wait", params={"state": "READY"}), 404, "ENOENT")


def test_openapi_documents_the_document_put(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    put = spec["paths"]["/v1/instances/{ref}"]["put"]
    assert "application/json" in put["requestBody"]["content"]
    assert "/v1/instances/{ref}/wait" in spec["paths"]
    assert json.dumps(spec).count("InstanceDocument") >= 1


def _events_of(client: TestClient, kind: str, name: str, count: int) -> list[dict[str, Any]]:
    """The first `count` events of `kind` about `name` in the persisted log (waits for them)."""
    found: list[dict[str, Any]] = []
    event = ""
    with client.stream("GET", "/v1/events", headers={"Last-Event-ID": "0"}) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:") and event == kind:
                data = json.loads(line.removeprefix("data:"))
                if data.get("name") == name:
                    found.append(data)
                    if len(found) == count:
                        return found
    raise AssertionError("the stream ended early")


def crashing(make_client: MakeClient, **faults: object) -> TestClient:
    return make_client(simulator={"kernel_profile": "tree", "halt_ack_timeout_s": 0.2, "faults": faults},
                       reconciler=FAST)


def test_on_failure_restarts_a_failed_instance_then_crash_loops(make_client: MakeClient) -> None:
    client = crashing(make_client, fail_after_start=True)
    kernel = upload(client, imagegen.vmlinux())
    doc = document("web", kernel, maxRestarts=2, restartBackoff={"initial_s": 0.1, "max_s": 0.2})
    client.put("/v1/instances/web", json=doc)
    restarted = _events_of(client, "restarted", "web", 2)
    assert [e["attempt"] for e in restarted] == [1, 2]
    assert "failed" in restarted[0]["reason"]
    assert wait(client, "web", state="FAILED").status_code == 200  # the third failure, seen by the poll
    # Until the reconciler has seen the third failure, a wait answers with the failure itself
    # (FAILED first); then with the CrashLoop.
    deadline = time.monotonic() + 30
    while "CrashLoop" not in (problem := assert_problem(wait(client, "web", generation=1), 409))["detail"]:
        assert time.monotonic() < deadline, problem
        time.sleep(0.05)
    assert problem["errno"] == "EBUSY", problem
    body = client.get("/v1/instances/web").json()
    assert body["restarts"] == 2 and body["last_failure"]["reason"].startswith("the kernel says failed")
    running = {c["type"]: c for c in body["conditions"]}["Running"]
    assert (running["status"], running["reason"]) == ("False", "CrashLoop")
    metrics = client.get("/metrics").text
    assert 'mkd_restarts_total{instance="web"} 2.0' in metrics, metrics
    assert 'mkd_crash_loops_total{instance="web"} 1.0' in metrics, metrics


def test_a_new_generation_clears_a_crash_loop(make_client: MakeClient) -> None:
    client = crashing(make_client, fail_after_start=True)
    kernel = upload(client, imagegen.vmlinux())
    client.put("/v1/instances/web", json=document("web", kernel, maxRestarts=0))
    assert wait(client, "web", state="FAILED").status_code == 200  # seen by the status poll
    assert "CrashLoop" in assert_problem(wait(client, "web", generation=1), 409)["detail"]
    client.app.state.daemon.backend.io.kernel.faults.fail_after_start = False  # type: ignore[attr-defined]
    fixed = client.put("/v1/instances/web", json=document("web", kernel, maxRestarts=3))
    assert fixed.status_code == 200 and fixed.json()["generation"] == 2
    settled = wait(client, "web", generation=2)
    assert settled.status_code == 200, settled.text
    assert settled.json()["state"] == "ACTIVE"


@pytest.mark.timeout(60)  # the event reads below wait on a live stream
def test_a_crash_decision_is_announced_after_the_state_event(make_client: MakeClient) -> None:
    """The kernel's state event comes before the reconciler decides; the decision (here the
    CrashLoop) is a `spec` event of its own, so a client that re-read on the state event sees
    the new last_failure (the dashboard kept the previous one)."""
    client = crashing(make_client, fail_after_start=True)
    kernel = upload(client, imagegen.vmlinux())
    client.put("/v1/instances/web", json=document("web", kernel, maxRestarts=0))
    decided = _events_of(client, "spec", "web", 2)[1]  # the first is the PUT's
    assert (decided["cause"], decided["generation"], decided["decision"]) == ("reconciler", 1, "CrashLoop"), decided
    seen: list[tuple[str, dict[str, Any]]] = []
    event = ""
    with client.stream("GET", "/v1/events", headers={"Last-Event-ID": "0"}) as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                seen.append((event, json.loads(line.removeprefix("data:"))))
                if event == "spec" and seen[-1][1].get("cause") == "reconciler":
                    break
    into_failed = [i for i, (kind, data) in enumerate(seen) if kind == "state" and data.get("to") == "FAILED"]
    assert into_failed and into_failed[0] < len(seen) - 1, seen
    body = client.get("/v1/instances/web").json()
    assert {c["type"]: c for c in body["conditions"]}["Running"]["reason"] == "CrashLoop"
    assert body["last_failure"]["reason"]


def test_a_clean_self_stop_stays_down_under_on_failure_and_restarts_under_always(make_client: MakeClient) -> None:
    client = crashing(make_client)
    kernel = upload(client, imagegen.vmlinux())
    client.put("/v1/instances/calm", json=document("calm", kernel))
    client.put("/v1/instances/eager", json=document("eager", kernel, restartPolicy="Always",
                                                    resources={"cpus": [4], "memory_bytes": 64 * MiB},
                                                    restartBackoff={"initial_s": 0.1, "max_s": 1}))
    calm = wait(client, "calm", generation=1).json()
    eager = wait(client, "eager", generation=1).json()
    kernel_model = client.app.state.daemon.backend.io.kernel  # type: ignore[attr-defined]
    kernel_model.spawn_halt_self(calm["id"])
    kernel_model.spawn_halt_self(eager["id"])
    assert _events_of(client, "restarted", "eager", 1)[0]["attempt"] == 1
    assert wait(client, "eager", state="ACTIVE").status_code == 200
    stopped = wait(client, "calm", state="LOADED").json()
    running = {c["type"]: c for c in stopped["conditions"]}["Running"]
    assert (running["status"], running["reason"]) == ("False", "Stopped")
    assert stopped["restarts"] == 0 and "stopped by itself" in stopped["last_failure"]["reason"]


def test_put_pool_takes_a_pool_document_json_or_yaml(make_client: MakeClient) -> None:
    client = make_client(pool=None)
    spec = {"cpus": [2, 3, 4, 5], "memory_base": 0x1_0000_0000, "memory_bytes": 1 << 30}
    doc = {"apiVersion": "mkd.dev/v1", "kind": "Pool", "metadata": {"name": "pool"}, "spec": spec}
    first = client.put("/v1/pool", json=doc)
    assert first.status_code == 201, first.text
    assert first.json()["pool"]["cpus"] == [2, 3, 4, 5]
    text = ("apiVersion: mkd.dev/v1\nkind: Pool\nspec:\n  cpus: [2, 3, 4, 5]\n"
            f"  memory_base: {0x1_0000_0000}\n  memory_bytes: {1 << 30}\n")
    again = client.put("/v1/pool", content=text, headers={"content-type": "application/yaml"})
    assert again.status_code == 200 and again.json()["changed"] is False
    assert again.headers["etag"] == first.headers["etag"]
    plain = client.put("/v1/pool", json=spec)  # the plain body still works
    assert plain.status_code == 200 and plain.json()["changed"] is False
    assert_problem(client.put("/v1/pool", json={**doc, "kind": "Pools"}), 422)
    assert_problem(client.put("/v1/pool", json={**doc, "spec": {"cpus": [2]}}), 422, "EINVAL")


def spawning(make_client: MakeClient, **after_start: object) -> TestClient:
    """A tree daemon whose spawn named `web` does `after_start` after each start, polled fast."""
    faults = {"instances": {"web": after_start}}
    return make_client(simulator={"kernel_profile": "tree", "halt_ack_timeout_s": 0.2, "faults": faults},
                       reconciler=FAST, daemon={"status_poll_interval_s": 0.05})


def test_on_failure_restarts_after_a_panic_the_console_shows(make_client: MakeClient) -> None:
    client = spawning(make_client, after_start="panic", delay_s=0.2)
    kernel = upload(client, imagegen.vmlinux())
    client.put("/v1/instances/web", json=document("web", kernel, restartBackoff={"initial_s": 0.1, "max_s": 0.2}))
    restarted = _events_of(client, "restarted", "web", 1)[0]
    assert restarted["attempt"] == 1 and "panicked" in restarted["reason"]
    body = client.get("/v1/instances/web").json()
    assert "Kernel panic" in body["last_failure"]["console"]  # what it printed before it died


def test_a_clean_poweroff_under_on_failure_stays_down(make_client: MakeClient) -> None:
    client = spawning(make_client, after_start="poweroff", delay_s=0.2)
    kernel = upload(client, imagegen.vmlinux())
    client.put("/v1/instances/web", json=document("web", kernel))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        body = client.get("/v1/instances/web").json()
        running = {c["type"]: c for c in body["conditions"]}.get("Running", {})
        if running.get("reason") == "Stopped":
            break
        time.sleep(0.05)
    assert (running.get("status"), running.get("reason")) == ("False", "Stopped"), body
    assert body["state"] == "LOADED" and body["restarts"] == 0
    assert "stopped by itself" in body["last_failure"]["reason"]


def test_a_hang_is_invisible_and_nothing_restarts_it(make_client: MakeClient) -> None:
    client = spawning(make_client, after_start="hang", delay_s=0.1)
    kernel = upload(client, imagegen.vmlinux())
    client.put("/v1/instances/web", json=document("web", kernel, restartPolicy="Always"))
    assert wait(client, "web", generation=1).status_code == 200
    time.sleep(1.0)  # twenty status polls: the kernel still says active
    body = client.get("/v1/instances/web").json()
    assert body["state"] == "ACTIVE" and body["restarts"] == 0 and body["last_failure"] is None


def test_paused_holds_an_instance_until_unpaused(client: TestClient) -> None:
    kernel = upload(client, imagegen.vmlinux())
    client.put("/v1/instances/web", json=document("web", kernel, paused=True))
    time.sleep(0.5)  # ten reconciler ticks
    held = client.get("/v1/instances/web").json()
    assert held["state"] == "READY" and held["observed_generation"] == 0  # created, then left alone
    client.put("/v1/instances/web", json=document("web", kernel, paused=False))
    assert wait(client, "web", generation=2).json()["state"] == "ACTIVE"


def test_waiters_are_bounded(make_client: MakeClient) -> None:
    client = make_client(limits={"max_waiters": 1}, reconciler=FAST)
    create(client, "web", cpus=[2], memory_bytes=64 * MiB)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.get, "/v1/instances/web/wait", params={"state": "ACTIVE", "timeout_s": 2})
        time.sleep(0.5)
        second = client.get("/v1/instances/web/wait", params={"state": "ACTIVE", "timeout_s": 2})
        problem = assert_problem(second, 429)
        assert second.headers["retry-after"] and "max_waiters" in json.dumps(problem)
        assert_problem(first.result(), 409, "ETIMEDOUT")


def test_recreate_applies_what_the_profile_cannot_update_in_place(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "rfc-v2"}, reconciler=FAST)
    kernel = upload(client, imagegen.vmlinux())
    client.put("/v1/instances/web", json=document("web", kernel, state="Loaded"))
    assert wait(client, "web", generation=1).status_code == 200
    bigger = {"cpus": [2, 3, 4], "memory_bytes": 256 * MiB}
    client.put("/v1/instances/web", json=document("web", kernel, state="Loaded", resources=bigger))
    assert "Unsupported" in assert_problem(wait(client, "web", generation=2), 409)["detail"]
    client.put("/v1/instances/web", json=document("web", kernel, state="Loaded", resources=bigger,
                                                  updateStrategy="Recreate"))
    done = wait(client, "web", generation=3)
    assert done.status_code == 200, done.text
    assert done.json()["resources"]["cpus"] == [2, 3, 4] and done.json()["state"] == "LOADED"
