"""Responses of bytes serialised once: exactly what FastAPI would produce from the routes' response
models (pydantic's dump_json of the validated model), so returning them changes nothing on the
wire but the time it takes (issue 15). The read model (mkd.services.read_model) keeps them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from fastapi import Response
from pydantic import TypeAdapter

from mkd.api.schemas import HostOut, InstanceOut, PoolOut
from mkd.etags import etag_of_json
from mkd.kernel_types import HostInfo

_INSTANCE: TypeAdapter[InstanceOut] = TypeAdapter(InstanceOut)
_POOL: TypeAdapter[PoolOut] = TypeAdapter(PoolOut)
_HOST: TypeAdapter[HostOut] = TypeAdapter(HostOut)
JSON = "application/json"


class ApiWire:
    """mkd.services.read_model.Wire: the routes' response models (instances: exclude_unset)."""

    def instance(self, body: dict[str, Any]) -> bytes:
        return _INSTANCE.dump_json(_INSTANCE.validate_python(body), exclude_unset=True)

    def instance_list(self, items: Sequence[bytes], next_cursor: str | None) -> bytes:
        """InstanceList: {"items": [...], "next_cursor": ...}, the items' bytes as they are."""
        cursor = json.dumps(next_cursor).encode()
        return b'{"items":[' + b",".join(items) + b'],"next_cursor":' + cursor + b"}"

    def pool(self, body: dict[str, Any]) -> bytes:
        return _POOL.dump_json(_POOL.validate_python(body))


def json_response(body: bytes, etag: str) -> Response:
    return Response(content=body, media_type=JSON, headers={"ETag": etag})


_host: tuple[HostInfo, bytes, str] | None = None


def host_body(host: HostInfo) -> tuple[bytes, str]:
    """GET /v1/host: the host does not change while the daemon runs; serialised once per HostInfo."""
    global _host
    cached = _host
    if cached is None or cached[0] is not host:
        plain = asdict(host)
        cached = (host, _HOST.dump_json(_HOST.validate_python(plain)), etag_of_json(plain))
        _host = cached
    return cached[1], cached[2]
