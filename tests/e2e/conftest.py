"""A failed end-to-end test shows the end of every daemon log it left: DaemonProcess writes
`mkd-<port>.log` beside each state directory under the test's tmp_path, and an intermittent
failure is only diagnosable from what the daemon said at the time."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

LOG_TAIL_CHARS = 3000


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if not isinstance(tmp_path, Path):
        return
    for log in sorted(tmp_path.rglob("mkd-*.log"), key=lambda path: path.stat().st_mtime):
        text = log.read_text(errors="replace")
        report.sections.append((f"daemon log {log.relative_to(tmp_path)} (last {LOG_TAIL_CHARS} characters)",
                                text[-LOG_TAIL_CHARS:]))
