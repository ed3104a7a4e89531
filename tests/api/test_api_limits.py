"""DESIGN "Limits" through the app (in process): bodies, validation problems, idempotency quotas,
and the 5xx answers of issue 11 that are now the 4xx DESIGN names. The same abuses against a real
daemon process, with its memory, disk and responsiveness watched, are in tests/e2e/test_abuse.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mkd.app import create_app
from mkd.config import load_settings
from mkd.devicetree.fdt import TreeWriter
from mkd.errors import InvalidInput
from tests.conftest import MakeClient, MakeSettings
from tests.helpers import POOL, assert_problem, write_tokens

TREE = {"simulator": {"kernel_profile": "tree"}}


def refusals(client: TestClient, limit: str) -> float:
    """mkd_limit_refusals_total{limit=...} as /metrics shows it (0 when never counted)."""
    text = client.get("/metrics").text
    found = re.search(rf'^mkd_limit_refusals_total\{{limit="{limit}"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_limits_section_has_design_defaults() -> None:
    limits = load_settings(None).limits
    assert (limits.max_json_bytes, limits.max_dt_bytes, limits.max_image_bytes) == (1 << 20, 1 << 20, 8 << 30)
    assert (limits.max_validation_errors, limits.max_connections) == (20, 1024)
    assert (limits.header_timeout_s, limits.keepalive_timeout_s, limits.body_stall_timeout_s) == (10, 5, 30)
    assert (limits.max_event_streams, limits.max_console_streams, limits.max_waiters) == (256, 64, 256)
    assert (limits.idempotency_keys_per_token, limits.idempotency_bytes_per_token) == (10_000, 64 << 20)
    assert (limits.dtc_concurrency, limits.dtc_queue, limits.dtc_cpu_s, limits.dtc_memory_bytes) == (2, 8, 5, 256 << 20)
    assert (limits.console_history_bytes, limits.audit_max_bytes, limits.audit_files) == (1 << 20, 64 << 20, 4)


def test_daemon_max_image_bytes_still_works_and_a_different_pair_is_a_start_error() -> None:
    assert load_settings(None, overrides={"daemon.max_image_bytes": 5000}).limits.max_image_bytes == 5000
    same = {"daemon.max_image_bytes": 5000, "limits.max_image_bytes": 5000}
    assert load_settings(None, overrides=same).limits.max_image_bytes == 5000
    with pytest.raises(InvalidInput, match="differ"):
        load_settings(None, overrides={"daemon.max_image_bytes": 5000, "limits.max_image_bytes": 6000})


@pytest.mark.parametrize(("method", "path"), [("PUT", "/v1/pool"), ("POST", "/v1/session"),
                                              ("POST", "/v1/instances")])
def test_a_json_body_over_the_limit_is_413_by_its_declared_length(make_client: MakeClient, method: str,
                                                                   path: str) -> None:
    client = make_client(limits={"max_json_bytes": 4096})
    before = refusals(client, "max_json_bytes")
    body = b'{"pad": "' + b"x" * 10_000 + b'"}'
    reply = client.request(method, path, content=body, headers={"content-type": "application/json"})
    problem = assert_problem(reply, 413)
    assert problem["limit"] == "max_json_bytes"
    assert reply.headers["connection"] == "close"
    assert refusals(client, "max_json_bytes") == before + 1


def test_a_chunked_body_is_refused_while_it_is_read(make_client: MakeClient) -> None:
    client = make_client(limits={"max_json_bytes": 4096})
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(1000):  # 1000 x 1 KiB: far past the limit if it were all read
            sent += 1
            yield b" " * 1024

    reply = client.put("/v1/pool", content=chunks(), headers={"content-type": "application/json"})
    assert assert_problem(reply, 413)["limit"] == "max_json_bytes"
    assert client.get("/v1/pool").status_code == 200  # nothing changed, and the app goes on


def test_a_device_tree_body_has_its_own_limit(make_client: MakeClient) -> None:
    client = make_client(limits={"max_dt_bytes": 2048, "max_json_bytes": 1 << 20}, **TREE)
    reply = client.post("/v1/instances", content=b"/dts-v1/; / { };" + b" " * 4096,
                        headers={"content-type": "text/x-dts"})
    assert assert_problem(reply, 413)["limit"] == "max_dt_bytes"


def test_validation_problems_list_at_most_max_validation_errors(make_client: MakeClient) -> None:
    client = make_client()
    body = {"name": "a", "resources": {"cpu_count": 1, "memory_bytes": 1 << 28}}
    body.update({f"bad{i}" + "k" * 300: i for i in range(500)})
    reply = client.post("/v1/instances", json=body)
    problem = assert_problem(reply, 422)
    assert len(problem["errors"]) == 20 and problem["errors_total"] == 500
    assert all(len(str(part)) <= 65 for error in problem["errors"] for part in error["loc"])
    assert len(reply.content) < 20_000
    routed = assert_problem(client.put("/v1/pool", json={f"x{i}": i for i in range(300)}), 422)
    assert len(routed["errors"]) == 20 and routed["errors_total"] >= 300


def test_a_body_that_failed_validation_is_never_stored_for_its_key(make_client: MakeClient) -> None:
    client = make_client()
    key = {"Idempotency-Key": "k-invalid"}
    first = client.post("/v1/instances", json={"name": "a", "bogus": 1}, headers=key)
    assert_problem(first, 422)
    again = client.post("/v1/instances", json={"name": "a", "bogus": 1}, headers=key)
    assert_problem(again, 422)
    assert "idempotent-replayed" not in again.headers  # ran again: nothing was stored
    # the key is free: a valid body with it creates the instance
    made = client.post("/v1/instances", json={"name": "a", "resources": {"cpu_count": 1, "memory_bytes": 1 << 28}},
                       headers={"Idempotency-Key": "k-invalid"})
    assert made.status_code == 201, made.text


def test_idempotency_keys_per_token_quota_is_429_for_new_keys_only(make_client: MakeClient) -> None:
    client = make_client(limits={"idempotency_keys_per_token": 2})
    before = refusals(client, "idempotency_keys_per_token")
    for n in range(2):
        reply = client.post("/v1/instances", json={"name": f"i{n}", "resources": {"cpu_count": 1,
                                                                                    "memory_bytes": 1 << 28}},
                            headers={"Idempotency-Key": f"key-{n}"})
        assert reply.status_code == 201, reply.text
    over = client.post("/v1/instances", json={"name": "i9", "resources": {"cpu_count": 1, "memory_bytes": 1 << 28}},
                       headers={"Idempotency-Key": "key-9"})
    problem = assert_problem(over, 429)
    assert problem["limit"] == "idempotency_keys_per_token"
    assert int(over.headers["retry-after"]) >= 1
    assert refusals(client, "idempotency_keys_per_token") == before + 1
    replay = client.post("/v1/instances", json={"name": "i0", "resources": {"cpu_count": 1, "memory_bytes": 1 << 28}},
                         headers={"Idempotency-Key": "key-0"})
    assert replay.headers["idempotent-replayed"] == "true"  # an old key still replays
    plain = client.post("/v1/instances", json={"name": "i8", "resources": {"cpu_count": 1, "memory_bytes": 1 << 28}})
    assert plain.status_code == 201  # requests without a key are unaffected


def test_idempotency_bytes_quota_counts_stored_responses(make_client: MakeClient) -> None:
    client = make_client(limits={"idempotency_bytes_per_token": 1024})
    stored = 0
    n = 0
    while stored < 1024:  # every created instance's response is stored, whatever the quota
        made = client.post("/v1/instances", json={"name": f"b{n}", "resources": {"cpu_count": 1,
                                                                                   "memory_bytes": 1 << 28}},
                           headers={"Idempotency-Key": f"b-{n}"})
        assert made.status_code == 201, made.text
        stored += len(made.content)
        n += 1
    over = client.post("/v1/instances", json={"name": "bx", "resources": {"cpu_count": 1, "memory_bytes": 1 << 28}},
                       headers={"Idempotency-Key": "b-x"})
    assert assert_problem(over, 429)["limit"] == "idempotency_bytes_per_token"


def test_open_paths_take_no_idempotency_keys(make_client: MakeClient) -> None:
    client = make_client(limits={"idempotency_keys_per_token": 1})
    for n in range(3):  # each would take a key (and the third be refused) if open paths took keys
        reply = client.post("/v1/session", json={"token": "t" * 20}, headers={"Idempotency-Key": f"s-{n}"})
        assert_problem(reply, 422)
        assert "idempotent-replayed" not in reply.headers
    made = client.post("/v1/instances", json={"name": "o", "resources": {"cpu_count": 1, "memory_bytes": 1 << 28}},
                       headers={"Idempotency-Key": "o-1"})
    assert made.status_code == 201, made.text


# -- issue 11's 5xx, now the 4xx DESIGN names ---------------------------------------------------

def test_a_session_cookie_with_a_non_ascii_signature_is_401(make_settings: MakeSettings, tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens", "admin:write:" + "w" * 24 + "\n")
    app = create_app(make_settings(daemon={"tokens_file": tokens}))
    with TestClient(app, client=("10.1.2.3", 4567), raise_server_exceptions=False) as client:
        forged = "YWRtaW58d3JpdGV8OTk5OTk5OTk5OQ.sig\xb2nature"
        reply = client.get("/v1/instances", headers={"cookie": f"mkd_session={forged}".encode("latin-1")})
        assert_problem(reply, 401)


@pytest.mark.parametrize("how", ["header", "query"])
def test_a_non_ascii_digit_last_event_id_is_422(client: TestClient, how: str) -> None:
    if how == "header":
        reply = client.get("/v1/events", headers={"Last-Event-ID": "\xb2".encode("latin-1")})
    else:
        reply = client.get("/v1/events?last_event_id=%C2%B2")
    assert_problem(reply, 422)


def _instances_dtb(node: bytes, prop: bytes) -> bytes:
    writer = TreeWriter()
    with writer.node(""), writer.node("instances"), writer.node("zzzq"):
        writer.prop_string("qqqx", "v")
    return writer.finish().replace(b"zzzq", node).replace(b"qqqx", prop)


@pytest.mark.parametrize(("node", "prop"), [(b"z\xffzq", b"qqqx"), (b"zzzq", b"q\xfeqx")])
def test_a_dtb_whose_names_are_not_utf8_is_422(make_client: MakeClient, node: bytes, prop: bytes) -> None:
    client = make_client(simulator={"kernel_profile": "rfc-v2"})
    reply = client.post("/v1/instances", content=_instances_dtb(node, prop),
                        headers={"content-type": "application/x-dtb"})
    problem = assert_problem(reply, 422, "EINVAL")
    assert "UTF-8" in problem["detail"]
    json.dumps(problem)


@pytest.mark.parametrize("name", [".", ".."])
def test_dot_names_are_refused(client: TestClient, name: str) -> None:
    reply = client.post("/v1/instances", json={"name": name, "resources": {"cpu_count": 1, "memory_bytes": 1 << 28}})
    assert_problem(reply, 422, "EINVAL")


def test_device_tree_dot_names_are_refused(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "rfc-v2"})
    reply = client.post("/v1/instances", content=_instances_dtb(b"..\0\0", b"qqqx"),
                        headers={"content-type": "application/x-dtb"})
    assert_problem(reply, 422, "EINVAL")


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of the test's own (mkd's tests run as root), unmounted afterwards."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_an_upload_into_a_full_disk_is_enospc_409_and_reads_go_on(make_settings: MakeSettings,
                                                                   tiny_disk: Path) -> None:
    settings = make_settings(daemon={"state_dir": tiny_disk / "state"})
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.put("/v1/pool", json=POOL).status_code == 201
        small = client.post("/v1/images", content=b"\x7fELF" + b"\0" * 1000)
        assert small.status_code in (200, 201, 422), small.text
        reply = client.post("/v1/images", content=os.urandom(6 << 20))
        assert_problem(reply, 409, "ENOSPC")
        assert not list((tiny_disk / "state" / "images" / "tmp").iterdir())  # the partial file is gone
        assert client.get("/healthz").status_code == 200
        assert client.get("/v1/pool").status_code == 200
        assert client.get("/v1/images").status_code == 200


def test_the_audit_log_rotates_past_audit_max_bytes(make_client: MakeClient) -> None:
    client = make_client(limits={"audit_max_bytes": 2048, "audit_files": 3})
    for n in range(60):
        client.put("/v1/pool", json=POOL, headers={"X-Pad": str(n)})
    state = Path(client.app.state.settings.daemon.state_dir)  # type: ignore[attr-defined]
    logs = sorted(p.name for p in state.glob("audit.log*"))
    assert logs == ["audit.log", "audit.log.1", "audit.log.2"]
    assert all((state / name).stat().st_size <= 2048 for name in logs)
    assert json.loads((state / "audit.log").read_text().splitlines()[-1])["method"] == "PUT"
