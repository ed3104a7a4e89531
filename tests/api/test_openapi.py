"""The checked-in openapi.json is the app's: regenerate it with `make openapi`."""

from __future__ import annotations

import json
from pathlib import Path

from mkd.app import create_app


def test_openapi_json_matches_the_app() -> None:
    saved = json.loads((Path(__file__).resolve().parents[2] / "openapi.json").read_text())
    assert create_app().openapi() == saved, "openapi.json is stale: run `make openapi`"


def test_every_route_documents_problem_responses() -> None:
    spec = create_app().openapi()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if path.startswith("/v1/"):
                codes = set(op["responses"])
                assert codes & {"404", "409", "413", "422", "503"}, f"{method} {path} lists no error response"
            assert op["operationId"].count("-") >= 1, op["operationId"]
