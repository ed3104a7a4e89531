"""The dashboard in a real browser (Debian's chromium, headless) against a served daemon.

The daemon runs under uvicorn on a free loopback port with the full middleware stack; the page
is driven through Playwright's sync API and checked against what the API says.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import Browser, Locator, Page, Route, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from mkd.api.routes import dashboard
from mkd.app import create_app
from mkd.config import DaemonSettings, Settings, SimulatorSettings
from mkd.testing import imagegen
from tests.helpers import POOL, GiB, MiB, write_tokens

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
UI_TIMEOUT_MS = 10_000
# Two instances in the v2 `/instances` format (the plan tests/api/test_api_device_trees.py uses).
V2_PLAN = """/dts-v1/;
/ {
    compatible = "multikernel-v1";
    instances {
        web { id = <1>; resources { cpus = <2 3>; memory-bytes = <0x10000000>; }; };
        db { id = <2>; resources { cpus = <4>; memory-bytes = <0x8000000>; }; };
    };
};
"""

pytestmark = pytest.mark.timeout(60)


def dashboard_app(settings: Settings) -> FastAPI:
    app = create_app(settings)
    # Until mkd/app.py includes the dashboard router itself, add it here.
    if not any(getattr(route, "path", None) == "/" for route in app.routes):
        app.include_router(dashboard.router)
    return app


@contextmanager
def served_daemon(
    state_dir: Path, *, kernel_profile: Literal["rfc-v2", "tree"] = "rfc-v2", tokens_file: Path | None = None,
    machine: dict[str, Any] | None = None,
) -> Iterator[str]:
    """A daemon on a free loopback port; yields its base URL. `machine`: more [simulator] settings."""
    settings = Settings(daemon=DaemonSettings(state_dir=state_dir, tokens_file=tokens_file),
                        simulator=SimulatorSettings(kernel_profile=kernel_profile, **(machine or {})))
    # Bound here and handed to uvicorn, which starts the daemon before it would bind: a port only
    # looked up as free could be taken meanwhile by another worker's daemon, and the test would
    # then drive that one.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # A short graceful-shutdown bound: the page's event stream is still open when the test ends.
    server = uvicorn.Server(uvicorn.Config(dashboard_app(settings), log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name=f"mkd-{port}",
                              daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=1.0).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            listener.close()
            raise RuntimeError("the test daemon did not become ready")
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the dashboard tests need Debian's chromium (apt-get install chromium; "
                    "`make test` installs it)", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class NetworkLog:
    """What the page asked for and got, in order, so a page that never became ready or live says
    which request it was waiting for."""

    def __init__(self, page: Page) -> None:
        self.began = time.monotonic()
        self.lines: list[str] = []
        page.on("request", lambda request: self._note("->", request.method, request.url))
        page.on("response", lambda response: self._note("<-", str(response.status), response.url))
        page.on("requestfinished", lambda request: self._note("ok", request.method, request.url))
        page.on("requestfailed", lambda request: self._note("failed", request.method, request.url,
                                                            request.failure or ""))
        page.on("console", lambda message: self._note("console", message.type, message.text))

    def _note(self, *what: str) -> None:
        self.lines.append(f"{time.monotonic() - self.began:7.3f} s " + " ".join(what))

    def diagnosis(self, page: Page, url: str) -> str:
        try:
            state = page.evaluate("() => ({body: {...document.body.dataset}, connection: "
                                  "document.querySelector('[data-testid=connection]')?.textContent})")
        except Exception as exc:  # the page itself may be what is broken
            state = f"(could not read the page: {exc})"
        return (f"page: {state}\nnetwork and console:\n" + "\n".join(self.lines)
                + f"\nthe daemon's count of event stream responses begun: {_event_stream_responses(url)}")


def _event_stream_responses(url: str) -> str:
    """What the daemon's /metrics says of GET /v1/events (counted when its response starts), and
    how long /metrics took: whether the daemon answered the stream, and whether it answers at all."""
    began = time.monotonic()
    try:
        text = httpx.get(url + "/metrics", timeout=10).text
    except httpx.HTTPError as exc:
        return f"(no /metrics after {time.monotonic() - began:.1f} s: {exc!r})"
    counted = [line for line in text.splitlines()
               if line.startswith("mkd_http_requests_total") and '"/v1/events"' in line]
    return f"{counted or 'none'} (/metrics answered in {time.monotonic() - began:.3f} s)"


@contextmanager
def dashboard_page(browser: Browser, url: str, *, block_events: bool = False,
                   events_route: Callable[[Route], None] | None = None) -> Iterator[Page]:
    """The dashboard loaded (and live unless its event stream is blocked); confirm() prompts
    accepted. `events_route` handles the page's event stream requests (Playwright routing)."""
    context = browser.new_context()
    page = context.new_page()
    if block_events:
        page.route(re.compile(r"/v1/events"), lambda route: route.abort())
    elif events_route is not None:
        page.route(re.compile(r"/v1/events"), events_route)
    page.set_default_timeout(UI_TIMEOUT_MS)
    script_errors: list[str] = []
    page.on("pageerror", lambda error: script_errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())  # the confirm() before delete and forced actions
    network = NetworkLog(page)
    try:
        page.goto(url + "/")
        not_ready = None
        try:
            # expect()'s own 5 s is short for a first render on a loaded machine (four test workers)
            expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=UI_TIMEOUT_MS)
            if not block_events:
                expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live",
                                                                           timeout=UI_TIMEOUT_MS)
        except AssertionError as exc:
            not_ready = f"{exc}\n{network.diagnosis(page, url)}"
        if not_ready is not None:
            pytest.fail(not_ready, pytrace=False)
        yield page
        assert script_errors == []
    finally:
        context.close()


