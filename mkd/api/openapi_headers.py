"""The headers of DESIGN "HTTP API" in the OpenAPI document, added in one place.

Middleware handles Idempotency-Key and services set ETag and Location, so the routes' signatures
do not show them; generated clients read them from here.
"""

from __future__ import annotations

from typing import Any

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "Makes a retry safe: the first response is stored for 24 h and replayed with "
                   "Idempotent-Replayed: true; the same key with another body is 422, in flight 409.",
}
REPLAYED = {"description": "Present (`true`) when this is a stored response replayed for an Idempotency-Key.",
            "schema": {"type": "string", "enum": ["true"]}}
ETAG = {"description": "Version of the resource; send it back in If-Match.", "schema": {"type": "string"}}
LOCATION = {"description": "Path of the created resource.", "schema": {"type": "string"}}
# Collections and streams have no ETag of their own.
NO_ETAG = {("get", "/v1/instances"), ("get", "/v1/images"), ("get", "/v1/events")}


def add_header_docs(schema: dict[str, Any]) -> dict[str, Any]:
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith("/v1/") or path.startswith("/v1/session"):
            continue
        for method, operation in operations.items():
            responses: dict[str, Any] = operation.get("responses", {})
            if method == "post":
                parameters = operation.setdefault("parameters", [])
                if not any(p.get("name") == "Idempotency-Key" for p in parameters):
                    parameters.append(IDEMPOTENCY_KEY)
            for status, response in responses.items():
                if not status.startswith("2") or status == "204":
                    continue
                headers = response.setdefault("headers", {})
                if method == "post":
                    headers["Idempotent-Replayed"] = REPLAYED
                if (method, path) not in NO_ETAG and not (status == "201" and path == "/v1/instances"):
                    headers["ETag"] = ETAG
                if status == "201" and method == "post":
                    headers["Location"] = LOCATION
    return schema
