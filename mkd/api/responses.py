"""Error responses documented in the OpenAPI schema for every route."""

from __future__ import annotations

from typing import Any

from mkd.api.schemas import Problem

_P: dict[str, Any] = {"model": Problem, "content": {"application/problem+json": {}}}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    return dict.fromkeys(codes, _P)
