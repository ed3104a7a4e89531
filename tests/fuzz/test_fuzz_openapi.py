"""Schemathesis against a real daemon: no generated request may get a 5xx (DESIGN "Errors")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mkd.testing.daemon_process import DaemonProcess
from tests.helpers import POOL

BUDGET_S = 80  # DESIGN "Testing notes": fuzzing gets a bounded budget
# One worker: with two threads hypothesis (inside schemathesis) trips a CPython 3.11 ast.parse race
# ("AST constructor recursion depth mismatch") on the Idempotency-Key header's negative cases.


def test_no_generated_request_gets_a_server_error(tmp_path: Path) -> None:
    with DaemonProcess(tmp_path / "state") as daemon, daemon.client() as http:
        assert http.put("/v1/pool", json=POOL).status_code == 201
        st = Path(sys.executable).with_name("st")
        result = subprocess.run(
            [str(st), "run", f"{daemon.url}/openapi.json", "--checks", "not_a_server_error",
             "--max-examples", "25", "--max-time", str(BUDGET_S), "--workers", "1",
             "--generation-database", "none", "--exclude-path", "/v1/events"],
            capture_output=True, text=True, timeout=BUDGET_S + 120, cwd=tmp_path,  # its reports stay out of the repo
        )
        tail = (result.stdout + result.stderr)[-4000:]
        assert result.returncode == 0, tail
        assert "Server error" not in result.stdout, tail
        # The daemon is still healthy after the run.
        assert http.get("/readyz").json() == {"status": "ready"}