def row(page: Page, name: str) -> Locator:
    return page.locator(f'tr[data-testid="instance-row"][data-name="{name}"]')


def create_through_form(page: Page, name: str, *, cpus: str = "", cpu_count: str = "", memory_mib: int = 256) -> None:
    page.get_by_test_id("create-name").fill(name)
    page.get_by_test_id("create-cpus").fill(cpus)
    page.get_by_test_id("create-cpu-count").fill(cpu_count)
    page.get_by_test_id("create-memory").fill(str(memory_mib))
    page.get_by_role("button", name="Create", exact=True).click()


def upload_through_form(page: Page, image: Path) -> None:
    page.get_by_test_id("upload-file").set_input_files(str(image))
    page.get_by_role("button", name="Upload").click()


def load_through_dialog(page: Page, name: str, cmdline: str) -> None:
    row(page, name).get_by_test_id("action-load").click()
    dialog = page.get_by_test_id("load-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Command line").fill(cmdline)
    dialog.get_by_role("button", name="Load", exact=True).click()


def test_page_shows_host_pool_and_capabilities(tmp_path: Path, browser: Browser) -> None:
    with served_daemon(tmp_path / "state") as url:
        httpx.put(url + "/v1/pool", json=POOL).raise_for_status()
        with dashboard_page(browser, url) as page:
            expect(page).to_have_title(re.compile("mkd"))
            expect(page.get_by_test_id("host-backend")).to_have_text("simulated")
            expect(page.get_by_test_id("host-profile")).to_have_text("rfc-v2")
            expect(page.get_by_test_id("host-arch")).to_have_text("x86_64")
            expect(page.get_by_test_id("capability-halt")).to_have_attribute("data-present", "false")
            expect(page.get_by_test_id("capability-per_instance_unload")).to_have_attribute("data-present", "true")
            expect(page.get_by_test_id("pool-cpus")).to_have_text("2-15")
            expect(page.get_by_test_id("pool-free-memory")).to_have_text("4 GiB")
            expect(page.get_by_test_id("instances-empty")).to_be_visible()
        # The page and its files come with their types and a policy that keeps them self-contained.
        page_reply = httpx.get(url + "/")
        assert page_reply.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page_reply.headers["content-security-policy"]
        assert httpx.get(url + "/static/dashboard.js").headers["content-type"].startswith("text/javascript")
        assert httpx.get(url + "/static/dashboard.css").headers["content-type"].startswith("text/css")
        missing = httpx.get(url + "/static/..%2Fapp.py")
        assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
        assert "/" not in httpx.get(url + "/openapi.json").json()["paths"]


