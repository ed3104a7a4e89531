"""Exit code 6: the CLI against a daemon served beyond loopback with a tokens file."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from mkd.cli.main import app
from mkd.testing.netns import NetworkNamespace
from tests.cli.conftest import ServedProcess, serve_beyond_loopback
from tests.helpers import MiB, write_tokens

READ_TOKEN = "cli-read-token-000001"
WRITE_TOKEN = "cli-write-token-00002"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedProcess]:
    """A daemon in a network namespace of its own: the CLI reaches it beyond loopback (DESIGN
    "Testing notes": never through the machine's external address)."""
    with NetworkNamespace() as namespace:
        yield from _served(tmp_path_factory, namespace)


def _served(tmp_path_factory: pytest.TempPathFactory, namespace: NetworkNamespace) -> Iterator[ServedProcess]:
    root = tmp_path_factory.mktemp("secured")
    tokens = root / "tokens"
    write_tokens(tokens, f"ops:read:{READ_TOKEN}\nadmin:write:{WRITE_TOKEN}\n")
    served = serve_beyond_loopback(root / "state", tokens, namespace)
    yield served
    served.proc.terminate()
    try:
        served.proc.wait(15)
    except subprocess.TimeoutExpired:
        served.proc.kill()


def mkd(served: ServedProcess, *args: str, token: str | None = None) -> Result:
    runner = CliRunner(env={"MKD_TOKEN": token, "MKD_URL": None, "MKD_SOCKET": None})
    return runner.invoke(app, ["--url", served.url, *args])


def test_no_token_is_exit_6(secured: ServedProcess) -> None:
    for args in (("host",), ("instances", "list"), ("events", "--count", "1")):
        result = mkd(secured, *args)
        assert result.exit_code == 6, (args, result.stdout, result.stderr, result.exception)
        assert result.stderr.startswith("mkd: 401") and result.stdout == ""


def test_read_token_reads_but_cannot_mutate(secured: ServedProcess) -> None:
    shown = mkd(secured, "host", "-o", "json", token=READ_TOKEN)
    assert shown.exit_code == 0 and json.loads(shown.stdout)["backend"] == "simulated"
    result = mkd(secured, "pool", "put", "--cpus", "2", "--memory-base", "0x100000000",
                 "--memory-bytes", str(64 * MiB), token=READ_TOKEN)
    assert result.exit_code == 6 and result.stderr.startswith("mkd: 403") and "read-only" in result.stderr
    pool = mkd(secured, "pool", "get", "-o", "json", token=READ_TOKEN)
    assert pool.exit_code == 0 and json.loads(pool.stdout)["cpus"] == []  # the refused put changed nothing


def test_write_token_mutates_and_wrong_token_is_6(secured: ServedProcess, tmp_path: Path) -> None:
    put = mkd(secured, "pool", "put", "--cpus", "2,3", "--memory-base", "0x100000000",
              "--memory-bytes", str(512 * MiB), token=WRITE_TOKEN)
    assert put.exit_code == 0, put.stderr
    created = mkd(secured, "instances", "create", "web", "--cpus", "2", "--memory-bytes", str(64 * MiB),
                  "-o", "json", token=WRITE_TOKEN)
    assert created.exit_code == 0 and json.loads(created.stdout)["state"] == "READY"
    assert mkd(secured, "instances", "delete", "web", token=WRITE_TOKEN[:-1] + "x").exit_code == 6
    assert mkd(secured, "instances", "delete", "web", token=WRITE_TOKEN).exit_code == 0


def test_plaintext_beyond_loopback_was_opted_into_and_warned(secured: ServedProcess) -> None:
    assert "insecure_plaintext = true" in secured.log.read_text()
