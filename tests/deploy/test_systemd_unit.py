"""deploy/mkd.service and deploy/mkd.socket pass `systemd-analyze verify` in a temporary root (DESIGN
"Testing notes"), alone and as the socket-activated pair."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mkd.bounded_http import FD_RESERVE
from mkd.config import LimitSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "mkd.service"
SOCKET = DEPLOY / "mkd.socket"


HOST_UNITS = Path("/usr/lib/systemd/system")
TARGETS = ("sysinit.target", "basic.target", "local-fs.target", "multi-user.target", "shutdown.target",
           "sockets.target")


def make_root(tmp_path: Path, unit_text: str, socket_text: str | None = None) -> Path:
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/mkd.service").write_text(unit_text)
    if socket_text is not None:
        (root / "etc/systemd/system/mkd.socket").write_text(socket_text)
    (root / "etc/mkd").mkdir(parents=True)
    (root / "etc/mkd/mkd.toml").write_text("[daemon]\n")
    binary = root / "usr/bin/mkd"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    units = root / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    for target in TARGETS:  # the units' dependencies, from this machine's systemd
        shutil.copy(HOST_UNITS / target, units / target)
    return root


def verify(root: Path, *units: str) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: `make test` installs Debian's systemd"
    paths = [f"/etc/systemd/system/{unit}" for unit in units or ("mkd.service",)]
    return subprocess.run([analyze, "verify", f"--root={root}", *paths], capture_output=True, text=True, timeout=60)


def test_the_unit_verifies(tmp_path: Path) -> None:
    result = verify(make_root(tmp_path, UNIT.read_text()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_the_socket_and_its_service_verify(tmp_path: Path) -> None:
    result = verify(make_root(tmp_path, UNIT.read_text(), SOCKET.read_text()), "mkd.socket", "mkd.service")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_the_socket_listens_where_the_service_looks() -> None:
    """The unix socket of mkd.socket is the path mkd.service names, inside its preserved runtime directory."""
    listens = [line.split("=", 1)[1] for line in SOCKET.read_text().splitlines() if line.startswith("ListenStream=")]
    service = UNIT.read_text()
    assert "/run/mkd/mkd.sock" in listens and "--socket /run/mkd/mkd.sock" in service
    assert "RuntimeDirectory=mkd\n" in service and "RuntimeDirectoryPreserve=yes\n" in service
    assert all(address.startswith(("/", "127.0.0.1:", "[::1]:")) for address in listens)  # loopback only


def test_a_broken_unit_would_be_caught(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("ExecStart=/usr/bin/mkd", "ExecStart=/usr/bin/no-such-mkd")
    result = verify(make_root(tmp_path, broken))
    assert result.returncode != 0 or "no-such-mkd" in result.stderr


@pytest.mark.parametrize(("good", "bad"), [("ListenStream=", "ListenStreem="), ("Service=mkd.service", "Service=")])
def test_a_broken_socket_would_be_caught(tmp_path: Path, good: str, bad: str) -> None:
    broken = SOCKET.read_text().replace(good, bad, 1)
    result = verify(make_root(tmp_path, UNIT.read_text(), broken), "mkd.socket")
    assert result.returncode != 0 or result.stderr.strip(), (good, bad)


def test_the_unit_bounds_files_memory_and_tasks(tmp_path: Path) -> None:
    """DESIGN "Limits": LimitNOFILE leaves room for max_connections beside the daemon's own files."""
    directives = dict(line.split("=", 1) for line in UNIT.read_text().splitlines() if "=" in line
                      and not line.startswith("#"))
    assert int(directives["LimitNOFILE"]) >= LimitSettings().max_connections + FD_RESERVE
    assert directives["MemoryMax"].endswith("G") and int(directives["TasksMax"]) >= 64
    assert "noroot" in directives["SecureBits"].split()
    # systemd-analyze reads these values (so test_the_unit_verifies' empty stderr covers them):
    for directive in ("LimitNOFILE", "MemoryMax", "TasksMax"):
        broken = UNIT.read_text().replace(f"{directive}={directives[directive]}", f"{directive}=lots")
        result = verify(make_root(tmp_path / directive, broken))
        assert directive in result.stderr, result.stderr


APPLY = DEPLOY / "mkd-apply.service"


def test_the_apply_at_boot_unit_verifies_beside_the_daemon(tmp_path: Path) -> None:
    root = make_root(tmp_path, UNIT.read_text())
    (root / "etc/systemd/system/mkd-apply.service").write_text(APPLY.read_text())
    (root / "etc/mkd/instances.d").mkdir()
    result = verify(root, "mkd-apply.service", "mkd.service")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr
    text = APPLY.read_text()
    # after the daemon, waiting for its readiness, applying the directory and waiting for convergence
    assert "After=mkd.service" in text and "Requires=mkd.service" in text
    assert "probe readyz --retry-for" in text and "apply -f /etc/mkd/instances.d --wait" in text
    broken = text.replace("ExecStart=/usr/bin/mkd", "ExecStart=/usr/bin/no-such-mkd")
    (root / "etc/systemd/system/mkd-apply.service").write_text(broken)
    failed = verify(root, "mkd-apply.service")
    assert failed.returncode != 0 or "no-such-mkd" in failed.stderr
