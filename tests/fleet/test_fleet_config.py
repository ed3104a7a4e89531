"""`[fleet]` settings (DESIGN "Fleet"): defaults, the environment, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from mkd.config import load_settings
from mkd.errors import InvalidInput


def test_defaults_and_the_advertised_url(tmp_path: Path) -> None:
    config = tmp_path / "mkd.toml"
    config.write_text('[daemon]\nlisten = "127.0.0.1:9000"\n[fleet]\nendpoints = ["http://127.0.0.1:2379/"]\n'
                      'node = "host-a"\n')
    settings = load_settings(config)
    fleet = settings.fleet
    assert fleet is not None and fleet.endpoints == ["http://127.0.0.1:2379"]
    assert (fleet.prefix, fleet.scheduler, fleet.lease_ttl_s, fleet.fence_grace_s, fleet.request_timeout_s,
            fleet.strategy) == ("/mkd/v1", True, 10, 5.0, 5.0, "most-allocated")
    assert settings.advertise_url == "http://127.0.0.1:9000"
    assert load_settings(None).fleet is None  # no section: no fleet


def test_the_environment_gives_endpoints_as_a_list() -> None:
    settings = load_settings(None, env={"MKD_FLEET__ENDPOINTS": "http://10.0.0.1:2379, http://10.0.0.2:2379",
                                        "MKD_FLEET__NODE": "host-b", "MKD_FLEET__ADVERTISE_URL": "http://host-b:8080/"})
    assert settings.fleet is not None
    assert settings.fleet.endpoints == ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    assert settings.advertise_url == "http://host-b:8080"


@pytest.mark.parametrize(("fleet", "says"), [
    ({"endpoints": []}, "endpoints"),
    ({"endpoints": ["10.0.0.1:2379"]}, "is not an http"),
    ({"endpoints": ["http://a:1"], "tls_cert": "/c.pem"}, "tls_cert and tls_key go together"),
    ({"endpoints": ["http://a:1"], "node": "bad name"}, "fleet.node"),
    ({"endpoints": ["http://a:1"], "strategy": "random"}, "fleet.strategy"),
    ({"endpoints": ["http://a:1"], "lease_ttl_s": 1}, "fleet.lease_ttl_s"),
    ({"endpoints": ["http://a:1"], "prefix": "mkd"}, "fleet.prefix"),
])
def test_what_is_refused(fleet: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        load_settings(None, overrides={f"fleet.{key}": value for key, value in fleet.items()})
