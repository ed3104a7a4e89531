"""Idempotency-Key: a retried POST returns the first outcome and does nothing twice."""

from __future__ import annotations

from fastapi.testclient import TestClient

from mkd.services.idempotency import claim, scope_of
from mkd.testing import imagegen
from tests.conftest import MakeClient
from tests.helpers import MEM, MiB, assert_problem, create, upload


def events_of(client: TestClient) -> list[str]:
    daemon = client.app.state.daemon  # type: ignore[attr-defined]
    from mkd.db import repository
    from mkd.db.session import transaction

    with transaction(daemon.engine) as session:
        return [e.type for e in repository.events_after(session=session, after_id=0)]


def test_retried_create_returns_the_first_response(client: TestClient) -> None:
    body = {"name": "web", "resources": {"cpus": [2], "memory_bytes": 64 * MiB}}
    first = client.post("/v1/instances", json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    again = client.post("/v1/instances", json=body, headers={"Idempotency-Key": "k1"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"] and again.headers["ETag"] == first.headers["ETag"]
    assert len(client.get("/v1/instances").json()["items"]) == 1
    assert events_of(client) == ["created"]


def test_same_key_with_another_body_is_422(client: TestClient) -> None:
    client.post("/v1/instances", json={"name": "a", "resources": {"cpus": [2], "memory_bytes": MEM}},
                headers={"Idempotency-Key": "k"})
    assert_problem(client.post("/v1/instances", json={"name": "b", "resources": {"cpus": [3], "memory_bytes": MEM}},
                               headers={"Idempotency-Key": "k"}), 422)


def test_key_in_flight_is_409(client: TestClient) -> None:
    daemon = client.app.state.daemon  # type: ignore[attr-defined]
    import hashlib

    body = b'{"force": false}'
    digest = hashlib.sha256(b"/v1/instances/1/start?\0" + body).hexdigest()
    assert claim(daemon, scope=scope_of("", "POST", "/v1/instances/1/start", "busy"), request_hash=digest) is None
    assert_problem(client.post("/v1/instances/1/start", content=body,
                               headers={"Idempotency-Key": "busy", "content-type": "application/json"}), 409)


def test_retried_load_is_not_ebusy(client: TestClient) -> None:
    create(client, "web", cpus=[2])
    kernel = upload(client, imagegen.vmlinux())
    first = client.post("/v1/instances/web/load", json={"kernel": kernel}, headers={"Idempotency-Key": "L"})
    again = client.post("/v1/instances/web/load", json={"kernel": kernel}, headers={"Idempotency-Key": "L"})
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    other = client.post("/v1/instances/web/load", json={"kernel": kernel}, headers={"Idempotency-Key": "M"})
    assert_problem(other, 409, "EBUSY")
    assert events_of(client).count("state") == 2  # READY→LOADING→LOADED once


def test_refusals_are_replayed_too(client: TestClient) -> None:
    create(client, "web", cpus=[2])
    first = client.post("/v1/instances/web/start", headers={"Idempotency-Key": "s"})
    assert_problem(first, 422, "EINVAL")
    again = client.post("/v1/instances/web/start", headers={"Idempotency-Key": "s"})
    assert again.status_code == 422 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert events_of(client).count("refused") == 1


def test_key_too_long_is_422(client: TestClient) -> None:
    body = assert_problem(client.post("/v1/instances", json={"name": "a", "resources": {"memory_bytes": MEM}},
                                      headers={"Idempotency-Key": "x" * 300}), 422)
    assert body["title"] == "Invalid input" and "Idempotency-Key" in body["detail"]


def test_retried_upload_is_replayed_and_another_body_is_422(client: TestClient) -> None:
    data = imagegen.vmlinux()
    key = {"Idempotency-Key": "upload-1"}
    first = client.post("/v1/images", content=data, headers=key)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    again = client.post("/v1/images", content=iter([data[:1000], data[1000:]]), headers=key)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"] and again.headers["etag"] == first.headers["etag"]
    other = client.post("/v1/images", content=data + b"\0", headers=key)
    assert_problem(other, 422)
    # The refused body was not stored.
    assert [i["sha256"] for i in client.get("/v1/images").json()["items"]] == [first.json()["sha256"]]
    # Without the key the same bytes are simply "already stored".
    assert client.post("/v1/images", content=data).status_code == 200


def test_upload_key_in_flight_is_409(client: TestClient) -> None:
    daemon = client.app.state.daemon  # type: ignore[attr-defined]
    claim(daemon, scope=scope_of("", "POST", "/v1/images", "busy"), request_hash="")
    assert_problem(client.post("/v1/images", content=b"bytes", headers={"Idempotency-Key": "busy"}), 409)


def test_a_refused_upload_leaves_the_key_free(make_client: MakeClient) -> None:
    client = make_client(daemon={"max_image_bytes": 1000})
    key = {"Idempotency-Key": "big"}
    assert_problem(client.post("/v1/images", content=b"x" * 2000, headers=key), 413)
    retried = client.post("/v1/images", content=b"x" * 500, headers=key)
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers
