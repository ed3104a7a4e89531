"""POST /v1/session: trade a token for the dashboard's session cookie; DELETE ends it."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import Field

from mkd.api.responses import problems
from mkd.api.schemas import Strict
from mkd.api.session_cookie import COOKIE, TTL_S
from mkd.auth_tokens import find_token
from mkd.errors import InvalidInput, Unauthorized

router = APIRouter(prefix="/v1", tags=["session"])


class SessionIn(Strict):
    token: str = Field(min_length=1, max_length=512)


@router.post("/session", status_code=204, responses=problems(401, 422))
def open_session(body: SessionIn, request: Request) -> Response:
    """Set an HttpOnly, SameSite=Strict session cookie for the dashboard."""
    token_file = request.app.state.token_file
    if token_file is None:
        raise InvalidInput("this daemon has no tokens file: loopback clients need no session")
    token = find_token(token_file.tokens, body.token)
    if token is None:
        raise Unauthorized("unknown token")
    response = Response(status_code=204)
    response.set_cookie(COOKIE, request.app.state.session_signer.issue(token), max_age=TTL_S, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https", path="/")
    return response


@router.delete("/session", status_code=204, responses=problems(422))
def close_session(request: Request) -> Response:
    """End the session on the server and forget its cookie."""
    presented = request.cookies.get(COOKIE)
    if presented:
        request.app.state.session_signer.revoke(presented)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE, path="/")
    return response
