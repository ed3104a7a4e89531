"""The dashboard's session cookie, made from a token, for browsers beyond loopback."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from mkd.app import create_app
from tests.conftest import MakeSettings
from tests.helpers import POOL, assert_problem, write_tokens

WRITE = "admin:write:" + "w" * 24
READ = "viewer:read:" + "r" * 24


def remote_client(make_settings: MakeSettings, tmp_path: Path) -> TestClient:
    tokens = tmp_path / "tokens"
    write_tokens(tokens, f"{WRITE}\n{READ}\n")
    settings = make_settings(daemon={"tokens_file": tokens})
    client = TestClient(create_app(settings), client=("10.1.2.3", 4567), raise_server_exceptions=False)
    client.__enter__()
    return client


def test_a_session_cookie_stands_in_for_the_token(make_settings: MakeSettings, tmp_path: Path) -> None:
    client = remote_client(make_settings, tmp_path)
    try:
        assert_problem(client.get("/v1/instances"), 401)
        assert client.get("/").status_code == 200  # the page itself asks for the token
        assert_problem(client.post("/v1/session", json={"token": "nope" * 5}), 401)
        reply = client.post("/v1/session", json={"token": "w" * 24})
        assert reply.status_code == 204
        cookie = reply.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert client.get("/v1/instances").status_code == 200
        assert client.put("/v1/pool", json=POOL).status_code == 201
        client.delete("/v1/session")
        client.cookies.clear()
        assert_problem(client.get("/v1/instances"), 401)
    finally:
        client.__exit__(None, None, None)


def test_a_read_session_cannot_mutate_and_forged_cookies_fail(make_settings: MakeSettings, tmp_path: Path) -> None:
    client = remote_client(make_settings, tmp_path)
    try:
        assert client.post("/v1/session", json={"token": "r" * 24}).status_code == 204
        assert client.get("/v1/pool").status_code == 200
        assert_problem(client.put("/v1/pool", json=POOL), 403)
        value = client.cookies["mkd_session"]
        payload, _, signature = value.partition(".")
        client.cookies.clear()
        forged = payload.replace(payload[:4], "YWRt") + "." + signature  # tamper with the signed part
        client.cookies.set("mkd_session", forged)
        assert_problem(client.get("/v1/pool"), 401)
    finally:
        client.__exit__(None, None, None)


def test_logout_ends_the_session_on_the_server(make_settings: MakeSettings, tmp_path: Path) -> None:
    """A copy of the cookie kept after logout (a stolen one) no longer works."""
    client = remote_client(make_settings, tmp_path)
    try:
        assert client.post("/v1/session", json={"token": "w" * 24}).status_code == 204
        kept = client.cookies["mkd_session"]
        assert client.get("/v1/instances").status_code == 200
        assert client.delete("/v1/session").status_code == 204
        client.cookies.clear()
        client.cookies.set("mkd_session", kept)
        assert_problem(client.get("/v1/instances"), 401)
    finally:
        client.__exit__(None, None, None)


def test_a_token_removed_by_reload_ends_its_requests_and_sessions(make_settings: MakeSettings,
                                                                  tmp_path: Path) -> None:
    client = remote_client(make_settings, tmp_path)
    try:
        assert client.post("/v1/session", json={"token": "w" * 24}).status_code == 204
        assert client.get("/v1/instances").status_code == 200
        write_tokens(tmp_path / "tokens", f"{READ}\n")
        client.app.state.token_file.reload()  # what SIGHUP does in `mkd serve`
        assert_problem(client.get("/v1/instances"), 401)
        client.cookies.clear()
        assert_problem(client.get("/v1/instances", headers={"Authorization": "Bearer " + "w" * 24}), 401)
        assert client.get("/v1/instances", headers={"Authorization": "Bearer " + "r" * 24}).status_code == 200
    finally:
        client.__exit__(None, None, None)
