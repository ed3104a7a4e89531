"""Commands the kernel profile may lack, reads and conditional writes (the daemon runs rfc-v2)."""

from __future__ import annotations

from pathlib import Path

from mkd.devicetree.fdt import FDT_MAGIC
from tests.cli.conftest import RunCli
from tests.cli.test_cli_commands import no_instances_left, output, refused
from tests.helpers import POOL, MiB

__all__ = ["no_instances_left"]  # autouse there, imported so it runs here too: the daemon is shared


def test_stop_and_update_are_not_offered_without_the_capability(cli: RunCli) -> None:
    output(cli("instances", "create", "capweb", "--cpus", "2", "--memory-bytes", str(64 * MiB), "-o", "json"))
    refused(cli("instances", "stop", "capweb"), 5, "stop is not available", "rfc-v2", "halt")
    refused(cli("instances", "update", "capweb", "--cpus", "2,3"), 5, "update is not available", "hot update")
    assert output(cli("instances", "get", "capweb", "-o", "json"))["resources"]["cpus"] == [2]


def test_image_get_and_conditional_delete(cli: RunCli, tmp_path: Path) -> None:
    image = tmp_path / "blob"
    image.write_bytes(b"not a kernel, just bytes")
    sha = output(cli("images", "upload", str(image), "-o", "json"))["sha256"]
    shown = output(cli("images", "get", sha, "-o", "json"))
    assert shown == {**shown, "sha256": sha, "size": 24}
    refused(cli("images", "delete", sha, "--if-match", '"stale"'), 4)
    assert cli("images", "delete", sha, "--if-match", f'"{sha}"').exit_code == 0
    refused(cli("images", "get", sha), 3)


def test_pool_device_tree_and_conditional_put(cli: RunCli, tmp_path: Path) -> None:
    dts = cli("pool", "device-tree")
    assert dts.exit_code == 0 and dts.stdout.startswith("/dts-v1/;"), dts.stdout
    target = tmp_path / "root.dtb"
    assert cli("pool", "device-tree", "--dtb", str(target)).exit_code == 0
    assert int.from_bytes(target.read_bytes()[:4], "big") == FDT_MAGIC
    cpus = ",".join(str(c) for c in POOL["cpus"])
    refused(cli("pool", "put", "--cpus", cpus, "--memory-base", hex(POOL["memory_base"]),
                "--memory-bytes", str(POOL["memory_bytes"]), "--if-match", '"stale"'), 4)
