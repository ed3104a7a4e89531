"""GET /v1/images/{sha256}/content (DESIGN "HTTP API", "Fleet" Images): the bytes, streamed, with
the image's hash as ETag; readable by the usual tokens and by the fleet's peer token only."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mkd.app import create_app
from mkd.errors import InvalidInput
from mkd.services import images as image_service
from mkd.services.context import Daemon
from tests.conftest import MakeSettings
from tests.helpers import assert_problem, upload, write_tokens

READ_TOKEN = "r" * 8 + "-read-token-0001"
PEER_TOKEN = "p" * 8 + "-peer-token-0003"
REMOTE = ("10.1.2.3", 4567)
# No etcd behind the endpoint (a closed port) and a short request timeout: each daemon start waits
# out one etcd request (the fencing check at start), and these tests are about tokens, not etcd.
FLEET = {"endpoints": ["http://127.0.0.1:1"], "node": "host-a", "advertise_url": "http://127.0.0.1:8080",
         "request_timeout_s": 0.5}

ClientFrom = Callable[..., TestClient]


def test_content_is_the_stored_bytes_with_the_hash_as_etag(client: TestClient) -> None:
    data = bytes(range(256)) * 5000  # over one read chunk
    sha = upload(client, data)
    reply = client.get(f"/v1/images/{sha}/content")
    assert reply.status_code == 200, reply.text
    assert reply.content == data
    assert reply.headers["etag"] == f'"{sha}"'
    assert reply.headers["content-length"] == str(len(data))
    assert reply.headers["content-type"] == "application/octet-stream"
    assert hashlib.sha256(reply.content).hexdigest() == sha


def test_if_none_match_with_the_hash_is_304(client: TestClient) -> None:
    sha = upload(client, b"some kernel bytes")
    reply = client.get(f"/v1/images/{sha}/content", headers={"If-None-Match": f'"other", "{sha}"'})
    assert reply.status_code == 304 and reply.content == b""
    assert reply.headers["etag"] == f'"{sha}"'
    assert client.get(f"/v1/images/{sha}/content", headers={"If-None-Match": '"other"'}).status_code == 200


def test_unknown_or_malformed_image_is_a_problem(client: TestClient) -> None:
    assert_problem(client.get("/v1/images/" + "c" * 64 + "/content"), 404, "ENOENT")
    assert_problem(client.get("/v1/images/not-a-hash/content"), 422)
    sha = upload(client, b"gone soon")
    assert client.delete(f"/v1/images/{sha}").status_code == 204
    assert_problem(client.get(f"/v1/images/{sha}/content"), 404, "ENOENT")


def test_an_opened_image_reads_whole_in_chunks_even_when_deleted_meanwhile(client: TestClient) -> None:
    data = b"\x5a" * (image_service.CONTENT_CHUNK * 2 + 17)
    sha = upload(client, data)
    daemon: Daemon = client.app.state.daemon  # type: ignore[attr-defined]
    content = image_service.open_image(daemon=daemon, sha256=sha)
    image_service.delete_image(daemon=daemon, sha256=sha)

    async def read() -> list[bytes]:
        return [chunk async for chunk in content.chunks()]

    chunks = asyncio.run(read())
    assert [len(c) for c in chunks] == [image_service.CONTENT_CHUNK, image_service.CONTENT_CHUNK, 17]
    assert b"".join(chunks) == data and content.file.closed


@pytest.fixture
def client_from(make_settings: MakeSettings, tmp_path: Path) -> Iterator[ClientFrom]:
    tokens = write_tokens(tmp_path / "tokens", f"viewer:read:{READ_TOKEN}\n")
    peer = write_tokens(tmp_path / "peer-token", PEER_TOKEN + "\n")
    app = create_app(make_settings(daemon={"tokens_file": tokens}, fleet={**FLEET, "peer_token_file": peer}))
    opened: list[TestClient] = []

    def make(address: tuple[str, int] = REMOTE, token: str | None = None) -> TestClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        made = TestClient(app, raise_server_exceptions=False, client=address, headers=headers)
        made.__enter__()
        opened.append(made)
        return made

    yield make
    for made in reversed(opened):
        made.__exit__(None, None, None)


def test_the_peer_token_reads_image_content_and_nothing_else(client_from: ClientFrom, tmp_path: Path) -> None:
    local = client_from(("127.0.0.1", 40000))
    sha = upload(local, b"a kernel a peer lacks")
    peer = client_from(token=PEER_TOKEN)
    assert peer.get(f"/v1/images/{sha}/content").content == b"a kernel a peer lacks"
    for method, path in (("GET", "/v1/images"), ("GET", f"/v1/images/{sha}"), ("GET", "/v1/instances"),
                         ("POST", "/v1/images"), ("DELETE", f"/v1/images/{sha}"),
                         ("GET", f"/v1/images/{sha}/content/x")):
        assert_problem(peer.request(method, path), 403)
    assert local.get(f"/v1/images/{sha}").status_code == 200  # the refused DELETE removed nothing
    # The usual tokens still read content; no token is still 401.
    assert client_from(token=READ_TOKEN).get(f"/v1/images/{sha}/content").status_code == 200
    assert_problem(client_from().get(f"/v1/images/{sha}/content"), 401)
    audit = [json.loads(line) for line in (tmp_path / "state1" / "audit.log").read_text().splitlines()]
    assert any(entry.get("token") == "fleet-peer" and entry.get("status") == 403 for entry in audit), audit


def test_a_peer_token_file_open_to_others_refuses_to_start(make_settings: MakeSettings, tmp_path: Path) -> None:
    tokens = write_tokens(tmp_path / "tokens", f"viewer:read:{READ_TOKEN}\n")
    peer = tmp_path / "peer-token"
    peer.write_text(PEER_TOKEN)
    peer.chmod(0o644)
    with pytest.raises(InvalidInput, match="chmod 600"):
        create_app(make_settings(daemon={"tokens_file": tokens}, fleet={**FLEET, "peer_token_file": peer}))
    write_tokens(peer, "short")
    with pytest.raises(InvalidInput, match="16\\+ characters"):
        create_app(make_settings(daemon={"tokens_file": tokens}, fleet={**FLEET, "peer_token_file": peer}))
