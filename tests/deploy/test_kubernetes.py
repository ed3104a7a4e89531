"""deploy/kubernetes/daemonset.yaml: valid against the Kubernetes schemas offline (`kubernetes-validate
--strict`, DESIGN "Testing notes"), and consistent with the image, the settings and the CLI's probe."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from mkd.config import DaemonSettings
from mkd.testing.daemon_process import DaemonProcess
from tests.cli.conftest import clean_env

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "deploy" / "kubernetes" / "daemonset.yaml"
VALIDATE = Path(sys.executable).parent / "kubernetes-validate"
# The oldest release still maintained upstream when this was written, and the newest the package knows.
VERSIONS = ("1.32.0", "1.37.0")
# DESIGN "Security" settings for the listener beyond loopback, which this config uses.
SECURITY_KEYS = {"tls_cert", "tls_key", "tls_client_ca", "insecure_plaintext", "trusted_proxies"}


def documents() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc}


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = documents()["DaemonSet"]["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    (only,) = pod_spec()["containers"]
    return dict(only)


def config() -> dict[str, Any]:
    return tomllib.loads(documents()["ConfigMap"]["data"]["mkd.toml"])


def validate(path: Path, version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VALIDATE, "--strict", "-k", version, str(path)], capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_manifest_validates_strictly(version: str) -> None:
    result = validate(MANIFEST, version)
    assert result.returncode == 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    for resource in ("namespace/mkd-system", "configmap/mkd-config", "daemonset/mkd"):
        assert f"passed for resource {resource}" in output, output


def test_strict_catches_a_misspelt_field(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(MANIFEST.read_text().replace("periodSeconds: 30", "periodSecond: 30", 1))
    result = validate(broken, VERSIONS[-1])
    assert result.returncode != 0 and "periodSecond" in result.stdout + result.stderr


def test_host_paths_resources_and_scrape_annotation() -> None:
    spec, main = pod_spec(), container()
    host_paths = {v["hostPath"]["path"]: v for v in spec["volumes"] if "hostPath" in v}
    assert host_paths["/sys/fs/multikernel"]["hostPath"]["type"] == "Directory"
    assert host_paths["/dev/mktty"]["hostPath"]["type"] == "CharDevice"
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    assert mounts[host_paths["/sys/fs/multikernel"]["name"]] == "/sys/fs/multikernel"
    assert mounts[host_paths["/dev/mktty"]["name"]] == "/dev/mktty"
    assert set(main["resources"]["requests"]) == set(main["resources"]["limits"]) == {"cpu", "memory"}
    annotations = documents()["DaemonSet"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    port = int(annotations["prometheus.io/port"])
    assert port in [p["containerPort"] for p in main["ports"]]
    assert config()["daemon"]["listen"].endswith(f":{port}")


def test_root_with_only_cap_sys_boot_in_the_host_pid_namespace() -> None:
    context = container()["securityContext"]
    assert context["runAsUser"] == 0 and context["privileged"] is False
    assert context["capabilities"] == {"drop": ["ALL"], "add": ["SYS_BOOT"]}
    assert context["allowPrivilegeEscalation"] is False
    assert pod_spec()["hostPID"] is True  # reboot(2)'s multikernel commands: initial PID namespace only


def test_every_configured_path_is_mounted_and_every_key_is_a_setting() -> None:
    daemon = config()["daemon"]
    unknown = set(daemon) - set(DaemonSettings.model_fields) - SECURITY_KEYS
    assert not unknown, unknown
    assert daemon["backend"] == "host"
    mounts = [m["mountPath"] for m in container()["volumeMounts"]]
    for key in ("state_dir", "socket", "tokens_file", "tls_cert", "tls_key"):
        assert any(daemon[key] == m or daemon[key].startswith(m + "/") for m in mounts), (key, daemon[key])
    secrets = {v["name"]: v["secret"] for v in pod_spec()["volumes"] if "secret" in v}
    assert secrets["tokens"]["defaultMode"] == 0o400  # mkd refuses a tokens file others can read


def test_the_probes_ask_healthz_and_readyz_over_the_socket(tmp_path: Path) -> None:
    """Each probe's command, run here against a real daemon's unix socket, answers 0."""
    main, socket_path = container(), config()["daemon"]["socket"]
    probes = {name: main[name]["exec"]["command"] for name in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"][-2:] == ["probe", "healthz"] and probes["readinessProbe"][-2:] == ["probe", "readyz"]
    with DaemonProcess(tmp_path / "state", env=clean_env()) as daemon:
        for name, command in probes.items():
            assert command[0] == "/opt/mkd/bin/mkd" and socket_path in command
            here = [sys.executable, "-m", "mkd.cli.main",
                    *(str(daemon.state_dir / "mkd.sock") if arg == socket_path else arg for arg in command[1:])]
            result = subprocess.run(here, capture_output=True, text=True, timeout=60, cwd=REPO, env=clean_env(),
                                    check=False)
            assert result.returncode == 0, (name, result.stderr)
        stopped = daemon.state_dir / "mkd.sock"
    gone = subprocess.run([sys.executable, "-m", "mkd.cli.main", "--socket", str(stopped), "probe", "readyz"],
                          capture_output=True, text=True, timeout=60, cwd=REPO, env=clean_env(), check=False)
    assert gone.returncode == 7 and "cannot reach mkd" in gone.stderr  # a stopped daemon fails the probe
