"""The dashboard at full size (issue 12): 1,024 CPUs on 4 NUMA nodes and 2,047 instances.

Shared by the e2e test (which prints the figures) and `make bench` (which reports them against a
baseline of the same run). The instances come from two device-tree plans (one POST each, as
tests/bench/bench_instance_rss.py makes them): all but the last BURST before the page opens, the
last BURST while it is open, so their `created` events reach it in one burst.

The page itself says when it is done (User Timing, mkd/web/static/dashboard.js and live.js):
"mkd:first-render" once the first screen is drawn (host, pool, images, both maps, the table's
first page), "mkd:all-instances" once every instance is, "mkd:event-burst" measures from the
first event of a burst received to all of it drawn. The page's own resource timings split each
figure into what the daemon took (its replies) and what the browser took (the rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.bench.bench_instance_rss import MAX_INSTANCES, plan_dts
from tests.bench.daemons import BIG_MACHINE, BIG_POOL_STEPS

BURST = 100
DTS_HEADERS = {"content-type": "text/x-dts"}
BIG_TIMEOUT_MS = 120_000
MACHINE: dict[str, Any] = {key: value for key, value in BIG_MACHINE.items() if key != "kernel_profile"}
POOL_STEPS = BIG_POOL_STEPS


@dataclass
class Timings:
    first_render_ms: float
    burst_ms: float
    burst_events: int
    fetch_only_ms: float  # every read of a full load (all instance pages), without drawing (baseline)
    burst_reads_ms: float  # one GET per instance of a burst, five at a time, no drawing (baseline)
    all_instances_ms: float = 0.0  # every instance drawn
    first_reads_done_ms: float = 0.0  # the last reply the first render waited for came in
    burst_page_reads_ms: float = 0.0  # the span of the page's own reads during the burst
    first_read_ms: float = 0.0  # the page's files are in and it asks its first question (GET /v1/host)


def fill_before_opening(http: httpx.Client) -> None:
    """The pool (in steps, as the bench does) and every instance but the last BURST."""
    for step in POOL_STEPS:
        http.put("/v1/pool", json=step).raise_for_status()
    reply = http.post("/v1/instances", content=plan_dts(1, MAX_INSTANCES - BURST), headers=DTS_HEADERS)
    assert reply.status_code == 201, reply.text[:500]


def first_render_ms(page: Page) -> float:
    # A plain predicate, not expect(): each failed poll of Playwright's expect() walks the page's
    # accessibility tree on its main thread (an ARIA snapshot for the failure message, some
    # 400 ms at this size), which would be timed as the page's own work.
    page.wait_for_function("() => document.body.dataset.ready === 'true'", timeout=BIG_TIMEOUT_MS)
    expect(page.get_by_test_id("instances-count")).to_contain_text(f"{MAX_INSTANCES - BURST} instances")
    mark: float = page.evaluate("performance.getEntriesByName('mkd:first-render')[0].startTime")
    return mark


def all_instances_ms(page: Page) -> float:
    mark: float = page.evaluate("performance.getEntriesByName('mkd:all-instances')[0].startTime")
    return mark


def first_reads_done_ms(page: Page) -> float:
    """When the last /v1 reply that came in before the first render ended."""
    done: float = page.evaluate(
        "() => { const mark = performance.getEntriesByName('mkd:first-render')[0].startTime;"
        " return Math.max(...performance.getEntriesByType('resource')"
        ".filter((r) => r.name.includes('/v1/') && r.responseEnd <= mark).map((r) => r.responseEnd)); }")
    return done


def first_read_ms(page: Page) -> float:
    start: float = page.evaluate(
        "Math.min(...performance.getEntriesByType('resource')"
        ".filter((r) => r.name.includes('/v1/')).map((r) => r.startTime))")
    return start


def page_reads_ms(page: Page, since: float) -> float:
    """The span of the instance reads the page made since `since` (first request to last reply)."""
    span: float = page.evaluate(
        "(since) => { const rs = performance.getEntriesByType('resource')"
        ".filter((r) => r.startTime >= since && r.name.includes('/v1/instances'));"
        " return rs.length ? Math.max(...rs.map((r) => r.responseEnd))"
        " - Math.min(...rs.map((r) => r.startTime)) : 0; }",
        since)
    return span


def burst_ms(page: Page, http: httpx.Client) -> tuple[float, int]:
    """Create the last BURST instances in one plan; the span of the page's burst measures."""
    since: float = page.evaluate("performance.now()")
    reply = http.post("/v1/instances", content=plan_dts(MAX_INSTANCES - BURST + 1, MAX_INSTANCES), headers=DTS_HEADERS)
    assert reply.status_code == 201, reply.text[:500]
    expect(page.get_by_test_id("instances-count")).to_contain_text(f"{MAX_INSTANCES} instances", timeout=BIG_TIMEOUT_MS)
    expect(page.locator('[data-testid="event"][data-type="created"]')).to_have_count(BURST)
    page.wait_for_function(
        "([since, burst]) => performance.getEntriesByName('mkd:event-burst')"
        ".filter((m) => m.startTime >= since).reduce((n, m) => n + m.detail.events, 0) >= burst",
        arg=[since, BURST], timeout=BIG_TIMEOUT_MS)
    span, events = page.evaluate(
        "(since) => { const ms = performance.getEntriesByName('mkd:event-burst').filter((m) => m.startTime >= since);"
        " return [Math.max(...ms.map((m) => m.startTime + m.duration)) - Math.min(...ms.map((m) => m.startTime)),"
        " ms.reduce((n, m) => n + m.detail.events, 0)]; }", since)
    return float(span), int(events)


