"""`mkd apply -f` and `mkd get NAME -o yaml` (issue 14, DESIGN "Desired state", CLI): local
images uploaded first, the plan printed before anything changes, --prune, --wait, and a document
that `get` prints is taken back unchanged."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from mkd.cli.main import app
from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess
from tests.cli.conftest import RunCli, clean_env
from tests.helpers import POOL


@pytest.fixture(scope="module")
def tree_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    env = clean_env(MKD_SIMULATOR__KERNEL_PROFILE="tree", MKD_RECONCILER__POLL_INTERVAL_S="0.1",
                    MKD_SIMULATOR__HALT_ACK_TIMEOUT_S="0.5")
    with DaemonProcess(tmp_path_factory.mktemp("apply") / "state", env=env) as running, \
            running.client() as http:
        assert http.put("/v1/pool", json=POOL).status_code == 201
        yield running


@pytest.fixture
def mkd(tree_daemon: DaemonProcess) -> RunCli:
    runner = CliRunner(env={k: None for k in os.environ if k.startswith("MKD_")})

    def run(*args: str) -> Result:
        return runner.invoke(app, ["--url", tree_daemon.url, *args])

    return run


def write_docs(folder: Path, kernel: str = "vmlinux", cmdline: str = "quiet") -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "vmlinux").write_bytes(imagegen.vmlinux())
    (folder / "web.yaml").write_text(
        "apiVersion: mkd.dev/v1\nkind: Instance\nmetadata: {name: aweb, labels: {app: apply}}\n"
        f"spec:\n  kernel: {kernel}\n  cmdline: {cmdline}\n"
        "  resources: {cpus: [6], memory_bytes: 134217728}\n"
        "---\n"
        "apiVersion: mkd.dev/v1\nkind: Instance\nmetadata: {name: adb}\n"
        f"spec:\n  kernel: {kernel}\n  state: Loaded\n  resources: {{cpus: [7], memory_bytes: 134217728}}\n"
    )
    return folder


def test_apply_plans_uploads_applies_and_waits(mkd: RunCli, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    planned = mkd("apply", "-f", str(folder), "--dry-run", "--no-progress")
    assert planned.exit_code == 0, planned.output
    assert "+ create aweb (create, load, start)" in planned.output
    assert "+ create adb (create, load)" in planned.output
    assert mkd("instances", "get", "aweb", "-o", "json").exit_code == 3  # nothing changed
    applied = mkd("apply", "-f", str(folder), "--wait", "--no-progress")
    assert applied.exit_code == 0, applied.output
    assert "ready aweb (generation 1)" in applied.output and "ready adb (generation 1)" in applied.output
    again = mkd("apply", "-f", str(folder), "--no-progress")
    assert "= unchanged aweb" in again.output and "= unchanged adb" in again.output
    changed = mkd("apply", "-f", str(write_docs(tmp_path / "docs", cmdline="loglevel=7")), "--wait", "--no-progress")
    assert "~ change aweb (stop, unload, load, start)" in changed.output, changed.output
    assert "= unchanged adb" in changed.output


def test_get_prints_a_document_apply_takes_back_unchanged(mkd: RunCli, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    assert mkd("apply", "-f", str(folder), "--wait", "--no-progress").exit_code == 0
    shown = mkd("get", "aweb", "-o", "yaml")
    assert shown.exit_code == 0, shown.output
    document = yaml.safe_load(shown.output)
    assert document["kind"] == "Instance" and document["metadata"]["name"] == "aweb"
    saved = tmp_path / "round-trip.yaml"
    saved.write_text(shown.output)
    back = mkd("apply", "-f", str(saved), "--no-progress")
    assert back.exit_code == 0 and "= unchanged aweb" in back.output, back.output
    table = mkd("get", "aweb", "-o", "table")
    assert "Running" in table.output and "True" in table.output


def test_prune_deletes_only_declared_instances_the_files_drop(mkd: RunCli, tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs")
    assert mkd("apply", "-f", str(folder), "--wait", "--no-progress").exit_code == 0
    assert mkd("instances", "create", "plain", "--cpus", "8", "--memory", "64M", "-o", "json").exit_code == 0
    (folder / "web.yaml").write_text((folder / "web.yaml").read_text().split("---\n")[0])  # adb is gone
    pruned = mkd("apply", "-f", str(folder), "--prune", "--wait", "--no-progress")
    assert pruned.exit_code == 0, pruned.output
    assert "- delete adb" in pruned.output and "plain" not in pruned.output
    assert "deleted adb" in pruned.output
    assert mkd("instances", "get", "adb", "-o", "json").exit_code == 3
    assert mkd("instances", "get", "plain", "-o", "json").exit_code == 0  # not declared: never pruned
    assert mkd("instances", "delete", "plain").exit_code == 0


def test_bad_documents_are_exit_5_before_any_change(mkd: RunCli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Deployment\n")
    assert mkd("apply", "-f", str(bad)).exit_code == 5
    missing = tmp_path / "missing.yaml"
    missing.write_text("apiVersion: mkd.dev/v1\nkind: Instance\nmetadata: {name: m}\n"
                       "spec: {kernel: ./nope, resources: {cpus: [9], memory_bytes: 134217728}}\n")
    result = mkd("apply", "-f", str(missing))
    assert result.exit_code == 5 and "neither a sha256 nor a file" in result.output
    twice = tmp_path / "twice.yaml"
    twice.write_text(missing.read_text() + "---\n" + missing.read_text())
    assert "declared twice" in mkd("apply", "-f", str(twice)).output
