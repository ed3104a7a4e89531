"""Settings from the environment read integers the way the TOML file does."""

from __future__ import annotations

import pytest

from mkd.config import load_settings
from mkd.errors import InvalidInput


def test_prefixed_integers_from_the_environment() -> None:
    settings = load_settings(env={"MKD_SIMULATOR__POOL_BASE": "0x100000000", "MKD_SIMULATOR__POOL_BYTES": "1073741824",
                                  "MKD_SIMULATOR__CPUS": "0o20"})
    assert settings.simulator.pool_base == 1 << 32
    assert settings.simulator.pool_bytes == 1 << 30
    assert settings.simulator.cpus == 16


def test_a_bad_value_from_the_environment_names_the_setting() -> None:
    with pytest.raises(InvalidInput) as raised:
        load_settings(env={"MKD_SIMULATOR__POOL_BASE": "0xZZ"})
    assert "simulator.pool_base" in raised.value.detail


def test_the_status_poll_interval_is_positive() -> None:
    assert load_settings(env={}).daemon.status_poll_interval_s == 1.0  # DESIGN: 1 s by default
    assert load_settings(env={"MKD_DAEMON__STATUS_POLL_INTERVAL_S": "0.25"}).daemon.status_poll_interval_s == 0.25
    with pytest.raises(InvalidInput) as raised:
        load_settings(env={"MKD_DAEMON__STATUS_POLL_INTERVAL_S": "0"})
    assert "status_poll_interval_s" in raised.value.detail
