"""One private 3-member etcd cluster for the fleet tests (DESIGN "Testing notes"); each test
gets its own key prefix, so tests share the cluster without seeing each other's keys."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from mkd.testing.etcd_cluster import EtcdCluster

_prefixes = itertools.count(1)


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    root: Path = tmp_path_factory.mktemp("etcd")
    with EtcdCluster(root / "cluster") as cluster:
        yield cluster


@pytest.fixture
def fleet_prefix() -> str:
    return f"/mkd-test/{next(_prefixes)}"
