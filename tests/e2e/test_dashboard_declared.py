"""Declared instances in the dashboard (issue 14 item 4): the spec, conditions, generation,
restarts and last failure of the selected instance, the table filtered by label, and a console
panel that follows the stream, sees a panic arrive while the page is open and resumes after the
daemon restarts."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess
from tests.e2e.test_dashboard import browser, dashboard_page, row, served_daemon
from tests.e2e.test_dashboard_maps import AXE
from tests.helpers import POOL, MiB

__all__ = ["browser"]  # the module-scoped Chromium fixture, shared with test_dashboard.py

pytestmark = pytest.mark.timeout(120)
SLOW_MS = 30_000  # a reconciler pass, a restart with its backoff, a daemon restart


def document(name: str, kernel: str, *, labels: dict[str, str], cpus: list[int], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "mkd.dev/v1", "kind": "Instance", "metadata": {"name": name, "labels": labels},
            "spec": {"resources": {"cpus": cpus, "memory_bytes": 128 * MiB}, "kernel": kernel, **spec}}


def audit(page: Page) -> None:
    page.evaluate(AXE.read_text() + "\n;typeof axe")
    violations = page.evaluate("async () => (await axe.run(document)).violations.map((v) => "
                               "({id: v.id, impact: v.impact, target: v.nodes[0].target}))")
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert bad == [], bad


def test_declared_instance_details_and_the_label_filter(tmp_path: Path, browser: Browser) -> None:
    with served_daemon(tmp_path / "state", kernel_profile="tree") as url, httpx.Client(base_url=url) as http:
        http.put("/v1/pool", json=POOL).raise_for_status()
        kernel = http.post("/v1/images", content=imagegen.vmlinux()).json()["sha256"]
        web = document("web", kernel, labels={"team": "web", "tier": "front"}, cpus=[2, 3], cmdline="quiet",
                       restartPolicy="Always", maxRestarts=3)
        db = document("db", kernel, labels={"team": "db"}, cpus=[4], state="Loaded")
        assert http.put("/v1/instances/web", json=web).status_code == 201
        assert http.put("/v1/instances/db", json=db).status_code == 201
        http.post("/v1/instances", json={"name": "plain", "resources": {"cpus": [5], "memory_bytes": 64 * MiB}}
                  ).raise_for_status()
        for name in ("web", "db"):
            assert http.get(f"/v1/instances/{name}/wait", params={"generation": 1, "timeout_s": 30}).status_code == 200
        with dashboard_page(browser, url) as page:
            rows = page.get_by_test_id("instance-row")
            expect(rows).to_have_count(3)
            expect(row(page, "web").get_by_test_id("instance-declared")).to_have_text("gen 1")
            expect(row(page, "plain").get_by_test_id("instance-declared")).to_have_text("—")

            # The label filter selects as GET /v1/instances?label=k=v does.
            label = page.get_by_test_id("instances-filter-label")
            for text in ("team=web", "team=db", "team", "team=web, tier=front", "tier=back"):
                label.fill(text)
                if "=" in text:
                    selectors = [part.strip() for part in text.split(",")]
                    items = http.get("/v1/instances", params={"label": selectors}).json()["items"]
                else:  # a bare key (the page's own addition): every instance that has it
                    items = [item for item in http.get("/v1/instances").json()["items"]
                             if text in (item.get("labels") or {})]
                wanted = [item["name"] for item in items]
                expect(rows).to_have_count(len(wanted))
                assert [r.get_attribute("data-name") for r in rows.all()] == wanted, text
            label.fill("")
            expect(rows).to_have_count(3)

            expect(page.get_by_test_id("details-none")).to_be_visible()
            row(page, "web").get_by_test_id("instance-select").click()
            details = page.get_by_test_id("details")
            expect(details.get_by_test_id("details-title")).to_have_text("web (instance 1)")
            expect(details.get_by_test_id("details-state")).to_have_text("ACTIVE")
            expect(details.get_by_test_id("spec-state")).to_have_text("Active")
            expect(details.get_by_test_id("spec-restart-policy")).to_have_text("Always (at most 3 in 10 min)")
            expect(details.get_by_test_id("spec-kernel").locator("code")).to_have_attribute("title", kernel)
            expect(details.get_by_test_id("spec-initrd")).to_have_text("none")
            # under tree the reconciler adds the multikernel console (DESIGN "Desired state")
            body = http.get("/v1/instances/web").json()
            expect(details.get_by_test_id("spec-cmdline")).to_have_text(body["spec"]["cmdline"])
            expect(details.get_by_test_id("spec-resources")).to_have_text("CPUs 2-3, 128 MiB")
            expect(details.get_by_test_id("spec-generation")).to_have_text("1, observed 1")
            expect(details.get_by_test_id("spec-restarts")).to_have_text("0")
            expect(details.get_by_test_id("spec-labels")).to_have_text("team=web, tier=front")
            conditions = details.get_by_test_id("condition")
            expect(conditions).to_have_count(len(body["conditions"]))
            for condition in body["conditions"]:
                shown = details.locator(f'[data-testid="condition"][data-type="{condition["type"]}"]')
                expect(shown).to_have_attribute("data-status", condition["status"])
                expect(shown.get_by_test_id("condition-reason")).to_have_text(condition["reason"])
            expect(details.get_by_test_id("details-last-failure")).to_have_text("none")

            # A new generation arrives live (a `spec` event), with its conditions.
            http.put("/v1/instances/web", json={**web, "spec": {**web["spec"], "maxRestarts": 4}}).raise_for_status()
            expect(details.get_by_test_id("spec-restart-policy")).to_have_text("Always (at most 4 in 10 min)")
            expect(details.get_by_test_id("spec-generation")).to_contain_text("2, observed")

            row(page, "db").get_by_test_id("instance-select").click()
            expect(details.get_by_test_id("spec-state")).to_have_text("Loaded")
            expect(details.get_by_test_id("details-state")).to_have_text("LOADED")
            row(page, "plain").get_by_test_id("instance-select").click()
            expect(details.get_by_test_id("details-undeclared")).to_be_visible()
            expect(details.get_by_test_id("details-declared")).to_be_hidden()
            row(page, "web").get_by_test_id("instance-select").click()
            expect(details.get_by_test_id("details-declared")).to_be_visible()
            audit(page)


CONSOLE_CONFIG = """
[simulator]
kernel_profile = "tree"
halt_ack_timeout_s = 0.5
[simulator.faults.instances.web]
after_start = "panic"
delay_s = 4
[reconciler]
poll_interval_s = 0.1
[daemon]
status_poll_interval_s = 0.1
"""


def running_reason(http: httpx.Client) -> str:
    conditions = {c["type"]: c for c in http.get("/v1/instances/web").json()["conditions"]}
    reason: str = conditions.get("Running", {}).get("reason", "")
    return reason


def until(done: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def console_text(page: Page) -> str:
    text: str = page.get_by_test_id("console").evaluate("(pre) => pre.textContent")
    return text


def test_console_panel_shows_a_panic_and_resumes_after_a_restart(tmp_path: Path, browser: Browser) -> None:
    config = tmp_path / "mkd.toml"
    config.write_text(CONSOLE_CONFIG)
    daemon = DaemonProcess(tmp_path / "state", config=config)
    with daemon, daemon.client() as http:
        assert http.put("/v1/pool", json=POOL).status_code == 201
        kernel = http.post("/v1/images", content=imagegen.vmlinux()).json()["sha256"]
        with dashboard_page(browser, daemon.url) as page:
            # Declared while the page is open: OnFailure restarts it once, then CrashLoop holds it.
            doc = document("web", kernel, labels={"app": "web"}, cpus=[2, 3], maxRestarts=1,
                           restartBackoff={"initial_s": 0.5, "max_s": 1})
            assert http.put("/v1/instances/web", json=doc).status_code == 201
            web = row(page, "web")
            expect(web.get_by_test_id("instance-state")).to_have_text("ACTIVE", timeout=SLOW_MS)
            web.get_by_test_id("instance-select").click()
            console = page.get_by_test_id("console")
            expect(page.get_by_test_id("console-status")).to_have_attribute("data-state", "live")
            expect(console).to_contain_text(re.compile(r"instance \d+ \(web\) booting on mktty0"))

            # The panic (4 s after the start) arrives while the page is open.
            expect(console).to_contain_text("Kernel panic - not syncing", timeout=SLOW_MS)
            log = page.get_by_test_id("event-log")
            expect(log.locator('[data-type="state"]', has_text="ACTIVE → LOADED (kernel)").first).to_be_visible(
                timeout=SLOW_MS)
            expect(log.locator('[data-type="restarted"]').first).to_be_visible(timeout=SLOW_MS)
            details = page.get_by_test_id("details")
            expect(details.get_by_test_id("spec-restarts")).not_to_have_text("0", timeout=SLOW_MS)
            expect(details.get_by_test_id("details-last-failure")).to_contain_text("panic")
            expect(details.get_by_test_id("details-last-failure-console")).to_contain_text("Kernel panic")
            # The page shows the failure the API reports. The restart may panic meanwhile (a newer reason
            # the page gets from the event stream), so compare with the API's latest until they agree.
            last_failure = details.get_by_test_id("details-last-failure")
            until(lambda: http.get("/v1/instances/web").json()["last_failure"]["reason"] in last_failure.inner_text())

            # The restart panics too: past maxRestarts the instance is held in CrashLoop.
            until(lambda: running_reason(http) == "CrashLoop")
            expect(log.locator('[data-type="spec"]', has_text="after a stop: CrashLoop").first).to_be_visible(
                timeout=SLOW_MS)
            expect(console).to_contain_text(re.compile(r"Kernel panic[\s\S]*booting[\s\S]*Kernel panic"),
                                            timeout=SLOW_MS)
            history = http.get("/v1/instances/web/console", params={"follow": "false"}).text
            expect(console).to_have_text(history, timeout=SLOW_MS)  # both boots, each line once
            before = console_text(page)

            # Cut the stream: the daemon restarts on the same port.
            daemon.stop()
            expect(page.get_by_test_id("console-status")).not_to_have_attribute("data-state", "live")
            daemon.start()
            expect(page.get_by_test_id("console-status")).to_have_attribute("data-state", "live", timeout=SLOW_MS)
            # An imperative start clears the CrashLoop: a third boot, followed by the resumed stream.
            http.post("/v1/instances/web/start").raise_for_status()
            expect(console).to_contain_text(re.compile(r"(booting on mktty0[\s\S]*){3}"), timeout=SLOW_MS)
            after = console_text(page)
            assert after.startswith(before)  # resumed exactly where it was cut: nothing repeated
            assert after.count("booting on mktty0") == 3
            expect(web.get_by_test_id("instance-state")).to_have_text("ACTIVE", timeout=SLOW_MS)
