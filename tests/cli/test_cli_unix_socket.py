"""`mkd serve` listens on a unix socket (0660) beside loopback by default (DESIGN "Security")."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx

from mkd.testing.daemon_process import DaemonProcess, free_port
from tests.cli.conftest import clean_env, run_mkd


def test_the_default_unix_socket_serves_the_api(tmp_path: Path) -> None:
    with DaemonProcess(tmp_path / "state", env=clean_env()) as daemon:
        path = daemon.state_dir / "mkd.sock"
        assert stat.S_ISSOCK(path.stat().st_mode) and stat.S_IMODE(path.stat().st_mode) == 0o660
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://localhost") as http:
            assert http.get("/readyz").json() == {"status": "ready"}
            assert http.get("/v1/instances").json()["items"] == []


def test_unix_socket_false_binds_none(tmp_path: Path) -> None:
    with DaemonProcess(tmp_path / "state", env={**clean_env(), "MKD_DAEMON__UNIX_SOCKET": "false"}) as daemon:
        assert not (daemon.state_dir / "mkd.sock").exists()
        assert httpx.get(daemon.url + "/readyz").status_code == 200


def test_a_socket_path_too_long_for_the_kernel_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    finished = run_mkd("serve", "--socket", str(deep / "mkd.sock"), "--state-dir", str(tmp_path / "state"),
                       "--listen", f"127.0.0.1:{free_port()}")
    assert finished.code == 5
    assert finished.stderr.startswith("mkd: unix socket path") and "unix_socket = false" in finished.stderr
