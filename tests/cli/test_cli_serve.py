"""`mkd serve` refusals and `mkd doctor` on this machine (which has no multikernel support)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mkd.cli.main import app
from mkd.testing.daemon_process import free_port
from tests.cli.conftest import clean_env, run_mkd
from tests.helpers import write_tokens

MULTIKERNEL_FS = Path("/sys/fs/multikernel")
needs_plain_machine = pytest.mark.skipif(MULTIKERNEL_FS.exists(),
                                         reason="this machine has multikernel support: the host backend would run")


@needs_plain_machine
def test_serve_host_backend_refuses_with_the_doctors_message(tmp_path: Path) -> None:
    finished = run_mkd("serve", "--backend", "host", "--state-dir", str(tmp_path / "state"),
                       "--listen", f"127.0.0.1:{free_port()}")
    assert finished.code != 0
    assert "Traceback" not in finished.stderr and finished.stdout == ""
    assert finished.stderr.startswith("mkd: the host backend cannot run on this machine")
    assert "multikernel" in finished.stderr and "fix:" in finished.stderr
    assert not (tmp_path / "state" / "mkd.sqlite3").exists()  # refused before opening anything


@needs_plain_machine
def test_doctor_prints_failures_with_fixes_and_exits_1() -> None:
    result = CliRunner(env={"MKD_DAEMON__BACKEND": None}).invoke(app, ["doctor"])
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    failures = [i for i, line in enumerate(lines) if line.startswith("[FAIL] ")]
    assert any(lines[i].startswith("[FAIL] multikernel:") for i in failures)
    for i in failures:  # every failure is followed by its fix
        assert lines[i + 1].strip().startswith("fix: "), lines
    assert "mount -t multikernel" in result.stdout


@pytest.mark.parametrize("listen", ["0.0.0.0:{port}", "[::]:{port}"])
def test_serve_beyond_loopback_without_tokens_file_refuses(tmp_path: Path, listen: str) -> None:
    address = listen.format(port=free_port())
    finished = run_mkd("serve", "--listen", address, "--state-dir", str(tmp_path / "state"), timeout=20)
    assert finished.code == 6, (finished.stdout, finished.stderr)
    assert finished.stderr.startswith(f"mkd: refusing to listen on {address}")
    assert "tokens" in finished.stderr and "Traceback" not in finished.stderr


def test_serve_with_a_malformed_tokens_file_refuses_with_its_line(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    write_tokens(tokens, "admin:write:short\n")
    env = clean_env(MKD_DAEMON__TOKENS_FILE=str(tokens))
    finished = run_mkd("serve", "--listen", f"0.0.0.0:{free_port()}", "--state-dir", str(tmp_path / "state"),
                       env=env, timeout=20)
    assert finished.code == 5, (finished.stdout, finished.stderr)
    assert f"{tokens}:1: expected name:read|write:token" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_serve_rejects_an_unknown_backend() -> None:
    result = CliRunner().invoke(app, ["serve", "--backend", "qemu"])
    assert result.exit_code == 5 and "simulated or host" in result.stderr
