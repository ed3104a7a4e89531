"""How `make test` spreads the suite over pytest-xdist's workers (`-n 4 --dist loadgroup`,
pyproject.toml): tests one at a time to whichever worker is free, except those that share an
expensive fixture, which go to one worker together so it is set up once.

The groups: every test on the private etcd cluster (one cluster, used in the order a serial run
uses it: some tests stop and restart its members), and per module the tests that share a
module-scoped daemon, node set or browser. Each such test gets an `xdist_group` mark; a module
may also set one itself (tests/fuzz: its two time-bounded runs one after the other).

pytest-xdist 3.8 applies those marks by renaming the test's node id, which pytest 9.2 no longer
allows (the id is read-only): the marks would be ignored. So the workers write down each test's
group once collected, and the controller's scheduler (loadgroup's, with that lookup) reads it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

ETCD_GROUP = "etcd-cluster"
_GROUPS_DIR_KEY = "mkd_groups_dir"  # workerinput: where the workers write their groups
_groups_dir = pytest.StashKey[Path]()
# Directories whose tests mostly start daemon processes, browsers and etcd: handed out first, so the
# workers do not end waiting on one of them while the others sit idle.
SLOW_FIRST = ("tests/fuzz/", "tests/e2e/", "tests/fleet/", "tests/cli/", "tests/deploy/")


def group_of(item: pytest.Item) -> str | None:
    if "etcd_cluster" in item.fixturenames:
        return ETCD_GROUP
    fixtures = getattr(item, "_fixtureinfo", None)
    if fixtures is None:
        return None
    shared = any(definition.scope == "module" and definition.baseid
                 for definitions in fixtures.name2fixturedefs.values() for definition in definitions)
    return item.nodeid.split("::", 1)[0] if shared else None


def pytest_itemcollected(item: pytest.Item) -> None:
    group = group_of(item)
    if group is not None:
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow directories first (a stable sort: each module's tests stay together, in order);
    on a worker, the groups written down for the controller."""
    def start_order(item: pytest.Item) -> int:
        return next((rank for rank, prefix in enumerate(SLOW_FIRST) if item.nodeid.startswith(prefix)),
                    len(SLOW_FIRST))

    items.sort(key=start_order)
    worker: dict[str, Any] | None = getattr(config, "workerinput", None)
    if worker is None or _GROUPS_DIR_KEY not in worker:
        return
    groups = {item.nodeid: mark.args[0] for item in items for mark in item.iter_markers("xdist_group")}
    target = Path(worker[_GROUPS_DIR_KEY]) / f"{worker['workerid']}.json"
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(groups))
    os.replace(partial, target)  # the controller never reads half a file


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Controller, for each worker: where to write its groups."""
    config: pytest.Config = node.config
    if _groups_dir not in config.stash:
        config.stash[_groups_dir] = Path(tempfile.mkdtemp(prefix="mkd-xdist-groups-"))
    node.workerinput[_GROUPS_DIR_KEY] = str(config.stash[_groups_dir])


def pytest_unconfigure(config: pytest.Config) -> None:
    if _groups_dir in config.stash:
        shutil.rmtree(config.stash[_groups_dir], ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SharedFixtureScheduling(LoadGroupScheduling):
        """loadgroup, with the groups the workers wrote down (they are identical: xdist checks
        that every worker collected the same tests)."""

        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:
                written = sorted(config.stash[_groups_dir].glob("*.json")) if _groups_dir in config.stash else []
                self.groups = json.loads(written[0].read_text()) if written else {}
            group = self.groups.get(nodeid)
            return group if group is not None else str(super()._split_scope(nodeid))

    return SharedFixtureScheduling(config, log)
