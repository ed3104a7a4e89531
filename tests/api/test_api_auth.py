"""Bearer tokens beyond loopback (DESIGN "Security"): 401 without, 403 for a read token mutating."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mkd.app import create_app
from mkd.auth_tokens import load_tokens
from mkd.config import Settings
from mkd.errors import InvalidInput
from tests.conftest import MakeSettings
from tests.helpers import POOL, MiB, assert_problem, write_tokens

READ_TOKEN = "r" * 8 + "-read-token-0001"
WRITE_TOKEN = "w" * 8 + "-write-token-002"
REMOTE = ("10.1.2.3", 4567)

ClientFrom = Callable[..., TestClient]


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    write_tokens(path, f"# operators\nviewer:read:{READ_TOKEN}\n\nadmin:write:{WRITE_TOKEN}\n")
    return path


@pytest.fixture
def secured_settings(make_settings: MakeSettings, tokens_file: Path) -> Settings:
    return make_settings(daemon={"tokens_file": tokens_file})


@pytest.fixture
def client_from(secured_settings: Settings) -> Iterator[ClientFrom]:
    """TestClients of one secured app, each with its own (faked) client address."""
    app = create_app(secured_settings)
    opened: list[TestClient] = []

    def make(address: tuple[str, int] = REMOTE, token: str | None = None) -> TestClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = TestClient(app, raise_server_exceptions=False, client=address, headers=headers)
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in reversed(opened):
        client.__exit__(None, None, None)


@pytest.fixture
def local(client_from: ClientFrom) -> TestClient:
    """A loopback client that sets the pool up (and keeps the app's lifespan open)."""
    client = client_from(("127.0.0.1", 40000))
    assert client.put("/v1/pool", json=POOL).status_code == 201
    return client


INSTANCE = {"name": "web", "resources": {"cpus": [2], "memory_bytes": 64 * MiB}}


def test_remote_request_without_token_is_401_with_www_authenticate(local: TestClient, client_from: ClientFrom) -> None:
    remote = client_from()
    for method, path in (("GET", "/v1/instances"), ("GET", "/v1/pool"), ("POST", "/v1/instances"),
                         ("GET", "/v1/events"), ("GET", "/v1/nosuch")):
        reply = remote.request(method, path, json=INSTANCE if method == "POST" else None)
        assert_problem(reply, 401)
        assert reply.headers["www-authenticate"].startswith("Bearer"), (method, path)
    assert local.get("/v1/instances").json()["items"] == []  # the refused POST created nothing


@pytest.mark.parametrize("header", ["Bearer not-a-token-at-all-xx", f"Basic {WRITE_TOKEN}", WRITE_TOKEN,
                                    f"Bearer {WRITE_TOKEN[:-1]}", f"Bearer {WRITE_TOKEN}x"])
def test_a_wrong_or_malformed_credential_is_401(local: TestClient, client_from: ClientFrom, header: str) -> None:
    remote = client_from()
    reply = remote.get("/v1/pool", headers={"Authorization": header})
    assert_problem(reply, 401)


def test_read_token_may_read_but_not_mutate(local: TestClient, client_from: ClientFrom) -> None:
    assert local.post("/v1/instances", json=INSTANCE).status_code == 201
    reader = client_from(token=READ_TOKEN)
    assert reader.get("/v1/instances/web").json()["name"] == "web"
    assert reader.get("/v1/pool").status_code == 200
    assert reader.get("/v1/host").status_code == 200
    body = assert_problem(reader.post("/v1/instances", json={**INSTANCE, "name": "db"}), 403)
    assert "viewer" in body["detail"]
    assert_problem(reader.put("/v1/pool", json=POOL), 403)
    assert_problem(reader.delete("/v1/instances/web"), 403)
    assert_problem(reader.post("/v1/images", content=b"x" * 64), 403)
    names = [i["name"] for i in local.get("/v1/instances").json()["items"]]
    assert names == ["web"]  # nothing the read token tried happened
    assert local.get("/v1/images").json()["items"] == []


def test_write_token_may_mutate(local: TestClient, client_from: ClientFrom) -> None:
    writer = client_from(token=WRITE_TOKEN)
    assert writer.post("/v1/instances", json=INSTANCE).status_code == 201
    assert writer.get("/v1/instances/web").json()["state"] == "READY"
    assert writer.delete("/v1/instances/web").status_code == 204
    assert_problem(local.get("/v1/instances/web"), 404, "ENOENT")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_health_and_metrics_need_no_token(local: TestClient, client_from: ClientFrom, path: str) -> None:
    assert client_from().get(path).status_code == 200


@pytest.mark.parametrize("address", [("127.0.0.1", 1234), ("127.8.9.10", 1234), ("::1", 1234),
                                     ("::ffff:127.0.0.1", 1234)])
def test_loopback_clients_need_no_token(local: TestClient, client_from: ClientFrom, address: tuple[str, int]) -> None:
    client = client_from(address)
    assert client.post("/v1/instances", json=INSTANCE).status_code == 201
    assert client.delete("/v1/instances/web").status_code == 204


@pytest.mark.parametrize("address", ["::ffff:10.1.2.3", "192.168.1.1", "2001:db8::1", "not-an-address"])
def test_other_addresses_are_remote(local: TestClient, client_from: ClientFrom, address: str) -> None:
    assert_problem(client_from((address, 1234)).get("/v1/pool"), 401)


def test_without_a_tokens_file_no_token_is_asked(make_client: Callable[..., TestClient]) -> None:
    # Loopback-only daemons (the default) have no tokens: the check is not installed at all.
    client = make_client()
    remote = TestClient(client.app, raise_server_exceptions=False, client=REMOTE)
    assert remote.get("/v1/pool").status_code == 200


@pytest.mark.parametrize("content", [
    "admin:write:short\n",                     # token under 16 characters
    f"admin:admin:{WRITE_TOKEN}\n",            # unknown role
    f"{WRITE_TOKEN}\n",                        # no fields
    f":write:{WRITE_TOKEN}\n",                 # no name
    f"viewer:read:{READ_TOKEN}\nadmin:write\n",  # second line without a token
])
def test_malformed_tokens_file_refuses_to_start(make_settings: MakeSettings, tmp_path: Path, content: str) -> None:
    path = tmp_path / "tokens"
    write_tokens(path, content)
    with pytest.raises(InvalidInput, match=r"tokens:\d+: expected name:read\|write:token"):
        create_app(make_settings(daemon={"tokens_file": path}))


@pytest.mark.parametrize(("content", "complaint"), [
    ("", "holds no token"),
    ("# only a comment\n", "holds no token"),
    (f"admin:write:{WRITE_TOKEN}\nadmin:read:{READ_TOKEN}\n", "used twice"),
    (f"admin:write:{WRITE_TOKEN}\nviewer:read:{WRITE_TOKEN}\n", "already given"),
])
def test_empty_or_ambiguous_tokens_file_refuses_to_start(
    make_settings: MakeSettings, tmp_path: Path, content: str, complaint: str
) -> None:
    path = tmp_path / "tokens"
    write_tokens(path, content)
    with pytest.raises(InvalidInput, match=complaint):
        create_app(make_settings(daemon={"tokens_file": path}))


def test_missing_tokens_file_refuses_to_start_with_invalid_input(make_settings: MakeSettings, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="tokens file"):
        create_app(make_settings(daemon={"tokens_file": tmp_path / "absent"}))


def test_tokens_file_lines_parse_to_named_roles(tokens_file: Path) -> None:
    tokens = load_tokens(tokens_file)
    assert [(t.name, t.role, t.secret) for t in tokens] == [("viewer", "read", READ_TOKEN),
                                                             ("admin", "write", WRITE_TOKEN)]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_tokens_file_open_to_others_refuses_to_start_with_the_fix(
    make_settings: MakeSettings, tokens_file: Path, mode: int
) -> None:
    tokens_file.chmod(mode)
    with pytest.raises(InvalidInput, match=rf"mode {mode:04o}.*chmod 600 {tokens_file}"):
        create_app(make_settings(daemon={"tokens_file": tokens_file}))


def test_refused_attempts_are_in_the_audit_log_with_peer_and_token(
    client_from: ClientFrom, local: TestClient, secured_settings: Settings
) -> None:
    assert_problem(client_from().post("/v1/instances", json={"name": "web"}), 401)
    reader = client_from(token=READ_TOKEN)
    assert_problem(reader.put("/v1/pool", json=POOL), 403)
    writer = client_from(token=WRITE_TOKEN)
    assert_problem(writer.post("/v1/instances", json={"name": 5}), 422)
    assert_problem(writer.delete("/v1/instances/web", headers={"If-Match": '"nope"'}), 404)
    log = secured_settings.daemon.state_dir / "audit.log"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    refused = [(e["status"], e["client"], e["token"]) for e in entries if e["status"] >= 400]
    assert (401, REMOTE[0], "") in refused
    assert (403, REMOTE[0], "viewer") in refused
    assert (422, REMOTE[0], "admin") in refused
    assert (404, REMOTE[0], "admin") in refused
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    database = secured_settings.database_path
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
