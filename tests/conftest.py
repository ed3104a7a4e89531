"""Fixtures shared by the API and end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mkd.app import create_app
from mkd.config import Settings, load_settings
from tests.helpers import POOL

pytest_plugins = ["tests.worker_groups"]  # which tests share a pytest-xdist worker, and in what order

RFC_V2 = {"kernel_profile": "rfc-v2"}  # tests about the seed say so: the default is tree

MakeSettings = Callable[..., Settings]
MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_settings(tmp_path: Path) -> MakeSettings:
    made = 0

    def make(**sections: dict[str, Any]) -> Settings:
        nonlocal made
        made += 1  # each daemon of a test gets its own state directory
        overrides: dict[str, Any] = {"daemon.state_dir": tmp_path / f"state{made}",
                                     "daemon.allowed_hosts": ["testserver"]}
        for section, values in sections.items():
            for key, value in values.items():
                overrides[f"{section}.{key}"] = value
        return load_settings(None, overrides=overrides)

    return make


@pytest.fixture
def make_client(make_settings: MakeSettings) -> Iterator[MakeClient]:
    clients: list[TestClient] = []

    def make(*, pool: dict[str, Any] | None = POOL, **sections: dict[str, Any]) -> TestClient:
        client = TestClient(create_app(make_settings(**sections)), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        if pool is not None:
            reply = client.put("/v1/pool", json=pool)
            assert reply.status_code == 201, reply.text  # a new daemon: the pool is created
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    """A daemon over the default kernel profile (tree), for tests that hold under either."""
    return make_client()


@pytest.fixture
def v2_client(make_client: MakeClient) -> TestClient:
    """A daemon over the rfc-v2 kernel (the seed), for tests about its behaviour."""
    return make_client(simulator=RFC_V2)