def test_create_upload_load_start_through_the_page(tmp_path: Path, browser: Browser) -> None:
    kernel = imagegen.write_file(tmp_path / "vmlinux", imagegen.vmlinux())
    with served_daemon(tmp_path / "state") as url, httpx.Client(base_url=url) as http:
        http.put("/v1/pool", json=POOL).raise_for_status()
        with dashboard_page(browser, url) as page:
            create_through_form(page, "web1", cpu_count="2", memory_mib=256)
            web1 = row(page, "web1")
            expect(web1.get_by_test_id("instance-state")).to_have_text("READY")
            expect(web1.get_by_test_id("instance-memory")).to_have_text("256 MiB")
            expect(web1.get_by_test_id("action-delete")).to_be_enabled()
            expect(web1.get_by_test_id("action-start")).to_be_disabled()
            # rfc-v2 cannot update resources: Resize is greyed out even in READY, and says why.
            expect(web1.get_by_test_id("action-resize")).to_be_disabled()
            expect(web1.get_by_test_id("action-resize")).to_have_attribute("title", re.compile("no hot update"))
            assert http.get("/v1/instances/web1").json()["state"] == "READY"

            upload_through_form(page, kernel)
            image_rows = page.get_by_test_id("image-row")
            expect(image_rows).to_have_count(1)
            expect(image_rows.get_by_test_id("image-format")).to_have_text("elf")
            expect(page.get_by_test_id("upload-progress")).to_have_attribute("value", "100")
            expect(page.get_by_test_id("upload-status")).to_contain_text("Stored")
            stored = http.get("/v1/images").json()["items"]
            assert [image["sha256"] for image in stored] == [image_rows.get_attribute("data-sha256")]

            load_through_dialog(page, "web1", "console=ttyS0 quiet")
            expect(web1.get_by_test_id("instance-state")).to_have_text("LOADED")
            expect(web1.get_by_test_id("instance-kernel-state")).to_have_text("loading")  # rfc-v2's word
            expect(web1.get_by_test_id("instance-kimage")).to_have_text(re.compile(r"^vmlinux, \d+ segments$"))
            expect(web1.get_by_test_id("action-delete")).to_be_disabled()
            kimage = http.get("/v1/instances/web1").json()["kimage"]
            assert kimage["cmdline"] == "console=ttyS0 quiet"
            expect(web1.get_by_test_id("instance-kimage")).to_have_text(f"vmlinux, {len(kimage['segments'])} segments")

            web1.get_by_test_id("action-start").click()
            expect(web1.get_by_test_id("instance-state")).to_have_text("ACTIVE")
            assert http.get("/v1/instances/web1").json()["state"] == "ACTIVE"
            # rfc-v2 has no halt command: both stops stay disabled, and say why.
            for stop in ("action-stop", "action-stop-force"):
                expect(web1.get_by_test_id(stop)).to_be_disabled()
                expect(web1.get_by_test_id(stop)).to_have_attribute("title", re.compile("no halt"))
            expect(web1.get_by_test_id("action-unload")).to_have_text("Force unload")

            web1.get_by_test_id("action-unload").click()
            expect(web1.get_by_test_id("instance-state")).to_have_text("READY")
            web1.get_by_test_id("action-delete").click()
            expect(web1).to_have_count(0)
            assert http.get("/v1/instances/web1").status_code == 404
            expect(page.get_by_test_id("message")).to_be_hidden()


