"""A web page the operator visits cannot drive the daemon on loopback (CSRF, DNS rebinding)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.helpers import assert_problem

PLAN = "/dts-v1/;\n/ { instances { web { id = <1>; resources { cpus = <2>; }; }; }; };\n"


def test_cross_site_simple_post_is_refused(client: TestClient) -> None:
    headers = {"content-type": "text/plain", "origin": "https://evil.example", "sec-fetch-site": "cross-site"}
    body = assert_problem(client.post("/v1/instances", content=PLAN, headers=headers), 403)
    assert body["type"].endswith("/cross-site")
    only_origin = {"content-type": "text/plain", "origin": "https://evil.example"}
    assert_problem(client.post("/v1/instances", content=PLAN, headers=only_origin), 403)
    assert_problem(client.post("/v1/images", content=b"x", headers={"origin": "null"}), 403)
    assert client.get("/v1/instances").json()["items"] == []


def test_same_origin_and_non_browser_clients_pass(client: TestClient) -> None:
    same = {"content-type": "text/plain", "origin": "http://testserver", "sec-fetch-site": "same-origin"}
    assert client.post("/v1/instances", content=PLAN, headers=same).status_code == 201
    assert client.get("/v1/instances/web", headers={"origin": "https://evil.example"}).status_code == 200


def test_rebound_dns_names_are_refused(client: TestClient) -> None:
    assert_problem(client.get("/v1/instances", headers={"host": "attacker.example"}), 403)
    assert client.get("/v1/instances", headers={"host": "127.0.0.1:8080"}).status_code == 200
    assert client.get("/v1/instances", headers={"host": "localhost:8080"}).status_code == 200
    assert client.get("/v1/instances", headers={"host": "[::1]:8080"}).status_code == 200


def test_probes_answer_whatever_name_the_prober_uses(client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path, headers={"host": "mkd.internal.example:8080"}).status_code == 200, path
    assert_problem(client.post("/readyz", headers={"host": "mkd.internal.example"}), 403)
