"""The dashboard's fleet panel and the fleet's metrics (issue 17 item 5; DESIGN "Fleet": the
dashboard shows the fleet when configured): two real daemons on the 3-member etcd cluster, the
panel served by one of them shows both nodes with their capacity and health, where each instance
is placed, a Pending instance with the scheduler's reason and, once a node's daemon is gone, its
instance NodeLost and why. A daemon without [fleet] shows no panel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect
from prometheus_client.parser import text_string_to_metric_families

from mkd.testing.daemon_process import DaemonProcess
from mkd.testing.etcd_cluster import EtcdCluster
from tests.e2e.test_dashboard import browser, dashboard_page, served_daemon
from tests.e2e.test_dashboard_declared import audit
from tests.fleet.nodes import instance_document, running_nodes
from tests.helpers import POOL

__all__ = ["browser"]  # the module-scoped Chromium fixture of the dashboard tests

pytestmark = pytest.mark.timeout(120)
FLEET_MS = 20_000  # a placement, a lease running out (2 s) and the panel's next read (5 s)

@pytest.fixture
def two_nodes(etcd_cluster: EtcdCluster, fleet_prefix: str, tmp_path: Path) -> Iterator[list[DaemonProcess]]:
    labels = {f"node-{i}": {"rack": f"r{i}"} for i in range(2)}
    with running_nodes(etcd_cluster, fleet_prefix, tmp_path, labels) as daemons:
        yield daemons


def fleet_metrics(daemons: list[DaemonProcess]) -> dict[str, Any]:
    """DESIGN "Fleet" metrics summed over the fleet: leaders, placements, whether etcd requests are timed."""
    samples: dict[str, float] = {}
    for daemon in daemons:
        with daemon.client() as http:
            for family in text_string_to_metric_families(http.get("/metrics").text):
                for sample in family.samples:
                    samples[sample.name] = samples.get(sample.name, 0.0) + sample.value
    return {"leaders": samples["mkd_fleet_leader"], "placed": samples["mkd_fleet_placements_total"],
            "etcd_requests_timed": samples["mkd_fleet_etcd_round_trip_seconds_count"] > 0}


def test_the_panel_shows_nodes_placements_and_why_an_instance_waits(
        two_nodes: list[DaemonProcess], browser: Browser) -> None:
    served, other = two_nodes
    with served.client() as http:
        kernel = http.get("/v1/images").json()["items"][0]["sha256"]
        web = instance_document("web", kernel, node="node-1")
        assert http.put("/v1/fleet/instances/web", json=web).status_code == 201
        # no node has rack=r9: the scheduler leaves it Pending and says why
        assert http.put("/v1/fleet/instances/big",
                        json=instance_document("big", kernel, nodeSelector={"rack": "r9"})).status_code == 201
        with dashboard_page(browser, served.url) as page:
            panel = page.get_by_test_id("fleet-panel")
            expect(panel).to_be_visible()
            nodes = panel.get_by_test_id("fleet-node")
            expect(nodes).to_have_count(2)
            for node in http.get("/v1/fleet/nodes").json()["items"]:
                shown = panel.locator(f'[data-testid="fleet-node"][data-name="{node["name"]}"]')
                expect(shown.get_by_test_id("fleet-node-url")).to_have_text(node["url"])
                expect(shown.get_by_test_id("fleet-node-state")).to_have_text("live")
                expect(shown.get_by_test_id("fleet-node-labels")).to_have_text(f"rack={node['labels']['rack']}")
            # the capacity each node publishes: the whole pool on node-0, less web's booking on node-1
            node0 = panel.locator('[data-testid="fleet-node"][data-name="node-0"]')
            expect(node0.get_by_test_id("fleet-node-cpus-free")).to_have_text(str(len(POOL["cpus"])))
            expect(node0.get_by_test_id("fleet-node-memory-free")).to_contain_text("NUMA 0: ")

            web = panel.locator('[data-testid="fleet-instance"][data-name="web"]')
            expect(web).to_have_attribute("data-phase", "Running", timeout=FLEET_MS)
            expect(web.get_by_test_id("fleet-instance-node")).to_have_text("node-1")
            expect(web.get_by_test_id("fleet-instance-reschedule")).to_have_text("Never")
            big = panel.locator('[data-testid="fleet-instance"][data-name="big"]')
            expect(big.get_by_test_id("fleet-instance-phase")).to_have_text("Pending")
            expect(big.get_by_test_id("fleet-instance-node")).to_have_text("—")
            reason = http.get("/v1/fleet/instances/big").json()["status"]["reason"]
            assert "label rack=r9 missing" in reason
            expect(big.get_by_test_id("fleet-instance-reason")).to_have_text(reason, timeout=FLEET_MS)
            audit(page)
            assert fleet_metrics(two_nodes) == {"leaders": 1, "placed": 1, "etcd_requests_timed": True}

            # node-1's daemon dies: its lease runs out, it leaves the node list and web is NodeLost
            other.kill()
            expect(nodes).to_have_count(1, timeout=FLEET_MS)
            expect(web).to_have_attribute("data-phase", "NodeLost", timeout=FLEET_MS)
            expect(web.get_by_test_id("fleet-instance-reason")).to_have_text("node node-1 holds no lease")
            expect(page.get_by_test_id("fleet-status")).to_contain_text("1 of 1 nodes live")


def test_without_a_fleet_the_panel_is_absent(tmp_path: Path, browser: Browser) -> None:
    with served_daemon(tmp_path / "state", kernel_profile="tree") as url, dashboard_page(browser, url) as page:
        panel = page.get_by_test_id("fleet-panel")
        # the page has read GET /v1/fleet/nodes (404 fleet-not-configured) and settled
        expect(panel).to_have_attribute("data-configured", "false")
        expect(panel).to_be_hidden()
        audit(page)