def test_changes_by_another_client_arrive_live(tmp_path: Path, browser: Browser) -> None:
    # With a tokens file too: requests from loopback, the page's included, need no token.
    tokens = tmp_path / "tokens"
    write_tokens(tokens, "ops:write:0123456789abcdef0123\n")
    with served_daemon(tmp_path / "state", tokens_file=tokens) as url, httpx.Client(base_url=url) as http:
        http.put("/v1/pool", json=POOL).raise_for_status()
        with dashboard_page(browser, url) as page:
            http.post("/v1/instances", json={"name": "remote", "resources": {"cpus": [4, 5], "memory_bytes": 128 * MiB}}
                      ).raise_for_status()
            remote = row(page, "remote")
            expect(remote.get_by_test_id("instance-state")).to_have_text("READY")
            expect(remote.get_by_test_id("instance-cpus")).to_have_text("4-5")
            expect(page.get_by_test_id("pool-free-cpus")).to_have_text("2-3,6-15")

            sha = http.post("/v1/images", content=imagegen.vmlinux()).json()["sha256"]
            http.post("/v1/instances/remote/load", json={"kernel": sha}).raise_for_status()
            expect(remote.get_by_test_id("instance-state")).to_have_text("LOADED")
            expect(remote.get_by_test_id("action-start")).to_be_enabled()

            http.post("/v1/instances/remote/unload").raise_for_status()
            expect(remote.get_by_test_id("instance-state")).to_have_text("READY")
            assert http.delete("/v1/instances/remote").status_code == 204
            expect(remote).to_have_count(0)
            expect(page.get_by_test_id("pool-free-cpus")).to_have_text("2-15")
            # All of it without a reload: the page still has the same document.
            assert page.evaluate("performance.getEntriesByType('navigation').length") == 1


# The first screen's reads, preloaded by index.html (the URLs dashboard.js asks for).
PRELOADED_READS = ["/v1/host", "/v1/pool", "/v1/images?limit=1000", "/v1/instances?limit=100"]


def test_first_screen_from_preloaded_reads_and_a_change_before_the_stream_is_read(
        tmp_path: Path, browser: Browser) -> None:
    """The first screen is drawn from the reads index.html preloads, without waiting for the event
    stream; a change made before the stream opens (so no event reaches the page) shows once it is open."""
    with served_daemon(tmp_path / "state") as url, httpx.Client(base_url=url) as http:
        http.put("/v1/pool", json=POOL).raise_for_status()
        http.post("/v1/instances", json={"name": "early", "resources": {"cpus": [2], "memory_bytes": 64 * MiB}}
                  ).raise_for_status()
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        # Unopened until released (a request the page gave up on meanwhile, live.js OPEN_TIMEOUT_MS
        # on a slow machine, is followed by another one: the newest is the one released).
        held: list[Route] = []
        released = False

        def hold(route: Route) -> None:
            if released:
                route.continue_()
            else:
                held.append(route)

        page.route(re.compile(r"/v1/events"), hold)
        try:
            page.goto(url + "/")
            expect(page.locator("body")).to_have_attribute("data-first-render", "true")
            expect(row(page, "early").get_by_test_id("instance-state")).to_have_text("READY")
            expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "connecting")
            # Each read was asked once, by the preload: dashboard.js was handed its reply. (On a slow
            # machine the page may have given the held stream up meanwhile, live.js OPEN_TIMEOUT_MS:
            # then it reads what it can again, after the preload's read.)
            asked = page.evaluate("performance.getEntriesByType('resource')"
                                  ".map((r) => [r.name.replace(location.origin, ''), r.initiatorType])")
            gave_up = len(held) > 1
            for path in PRELOADED_READS:
                kinds = [kind for name, kind in asked if name == path]
                assert (kinds[:1] if gave_up else kinds) == ["link"], (path, asked, len(held))

            http.post("/v1/instances", json={"name": "late", "resources": {"cpus": [3], "memory_bytes": 64 * MiB}}
                      ).raise_for_status()
            assert held
            released = True
            try:
                held[-1].continue_()
            except PlaywrightError:  # given up by the page just now: its next request goes through
                pass
            expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "live")
            expect(row(page, "late").get_by_test_id("instance-state")).to_have_text("READY")
            expect(page.get_by_test_id("pool-free-cpus")).to_have_text("4-15")
            expect(page.locator("body")).to_have_attribute("data-ready", "true")
            expect(page.get_by_test_id("instances-count")).to_contain_text("2 instances")
        finally:
            context.close()


