"""deploy/mkd.service passes `systemd-analyze verify` in a temporary root (DESIGN "Testing notes")."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "mkd.service"
HOST_UNITS = Path("/usr/lib/systemd/system")
TARGETS = ("sysinit.target", "basic.target", "local-fs.target", "multi-user.target", "shutdown.target")


def make_root(tmp_path: Path, unit_text: str) -> Path:
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/mkd.service").write_text(unit_text)
    (root / "etc/mkd").mkdir(parents=True)
    (root / "etc/mkd/mkd.toml").write_text("[daemon]\n")
    binary = root / "usr/bin/mkd"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    units = root / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    for target in TARGETS:  # the unit's dependencies, from this machine's systemd
        shutil.copy(HOST_UNITS / target, units / target)
    return root


def verify(root: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: `make test` installs Debian's systemd"
    return subprocess.run([analyze, "verify", f"--root={root}", "/etc/systemd/system/mkd.service"],
                          capture_output=True, text=True, timeout=60)


def test_the_unit_verifies(tmp_path: Path) -> None:
    result = verify(make_root(tmp_path, UNIT.read_text()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_a_broken_unit_would_be_caught(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("ExecStart=/usr/bin/mkd", "ExecStart=/usr/bin/no-such-mkd")
    result = verify(make_root(tmp_path, broken))
    assert result.returncode != 0 or "no-such-mkd" in result.stderr
