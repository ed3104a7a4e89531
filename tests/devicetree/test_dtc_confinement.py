"""dtc runs confined (DESIGN "Security": child processes that parse input) and gated (DESIGN
"Limits": dtc_concurrency / dtc_queue): read from /proc of a running dtc child."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mkd.config import LimitSettings
from mkd.devicetree import dts
from mkd.errors import OverLimit

SIMPLE = "/dts-v1/;\n/ { model = \"m\"; };\n"
CAP_LINES = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


@pytest.fixture
def slow_dtc(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A dtc stand-in that records its pid and its limits, waits for a go file, then runs dtc."""
    pids = tmp_path / "pids"
    pids.mkdir()
    go = tmp_path / "go"
    script = tmp_path / "slow-dtc"
    script.write_text(f"""#!/bin/sh
echo $$ > {pids}/$$
ulimit -t > {pids}/$$.cpu
ulimit -v > {pids}/$$.as
while [ ! -e {go} ]; do sleep 0.02; done
exec dtc "$@"
""")
    script.chmod(0o755)
    yield script, pids
    go.touch()
    dts.configure_dtc(LimitSettings())


def _wait_for(pids: Path, count: int) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [int(p.name) for p in pids.iterdir() if p.name.isdigit() and p.read_text().strip()]
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"{count} dtc children did not start")


def test_a_running_dtc_has_no_capabilities_and_bounded_resources(slow_dtc: tuple[Path, Path]) -> None:
    script, pids = slow_dtc
    dts.configure_dtc(LimitSettings(dtc_path=script))
    result: list[bytes] = []
    worker = threading.Thread(target=lambda: result.append(dts.dts_to_dtb(SIMPLE)))
    worker.start()
    (pid,) = _wait_for(pids, 1)
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    for name in CAP_LINES:
        assert int(status[name].strip(), 16) == 0, (name, status[name])
    assert status["NoNewPrivs"].strip() == "1"
    assert (pids / f"{pid}.cpu").read_text().strip() == "5"
    assert int((pids / f"{pid}.as").read_text()) * 1024 == 256 << 20
    (script.parent / "go").touch()
    worker.join(10)
    assert result and dts.is_dtb(result[0])


def test_past_concurrency_and_queue_dtc_is_503_with_retry_after(slow_dtc: tuple[Path, Path]) -> None:
    script, pids = slow_dtc
    dts.configure_dtc(LimitSettings(dtc_path=script, dtc_concurrency=1, dtc_queue=1))
    done: list[bytes] = []
    workers = [threading.Thread(target=lambda: done.append(dts.dts_to_dtb(SIMPLE))) for _ in range(2)]
    for worker in workers:
        worker.start()
        time.sleep(0.1)  # the first takes the slot, the second waits in the queue
    _wait_for(pids, 1)
    with pytest.raises(OverLimit) as refused:
        dts.dts_to_dtb(SIMPLE)
    assert refused.value.status == 503 and refused.value.limit == "dtc_queue"
    assert refused.value.headers["Retry-After"] == "1"
    assert len([p for p in pids.iterdir() if p.name.isdigit()]) == 1  # only one ran at once
    (script.parent / "go").touch()
    for worker in workers:
        worker.join(10)
    assert len(done) == 2


def test_a_dtc_over_its_cpu_limit_is_a_refusal(tmp_path: Path) -> None:
    spin = tmp_path / "spin-dtc"
    spin.write_text("#!/bin/sh\nwhile :; do :; done\n")
    spin.chmod(0o755)
    dts.configure_dtc(LimitSettings(dtc_path=spin, dtc_cpu_s=1, dtc_timeout_s=30))
    try:
        with pytest.raises(Exception) as refused:
            dts.dts_to_dtb(SIMPLE)
        assert "over its limits" in str(refused.value)
    finally:
        dts.configure_dtc(LimitSettings())