# What the first render must read (the host, the pool, every instance page), timed in the same
# browser with nothing drawn.
_FETCH_ONLY = """async () => {
  const started = performance.now();
  await Promise.all([fetch('/v1/host').then((r) => r.json()), fetch('/v1/pool').then((r) => r.json()),
                     fetch('/v1/images').then((r) => r.json())]);
  let cursor = null;
  do {
    const page = await (await fetch('/v1/instances?limit=1000' + (cursor ? '&cursor=' + cursor : ''))).json();
    cursor = page.next_cursor;
  } while (cursor);
  return performance.now() - started;
}"""


def fetch_only_ms(page: Page) -> float:
    value: float = page.evaluate(_FETCH_ONLY)
    return value


# The reads that follow BURST `created` events: one GET per instance, five at a time as the page
# does (mkd/web/static/live.js PARALLEL_READS), with nothing drawn.
_BURST_READS = """async ([first, last]) => {
  const ids = [];
  for (let id = first; id <= last; id += 1) ids.push(id);
  const started = performance.now();
  const worker = async () => { while (ids.length) await (await fetch('/v1/instances/' + ids.pop())).json(); };
  await Promise.all([worker(), worker(), worker(), worker(), worker()]);
  return performance.now() - started;
}"""


def burst_reads_ms(page: Page) -> float:
    value: float = page.evaluate(_BURST_READS, [MAX_INSTANCES - BURST + 1, MAX_INSTANCES])
    return value


def measure(page: Page, url: str, http: httpx.Client) -> Timings:
    """Open the dashboard on a daemon filled by fill_before_opening; time the first render and a burst."""
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(url + "/")
    first = first_render_ms(page)
    everything = all_instances_ms(page)
    reads_done = first_reads_done_ms(page)
    asked = first_read_ms(page)
    baseline = fetch_only_ms(page)
    since: float = page.evaluate("performance.now()")
    burst, events = burst_ms(page, http)
    burst_reads = page_reads_ms(page, since)  # before the baseline's own reads below
    return Timings(first_render_ms=first, burst_ms=burst, burst_events=events, fetch_only_ms=baseline,
                   burst_reads_ms=burst_reads_ms(page), all_instances_ms=everything,
                   first_reads_done_ms=reads_done, burst_page_reads_ms=burst_reads, first_read_ms=asked)
