"""Schemathesis against a real daemon: no generated request may get a 5xx, and every answer
(problem+json included) matches the schema (DESIGN "Errors").

Two runs: the stateless phases over every operation, and the stateful phase, whose sequences
follow the schema's OpenAPI links (create → the instance's actions, PATCH and DELETE; upload →
the image) so load, start, stop and unload are reached with real instances. The event stream is
excluded (a stream would stall a sequence). `make test` gives each run a bounded budget;
`make fuzz` sets MKD_FUZZ_CASES (at least 5,000) and checks that load, start, stop and unload
each got at least 50 2xx.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess
from tests.helpers import POOL

# One worker runs both, one after the other: each run is bounded by time, so running them side by
# side would halve the cases each gets in its budget (tests/worker_groups.py).
pytestmark = pytest.mark.xdist_group("fuzz")

REPO = Path(__file__).resolve().parents[2]
BUDGET_S = int(os.environ.get("MKD_FUZZ_BUDGET_S", "45"))  # DESIGN "Testing notes": bounded
CASES = int(os.environ.get("MKD_FUZZ_CASES", "0"))  # make fuzz: the stateful run's case count
ACTIONS = ("load", "start", "stop", "unload")
CHECKS = "not_a_server_error,content_type_conformance,response_schema_conformance"
# One worker: with two threads hypothesis (inside schemathesis) trips a CPython 3.11 ast.parse race
# ("AST constructor recursion depth mismatch") on the Idempotency-Key header's negative cases.


def _st(daemon: DaemonProcess, cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    st = Path(sys.executable).with_name("st")
    result = subprocess.run(
        [str(st), "run", f"{daemon.url}/openapi.json", "--checks", CHECKS, "--workers", "1",
         "--generation-database", "none", "--exclude-path", "/v1/events",
         # a wait holds its request up to timeout_s (300 s): like a stream it would stall a sequence
         "--exclude-path", "/v1/instances/{ref}/wait", *args],
        capture_output=True, text=True, timeout=BUDGET_S + 600 + CASES // 5, cwd=cwd,  # reports stay out of the repo
        env={**os.environ, **(env or {})},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "Server error" not in result.stdout, output[-4000:]
    return output


def _tree_daemon(tmp_path: Path) -> DaemonProcess:
    config = tmp_path / "mkd.toml"
    config.write_text('[simulator]\nkernel_profile = "tree"\n')
    return DaemonProcess(tmp_path / "state", config=config)


def test_no_generated_request_gets_a_server_error(tmp_path: Path) -> None:
    with _tree_daemon(tmp_path) as daemon, daemon.client() as http:
        assert http.put("/v1/pool", json=POOL).status_code == 201
        _st(daemon, tmp_path, "--phases", "examples,coverage,fuzzing", "--max-examples", "25",
            "--max-time", str(BUDGET_S))
        assert http.get("/readyz").json() == {"status": "ready"}  # still healthy after the run


def test_stateful_sequences_reach_every_action(tmp_path: Path) -> None:
    kernel = imagegen.vmlinux()
    with _tree_daemon(tmp_path) as daemon, daemon.client() as http:
        assert http.put("/v1/pool", json=POOL).status_code == 201
        sha = http.post("/v1/images", content=kernel).json()["sha256"]
        kernel_file = tmp_path / sha
        kernel_file.write_bytes(kernel)
        log = tmp_path / "calls.tsv"
        # The stateful phase runs until its time is spent; --max-examples only keeps it from stopping early.
        limits = ["--max-time", str(BUDGET_S), *(["--max-examples", str(CASES)] if CASES else [])]
        _st(daemon, tmp_path, "--phases", "stateful", *limits, "--exclude-path", "/v1/pool",
            env={"SCHEMATHESIS_HOOKS": "tests.fuzz.hooks", "PYTHONPATH": str(REPO), "MKD_FUZZ_URL": daemon.url,
                 "MKD_FUZZ_KERNEL": str(kernel_file), "MKD_FUZZ_LOG": str(log)})
        assert http.get("/readyz").json() == {"status": "ready"}
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    for line in log.read_text().splitlines():
        status, label = line.split("\t")
        statuses[label][int(status)] += 1
    ok = {label: sum(n for code, n in counts.items() if 200 <= code < 300) for label, counts in statuses.items()}
    print("\nstateful run, per operation: 2xx / calls")  # noqa: T201
    for label in sorted(statuses):
        print(f"  {label}: {ok[label]} / {sum(statuses[label].values())}  {dict(sorted(statuses[label].items()))}")  # noqa: T201
    reached = {action: ok.get(f"POST /v1/instances/{{ref}}/{action}", 0) for action in ACTIONS}
    total = sum(sum(counts.values()) for counts in statuses.values())
    if CASES:
        assert total >= CASES, f"only {total} cases"
        assert all(n >= 50 for n in reached.values()), reached
    else:  # the bounded run still gets past the first refusal on every action
        assert all(n >= 1 for n in reached.values()), (reached, total)