def test_an_event_stream_request_that_gets_no_answer_is_made_again(tmp_path: Path, browser: Browser) -> None:
    """A stream request left without an answer (a lost connection, a proxy holding the headers)
    is given up after a while and made again: the page becomes ready and live, not stuck at
    "connecting…"."""
    requests: list[str] = []

    def hold_the_first(route: Route) -> None:
        requests.append(route.request.url)
        if len(requests) > 1:
            route.continue_()
        # the first is never answered, as a request the network lost

    with served_daemon(tmp_path / "state") as url:
        httpx.put(url + "/v1/pool", json=POOL).raise_for_status()
        with dashboard_page(browser, url, events_route=hold_the_first) as page:
            expect(page.get_by_test_id("pool-cpus")).to_have_text("2-15")
            # and live indeed: a change made now arrives through the stream
            httpx.post(url + "/v1/instances", json={"name": "late", "resources": {"cpus": [4],
                                                                                   "memory_bytes": 64 * MiB}}
                       ).raise_for_status()
            expect(row(page, "late").get_by_test_id("instance-state")).to_have_text("READY")
    assert len(requests) == 2, requests


def test_refusals_show_the_problem(tmp_path: Path, browser: Browser) -> None:
    with served_daemon(tmp_path / "state") as url, httpx.Client(base_url=url) as http:
        http.put("/v1/pool", json=POOL).raise_for_status()
        http.post("/v1/images", content=imagegen.vmlinux()).raise_for_status()
        with dashboard_page(browser, url) as page:
            message = page.get_by_test_id("message")
            # A kernel bigger than the instance pool: strict isolation refuses the load.
            create_through_form(page, "tiny", cpus="2", memory_mib=16)
            tiny = row(page, "tiny")
            expect(tiny.get_by_test_id("instance-state")).to_have_text("READY")
            load_through_dialog(page, "tiny", "")
            expect(message).to_be_visible()
            expect(page.get_by_test_id("message-errno")).to_have_text("ENOMEM (12)")
            problem = http.post("/v1/instances/tiny/load",
                                json={"kernel": http.get("/v1/images").json()["items"][0]["sha256"]}).json()
            expect(page.get_by_test_id("message-detail")).to_have_text(problem["detail"])
            expect(page.get_by_test_id("message-title")).to_contain_text(problem["title"])
            expect(tiny.get_by_test_id("instance-state")).to_have_text("READY")

            page.get_by_test_id("message-dismiss").click()
            expect(message).to_be_hidden()
            # A name that is taken.
            create_through_form(page, "tiny", cpus="3", memory_mib=16)
            expect(message).to_be_visible()
            expect(page.get_by_test_id("message-errno")).to_have_text("EEXIST (17)")
            expect(page.get_by_test_id("message-detail")).to_contain_text("tiny")


        # Without the event stream the page goes stale; the daemon still judges: delete while LOADED.
        http.post("/v1/instances", json={"name": "busy", "resources": {"cpus": [4], "memory_bytes": 256 * MiB}}
                  ).raise_for_status()
        with dashboard_page(browser, url, block_events=True) as page:
            expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "offline")
            busy = row(page, "busy")
            expect(busy.get_by_test_id("instance-state")).to_have_text("READY")
            sha = http.get("/v1/images").json()["items"][0]["sha256"]
            http.post("/v1/instances/busy/load", json={"kernel": sha}).raise_for_status()
            busy.get_by_test_id("action-delete").click()
            expect(page.get_by_test_id("message")).to_be_visible()
            expect(page.get_by_test_id("message-title")).to_contain_text("delete busy")
            expect(page.get_by_test_id("message-errno")).to_have_text("EBUSY (16)")
            expect(page.get_by_test_id("message-detail")).to_have_text(
                "delete refused in state LOADED: instance has a kimage: unload it first")
            # The refusal made the page re-read the instance.
            expect(busy.get_by_test_id("instance-state")).to_have_text("LOADED")
            expect(busy.get_by_test_id("action-delete")).to_be_disabled()
        assert http.get("/v1/instances/busy").json()["state"] == "LOADED"


