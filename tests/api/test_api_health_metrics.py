"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mkd.app import create_app
from tests.conftest import MakeSettings
from tests.helpers import GiB, create


def test_ready_only_after_reconcile(make_settings: MakeSettings) -> None:
    app = create_app(make_settings())
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}
    # Outside the lifespan (not started yet) the daemon is not ready and says why.
    cold = TestClient(create_app(make_settings()))
    reply = cold.get("/readyz")
    assert reply.status_code == 503 and reply.json()["reason"]
    v1 = cold.get("/v1/instances")
    assert v1.status_code == 503 and v1.headers["content-type"].startswith("application/problem+json")


def test_metrics_count_instances_by_state(client: TestClient) -> None:
    create(client, "web", cpus=[2])
    text = client.get("/metrics").text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("mkd_instances", (("state", "READY"),))] == 1.0
    assert samples[("mkd_instances", (("state", "ACTIVE"),))] == 0.0
    assert samples[("mkd_pool_free_memory_bytes", ())] == 4 * GiB - 256 * (1 << 20)
    assert samples[("mkd_ready", ())] == 1.0
    created = ("mkd_http_requests_total", (("method", "POST"), ("route", "/v1/instances"), ("status", "201")))
    assert samples[created] == 1.0  # labelled by route template, never by raw path


def test_host_and_device_trees_carry_etags(client: TestClient) -> None:
    create(client, "web", cpus=[2])
    host = client.get("/v1/host")
    assert host.headers["ETag"] == client.get("/v1/host").headers["ETag"]
    for path in ("/v1/pool/device-tree", "/v1/instances/web/device-tree"):
        dts, dtb = client.get(path), client.get(path, params={"format": "dtb"})
        assert dts.headers["ETag"] and dtb.headers["ETag"] and dts.headers["ETag"] != dtb.headers["ETag"], path
    before = client.get("/v1/pool/device-tree").headers["ETag"]
    create(client, "db", cpus=[3])
    assert client.get("/v1/pool/device-tree").headers["ETag"] != before  # the root tree lists instances
