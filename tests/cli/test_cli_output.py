"""What the CLI prints for people (tables) and for scripts (-o json|yaml|wide), and what it accepts
(CPU ranges, sizes), against the shared daemon process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from mkd.cli.main import app
from mkd.cli.quantities import format_cpu_list, format_size
from mkd.testing.daemon_process import DaemonProcess, free_port
from tests.cli.conftest import REPO, RunCli, clean_env, newest_event_id
from tests.cli.test_cli_commands import no_instances_left, output, refused
from tests.helpers import POOL, MiB

__all__ = ["no_instances_left"]  # autouse there: the shared daemon is left without instances

MKD = Path(sys.executable).parent / "mkd"  # the console script pip installed


def table(text: str) -> list[list[str]]:
    """A piped table: a header line, then one line per row; cells are separated by blanks."""
    return [line.split() for line in text.splitlines() if line.strip()]


def test_ranges_and_sizes_reach_the_api_as_numbers(cli: RunCli) -> None:
    created = output(cli("instances", "create", "web", "--cpus", "2-4,6", "--memory", "256M", "-o", "json"))
    assert created["resources"]["cpus"] == [2, 3, 4, 6] and created["resources"]["memory_bytes"] == 256 * MiB
    hexed = output(cli("instances", "create", "db", "--cpu-count", "1", "--memory-bytes", "0x4000000", "-o", "json"))
    assert hexed["resources"]["memory_bytes"] == 64 * MiB  # --memory-bytes kept, and takes sizes too


def test_instances_list_is_a_table_by_default(cli: RunCli) -> None:
    output(cli("instances", "create", "web", "--cpus", "2-5,8", "--memory", "256M", "-o", "json"))
    result = cli("instances", "list")
    assert result.exit_code == 0, result.stderr
    rows = table(result.stdout)
    assert rows[0] == ["ID", "NAME", "STATE", "CPUS", "MEMORY", "KERNEL"]
    assert rows[1][1:] == ["web", "READY", "2-5,8", "256M", "-"]
    wide = table(cli("instances", "list", "-o", "wide").stdout)
    assert wide[0][:6] == rows[0] and "UID" in wide[0] and len(wide[0]) > len(rows[0])
    assert wide[1][-1] == output(cli("instances", "get", "web", "-o", "json"))["uid"]


def test_yaml_is_the_json_body(cli: RunCli) -> None:
    output(cli("instances", "create", "web", "--cpus", "2", "--memory", "64M", "-o", "json"))
    for args in (("instances", "list"), ("instances", "get", "web"), ("pool", "get"), ("host",), ("images", "list")):
        as_yaml = cli(*args, "-o", "yaml")
        assert as_yaml.exit_code == 0, as_yaml.stderr
        assert yaml.safe_load(as_yaml.stdout) == output(cli(*args, "-o", "json")), args
        assert "!!python" not in as_yaml.stdout


@pytest.mark.parametrize("args", [
    ("instances", "get", "web"), ("pool", "get"), ("host",), ("images", "list"), ("instances", "list"),
])
@pytest.mark.parametrize("fmt", ["table", "wide"])
def test_every_read_has_a_table(cli: RunCli, args: tuple[str, ...], fmt: str) -> None:
    output(cli("instances", "create", "web", "--cpus", "2-3", "--memory", "64M", "-o", "json"))
    result = cli(*args, "-o", fmt)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert result.stdout.strip() and not result.stdout.lstrip().startswith(("{", "["))
    assert all(line == line.rstrip() for line in result.stdout.splitlines())


def test_tables_show_what_people_read(cli: RunCli) -> None:
    output(cli("instances", "create", "web", "--cpus", "2-3", "--memory", "64M", "-o", "json"))
    shown = fields(cli("instances", "get", "web").stdout)
    assert shown["cpus"] == "2-3" and shown["memory"].startswith("64M in 0x")
    pool = fields(cli("pool", "get").stdout)
    assert pool["cpus"] == format_cpu_list(POOL["cpus"])
    assert pool["memory"] == f"{format_size(POOL['memory_bytes'])} at {hex(POOL['memory_base'])}"
    host = cli("host").stdout
    assert ["NUMA", "LLC", "CPUS"] in table(host)
    assert "halt" in fields(host)["lacks"]


def fields(text: str) -> dict[str, str]:
    """A piped detail view: `name  value` lines (names may hold one blank: `free cpus`)."""
    pairs = {}
    for line in text.splitlines():
        name, _, value = line.partition("  ")
        if name and value.strip():
            pairs[name] = value.strip()
    return pairs


def test_an_unknown_output_format_is_a_usage_error(cli: RunCli) -> None:
    result = cli("instances", "list", "-o", "xml")
    assert result.exit_code == 2 and "xml" in result.stderr


@pytest.mark.parametrize(("args", "reason"), [
    (("instances", "create", "web", "--cpus", "5-2", "--memory", "64M"), "runs backwards"),
    (("instances", "create", "web", "--cpus", "2", "--memory", "1.5G"), "whole numbers only"),
    (("instances", "create", "web", "--cpus", "2", "--memory", "lots"), "wants a size"),
    (("instances", "create", "web", "--cpus", "2"), "--memory is needed"),
    (("instances", "update", "web"), "nothing to update"),
    (("instances", "update", "web", "--cpus", "2-x"), "neither a CPU id nor a range"),
    (("pool", "put", "--cpus", "2-15", "--memory-base", "4G", "--memory", "1Q"), "wants a size"),
    (("pool", "put", "--cpus", "2-15", "--memory-base", "four", "--memory", "1G"), "--memory-base"),
    (("pool", "put", "--cpus", "2-15", "--memory-base", "4G", "--memory", "1G", "--llc-way-mask", "ff"),
     "--llc-way-mask"),
    (("probe", "livez"), "healthz or readyz"),
])
def test_bad_input_is_exit_5_before_any_request(args: tuple[str, ...], reason: str) -> None:
    # No daemon listens at this URL: exit 5 (not 7) shows the input was refused before any request.
    closed = f"http://127.0.0.1:{free_port()}"
    refused(CliRunner().invoke(app, ["--url", closed, *args]), 5, reason)


def test_upload_progress_on_stderr_and_the_image_on_stdout(cli: RunCli, tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(3 * MiB + 5))
    result = cli("images", "upload", str(blob), "--progress", "-o", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["size"] == 3 * MiB + 5
    assert "blob" in result.stderr and "3.0/3.0 MiB" in result.stderr
    quiet = cli("images", "upload", str(blob), "-o", "json")  # not a terminal: no bar unless asked
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert cli("images", "delete", json.loads(result.stdout)["sha256"]).exit_code == 0


def test_an_upload_streams_the_file(daemon: DaemonProcess, tmp_path: Path) -> None:
    """A 64 MiB upload never holds the file in memory: Python's peak stays a few 1 MiB blocks."""
    big = tmp_path / "big"
    with open(big, "wb") as fh:
        fh.truncate(64 * MiB)
    runner = CliRunner(env={"MKD_URL": None, "MKD_SOCKET": None})
    tracemalloc.start()
    try:
        result = runner.invoke(app, ["--url", daemon.url, "images", "upload", str(big), "--progress", "-o", "json"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, (result.stderr, result.exception)
    image: dict[str, Any] = json.loads(result.stdout)
    assert image["size"] == 64 * MiB
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB for a 64 MiB upload"
    with daemon.client() as http:
        assert http.delete(f"/v1/images/{image['sha256']}").status_code == 204


def test_events_are_lines_for_people_and_json_lines_for_scripts(cli: RunCli, daemon: DaemonProcess) -> None:
    before = newest_event_id(daemon.url)
    created = output(cli("instances", "create", "ev", "--cpus", "5", "--memory", "64M", "-o", "json"))
    people = cli("events", "--last-event-id", str(before), "--count", "1")
    assert people.exit_code == 0, people.stderr
    assert people.stdout.split() == [str(before + 1), "created", f"ev({created['id']})", "-", "->", "READY", "(api)"]
    as_yaml = cli("events", "--last-event-id", str(before), "--count", "1", "-o", "yaml")
    docs = [d for d in yaml.safe_load_all(as_yaml.stdout) if d is not None]
    assert docs == [{"id": before + 1, "event": "created", "data": {**docs[0]["data"], "name": "ev", "to": "READY"}}]


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"mkd {version('mkd')}\n"
    process = subprocess.run([MKD, "--version"], capture_output=True, text=True, timeout=30, check=False)
    assert process.returncode == 0 and process.stdout.startswith("mkd ")


# The shell named on the command line, not guessed from the parent processes (typer's switch for
# this): under a test runner the parent may be no shell at all, and detection then fails.
NAMED_SHELL = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}


def test_shell_completion_script_and_answers() -> None:
    env = clean_env(PATH=f"{MKD.parent}:{os.environ.get('PATH', '')}", **NAMED_SHELL)
    script = subprocess.run([MKD, "--show-completion", "bash"], capture_output=True, text=True, timeout=30,
                            env=env, check=False)
    assert script.returncode == 0, script.stderr
    assert "complete -o default -F _mkd_completion mkd" in script.stdout
    # bash loads the script and registers it; the completion call answers subcommands and -o choices.
    registered = subprocess.run(["bash", "-c", 'source <(mkd --show-completion bash) && complete -p mkd'],
                                capture_output=True, text=True, timeout=30, env=env, cwd=REPO, check=False)
    assert registered.returncode == 0 and "_mkd_completion" in registered.stdout, registered.stderr
    for words, cword, expected in (("mkd inst", "1", {"instances"}), ("mkd instances list -o ", "4",
                                                                      {"table", "wide", "json", "yaml"})):
        answer = subprocess.run([MKD], capture_output=True, text=True, timeout=30, check=False,
                                env={**env, "_MKD_COMPLETE": "complete_bash", "COMP_WORDS": words,
                                     "COMP_CWORD": cword})
        assert set(answer.stdout.split()) == expected, answer
    for shell in ("zsh", "fish"):
        other = subprocess.run([MKD, "--show-completion", shell], capture_output=True, text=True, timeout=30,
                               env=env, check=False)
        assert other.returncode == 0 and "_MKD_COMPLETE" in other.stdout, (shell, other.stderr)


def test_probe_over_the_unix_socket(daemon: DaemonProcess) -> None:
    sock = daemon.state_dir / "mkd.sock"
    for which, body in (("healthz", {"status": "ok"}), ("readyz", {"status": "ready"})):
        result = CliRunner(env={"MKD_URL": None}).invoke(app, ["--socket", str(sock), "probe", which])
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout) == body
    listed = CliRunner(env={"MKD_URL": None}).invoke(app, ["--socket", str(sock), "instances", "list", "-o", "json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout) == [], listed.stderr  # not only the probes
    missing = CliRunner().invoke(app, ["--socket", str(daemon.state_dir / "absent.sock"), "probe", "readyz"])
    refused(missing, 7, "cannot reach mkd")


def test_install_completion_writes_the_script_where_bash_reads_it(tmp_path: Path) -> None:
    env = clean_env(HOME=str(tmp_path), PATH=f"{MKD.parent}:{os.environ.get('PATH', '')}", **NAMED_SHELL)
    done = subprocess.run([MKD, "--install-completion", "bash"], capture_output=True, text=True, timeout=30, env=env,
                          check=False)
    assert done.returncode == 0, done.stderr
    scripts = list(tmp_path.rglob("mkd.sh"))
    assert len(scripts) == 1 and "_mkd_completion" in scripts[0].read_text()
    assert str(scripts[0].relative_to(tmp_path)) in (tmp_path / ".bashrc").read_text()