def test_stop_is_enabled_where_the_kernel_can_halt(tmp_path: Path, browser: Browser) -> None:
    with served_daemon(tmp_path / "state", kernel_profile="tree") as url, httpx.Client(base_url=url) as http:
        http.put("/v1/pool", json=POOL).raise_for_status()
        sha = http.post("/v1/images", content=imagegen.vmlinux()).json()["sha256"]
        http.post("/v1/instances", json={"name": "t1", "resources": {"cpus": [2, 3], "memory_bytes": 256 * MiB}}
                  ).raise_for_status()
        http.post("/v1/instances/t1/load", json={"kernel": sha}).raise_for_status()
        http.post("/v1/instances/t1/start").raise_for_status()
        with dashboard_page(browser, url) as page:
            expect(page.get_by_test_id("host-profile")).to_have_text("tree")
            expect(page.get_by_test_id("capability-halt")).to_have_attribute("data-present", "true")
            t1 = row(page, "t1")
            expect(t1.get_by_test_id("instance-state")).to_have_text("ACTIVE")
            expect(t1.get_by_test_id("instance-kernel-state")).to_have_text("active")
            expect(t1.get_by_test_id("action-stop")).to_be_enabled()
            expect(t1.get_by_test_id("action-resize")).to_be_enabled()  # tree: hot update, ACTIVE included
            t1.get_by_test_id("action-stop").click()
            expect(t1.get_by_test_id("instance-state")).to_have_text("LOADED")
            expect(t1.get_by_test_id("action-stop")).to_be_disabled()  # graceful halt needs ACTIVE
            expect(t1.get_by_test_id("action-stop-force")).to_be_enabled()
            t1.get_by_test_id("action-start").click()
            expect(t1.get_by_test_id("instance-state")).to_have_text("ACTIVE")
            t1.get_by_test_id("action-stop-force").click()
            expect(t1.get_by_test_id("instance-state")).to_have_text("LOADED")
            assert http.get("/v1/instances/t1").json()["state"] == "LOADED"


