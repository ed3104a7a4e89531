"""The image store: upload (streamed), list, read, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from mkd.api.deps import DaemonDep, IfMatch
from mkd.api.responses import IMAGE_LINKS, problems
from mkd.api.schemas import ImageList, ImageOut, ImagesPruned
from mkd.services import images as service

router = APIRouter(prefix="/v1/images", tags=["images"])

_UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


@router.post("", response_model=ImageOut, status_code=201, openapi_extra=_UPLOAD_BODY,
             responses={200: {"model": ImageOut, "links": IMAGE_LINKS}, 201: {"links": IMAGE_LINKS},
                        **problems(413, 422)})
async def upload_image(request: Request, daemon: DaemonDep) -> Response:
    """Store raw image bytes, addressed by their sha256."""
    image, created = await service.upload_image(daemon=daemon, chunks=request.stream())
    return JSONResponse(image, status_code=201 if created else 200, headers=service.image_headers(image["sha256"]))


@router.post("/prune", response_model=ImagesPruned, responses=problems(422))
def prune_images(daemon: DaemonDep) -> dict[str, Any]:
    """Delete every image that no kimage and no spec uses."""
    return service.prune_images(daemon=daemon)


@router.get("", response_model=ImageList, responses=problems(422))
def list_images(
    daemon: DaemonDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """List stored images."""
    return service.list_images(daemon=daemon, limit=limit, cursor=cursor)


@router.get("/{sha256}", response_model=ImageOut, responses=problems(404, 422))
def read_image(sha256: str, daemon: DaemonDep, response: Response) -> dict[str, Any]:
    """Read one image's metadata."""
    image = service.get_image(daemon=daemon, sha256=sha256)  # validates the hash before it goes in a header
    response.headers["ETag"] = service.image_etag(image["sha256"])
    return image


@router.get("/{sha256}/content", status_code=200, responses={
    200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
          "description": "The image's bytes, streamed"},
    304: {"description": "If-None-Match names this image"}, **problems(404, 422)})
def read_image_content(sha256: str, daemon: DaemonDep,
                       if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None) -> Response:
    """Stream an image's bytes (what fleet peers pull; the peer token may read it)."""
    content = service.open_image(daemon=daemon, sha256=sha256)
    etag = service.image_etag(content.sha256)
    if if_none_match is not None and etag in (tag.strip() for tag in if_none_match.split(",")):
        content.file.close()
        return Response(status_code=304, headers={"ETag": etag})
    return StreamingResponse(content.chunks(), media_type="application/octet-stream",
                             headers={"ETag": etag, "Content-Length": str(content.size)})


@router.delete("/{sha256}", status_code=204, responses=problems(404, 409, 412, 422))
def delete_image(sha256: str, daemon: DaemonDep, if_match: IfMatch = None) -> Response:
    """Delete an image no kimage uses."""
    service.delete_image(daemon=daemon, sha256=sha256, if_match=if_match)
    return Response(status_code=204)