def test_pool_editor_previews_applies_and_refuses_a_stale_etag(tmp_path: Path, browser: Browser) -> None:
    # LLC way masks need a kernel that reads them (tree with llc_way_masks; 409 EOPNOTSUPP elsewhere),
    # and the tree shrinks its pool by whole chunks: the pool grows to 4 GiB in two (3 + 1 GiB).
    with served_daemon(tmp_path / "state", kernel_profile="tree", machine={"llc_way_masks": True}) as url, \
            httpx.Client(base_url=url) as http:
        http.put("/v1/pool", json={**POOL, "memory_bytes": 3 * GiB}).raise_for_status()
        http.put("/v1/pool", json=POOL).raise_for_status()
        with dashboard_page(browser, url) as page:
            form = page.get_by_test_id("pool-form")
            cpus, base = form.get_by_label("Pool CPUs"), form.get_by_label("Memory base")
            memory, llc = form.get_by_label("Pool memory (MiB)"), form.get_by_label("LLC way mask")
            # Filled from GET /v1/pool, and remembering its ETag for If-Match.
            expect(cpus).to_have_value("2-15")
            expect(base).to_have_value("0x100000000")
            expect(memory).to_have_value("4096")
            expect(llc).to_have_value("")
            expect(form).to_have_attribute("data-etag", http.get("/v1/pool").headers["etag"])

            cpus.fill("2-11")
            memory.fill("3072")
            llc.fill("0xff")
            form.get_by_role("button", name="Preview").click()
            diff = page.get_by_test_id("pool-diff")
            expect(diff).to_have_attribute("data-applied", "false")
            expect(diff).to_have_attribute("data-changed", "true")
            expect(page.get_by_test_id("pool-diff-summary")).to_contain_text("Preview")
            expect(page.get_by_test_id("pool-diff-cpus-removed")).to_have_text("CPUs removed: 12-15")
            expect(page.get_by_test_id("pool-diff-memory")).to_have_text("memory shrinks by 1 GiB (to 3 GiB)")
            expect(page.get_by_test_id("pool-diff-llc")).to_have_text("LLC way mask becomes 0xff")
            expect(page.get_by_test_id("pool-diff-cpus-added")).to_have_count(0)
            unchanged = http.get("/v1/pool").json()  # a dry run stores nothing
            assert (unchanged["cpus"], unchanged["memory_bytes"], unchanged["llc_way_mask"]) == (
                POOL["cpus"], POOL["memory_bytes"], None)
            expect(page.get_by_test_id("pool-cpus")).to_have_text("2-15")

            form.get_by_role("button", name="Apply").click()
            expect(diff).to_have_attribute("data-applied", "true")
            expect(page.get_by_test_id("pool-diff-cpus-removed")).to_have_text("CPUs removed: 12-15")
            expect(page.get_by_test_id("pool-cpus")).to_have_text("2-11")  # the summary was re-read
            expect(page.get_by_test_id("pool-memory")).to_have_text("3 GiB at 0x100000000")
            applied = http.get("/v1/pool")
            assert applied.json()["cpus"] == list(range(2, 12))
            assert applied.json()["memory_bytes"] == 3 * GiB
            assert applied.json()["llc_way_mask"] == 0xFF
            expect(form).to_have_attribute("data-etag", applied.headers["etag"])
            expect(page.get_by_test_id("message")).to_be_hidden()

            # Applying the same again changes nothing, and says so.
            form.get_by_role("button", name="Apply").click()
            expect(diff).to_have_attribute("data-changed", "false")
            expect(page.get_by_test_id("pool-diff-summary")).to_have_text(
                "Nothing to apply: the pool already matches.")

            # Another client changes the pool after the form was filled: the apply is a 412.
            cpus.fill("2-9")
            http.put("/v1/pool", json={**POOL, "cpus": list(range(2, 14))}).raise_for_status()
            form.get_by_role("button", name="Apply").click()
            expect(page.get_by_test_id("message")).to_be_visible()
            expect(page.get_by_test_id("message-title")).to_have_text("Apply pool: Precondition failed")
            expect(page.get_by_test_id("message-errno")).to_have_text("HTTP 412")
            expect(page.get_by_test_id("message-detail")).to_contain_text("does not match the current ETag")
            # ... and the form shows the pool as it is now, ready for another try.
            expect(cpus).to_have_value("2-13")
            expect(memory).to_have_value("4096")
            expect(diff).to_be_hidden()
            expect(page.get_by_test_id("pool-cpus")).to_have_text("2-13")
            current = http.get("/v1/pool")
            assert current.json()["cpus"] == list(range(2, 14))
            expect(form).to_have_attribute("data-etag", current.headers["etag"])


def test_resize_through_the_dialog(tmp_path: Path, browser: Browser) -> None:
    with served_daemon(tmp_path / "state", kernel_profile="tree") as url, httpx.Client(base_url=url) as http:
        http.put("/v1/pool", json=POOL).raise_for_status()
        before = http.post("/v1/instances",
                           json={"name": "r1", "resources": {"cpus": [2, 3], "memory_bytes": 256 * MiB}}).json()
        with dashboard_page(browser, url) as page:
            r1 = row(page, "r1")
            expect(r1.get_by_test_id("action-resize")).to_be_enabled()
            r1.get_by_test_id("action-resize").click()
            dialog = page.get_by_test_id("resize-dialog")
            expect(dialog).to_be_visible()
            expect(dialog.get_by_test_id("resize-target")).to_have_text("r1")
            expect(dialog.get_by_label("New CPUs")).to_have_value("2-3")
            expect(dialog.get_by_label("New memory (MiB)")).to_have_value("256")
            dialog.get_by_label("New CPUs").fill("2-4")
            dialog.get_by_label("New memory (MiB)").fill("512")
            with page.expect_request(lambda request: request.method == "PATCH") as patch:
                dialog.get_by_role("button", name="Resize", exact=True).click()
            assert patch.value.headers["if-match"] == f'"{before["uid"]}-{before["version"]}"'
            assert patch.value.post_data_json == {"resources": {"cpus": [2, 3, 4], "memory_bytes": 512 * MiB}}
            expect(dialog).to_be_hidden()
            expect(r1.get_by_test_id("instance-cpus")).to_have_text("2-4")
            expect(r1.get_by_test_id("instance-memory")).to_have_text("512 MiB")
            after = http.get("/v1/instances/r1").json()
            assert after["resources"]["cpus"] == [2, 3, 4]
            assert after["resources"]["memory_bytes"] == 512 * MiB
            expect(page.get_by_test_id("pool-free-cpus")).to_have_text("5-15")

            # A refusal by the daemon (CPU 1 is not in the pool) shows the problem; nothing changes.
            r1.get_by_test_id("action-resize").click()
            dialog.get_by_label("New CPUs").fill("1-2")
            dialog.get_by_role("button", name="Resize", exact=True).click()
            expect(page.get_by_test_id("message")).to_be_visible()
            expect(page.get_by_test_id("message-title")).to_contain_text("resize r1")
            expect(page.get_by_test_id("message-errno")).to_have_text("EBUSY (16)")
            expect(r1.get_by_test_id("instance-cpus")).to_have_text("2-4")
            assert http.get("/v1/instances/r1").json()["resources"]["cpus"] == [2, 3, 4]


def test_create_from_a_device_tree_plan(tmp_path: Path, browser: Browser) -> None:
    plan = tmp_path / "plan.dts"
    plan.write_text(V2_PLAN)
    with served_daemon(tmp_path / "state") as url, httpx.Client(base_url=url) as http:
        http.put("/v1/pool", json=POOL).raise_for_status()
        with dashboard_page(browser, url) as page:
            with page.expect_request(lambda request: request.method == "POST" and request.url.endswith("/v1/instances")
                                     ) as post:
                page.get_by_test_id("plan-file").set_input_files(str(plan))
                page.get_by_role("button", name="Create from plan").click()
            assert post.value.headers["content-type"] == "text/x-dts"
            web, db = row(page, "web"), row(page, "db")
            expect(web.get_by_test_id("instance-state")).to_have_text("READY")
            expect(web.get_by_test_id("instance-cpus")).to_have_text("2-3")
            expect(web.get_by_test_id("instance-memory")).to_have_text("256 MiB")
            expect(db.get_by_test_id("instance-cpus")).to_have_text("4")
            expect(db.get_by_test_id("instance-memory")).to_have_text("128 MiB")
            expect(page.get_by_test_id("plan-status")).to_have_text(
                "Created 2 instances from plan.dts: web (id 1), db (id 2)")
            items = http.get("/v1/instances").json()["items"]
            assert [(item["id"], item["name"], item["resources"]["cpus"]) for item in items] == [
                (1, "web", [2, 3]), (2, "db", [4])]
            expect(page.get_by_test_id("message")).to_be_hidden()

            # The same plan again: all or nothing, so the name clash refuses the whole of it.
            page.get_by_test_id("plan-file").set_input_files(str(plan))
            page.get_by_role("button", name="Create from plan").click()
            expect(page.get_by_test_id("message-errno")).to_have_text("EEXIST (17)")
            expect(page.get_by_test_id("plan-status")).to_have_text("Nothing created from plan.dts")
            assert len(http.get("/v1/instances").json()["items"]) == 2

            # A DTB (FDT magic) goes as application/x-dtb: db's own tree brings it back.
            dtb = tmp_path / "db.dtb"
            dtb.write_bytes(http.get("/v1/instances/db/device-tree?format=dtb").content)
            assert http.delete("/v1/instances/db").status_code == 204
            expect(db).to_have_count(0)
            with page.expect_request(lambda request: request.method == "POST" and request.url.endswith("/v1/instances")
                                     ) as post:
                page.get_by_test_id("plan-file").set_input_files(str(dtb))
                page.get_by_role("button", name="Create from plan").click()
            assert post.value.headers["content-type"] == "application/x-dtb"
            expect(db.get_by_test_id("instance-state")).to_have_text("READY")
            expect(page.get_by_test_id("plan-status")).to_have_text("Created 1 instance from db.dtb: db (id 2)")
            assert http.get("/v1/instances/db").json()["resources"]["cpus"] == [4]
