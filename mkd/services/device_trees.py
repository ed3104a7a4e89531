"""Device trees of the pool and the instances, in the active kernel profile's format."""

from __future__ import annotations

from typing import Literal

from fastapi import Response

from mkd.db import repository
from mkd.db.session import transaction
from mkd.devicetree.build import build_instance_tree, build_root_tree, v2_device_tree_source
from mkd.devicetree.dts import dtb_to_dts
from mkd.etags import etag_of_bytes
from mkd.kernel_types import InstanceSpec
from mkd.services.context import Daemon
from mkd.services.pool_spec import spec_of
from mkd.services.records import resolve_ref


def root_tree(*, daemon: Daemon) -> bytes:
    with transaction(daemon.engine) as session:
        pool = spec_of(repository.get_pool(session=session))
        instances = [
            InstanceSpec(id=r.id, name=r.name, cpus=tuple(r.resources.get("cpus", [])),
                         memory_bytes=int(r.resources.get("memory_bytes", 0)),
                         llc_way_mask=r.resources.get("llc_way_mask"),
                         devices=tuple(r.resources.get("devices", [])),
                         numa_node=r.resources.get("numa_node"))
            for r in repository.list_instances(session=session)
        ]
    state = daemon.backend.read_pool()
    return build_root_tree(daemon.host.kernel_profile, pool, chunks=state.chunks, free_cpus=state.free_cpus,
                           instances=instances)


def instance_tree(*, daemon: Daemon, ref: str, format: Literal["dts", "dtb"]) -> Response:
    with transaction(daemon.engine) as session:
        record = resolve_ref(session=session, ref=ref)
    kernel = daemon.backend.read_instance(record.id)
    if format == "dts" and daemon.host.kernel_profile == "rfc-v2":
        # v2's own `device_tree_source` file is the DTS view of an instance (spec 5.2).
        source = v2_device_tree_source(kernel)
        return Response(source, media_type="text/plain",
                        headers={"ETag": etag_of_bytes(source.encode(), variant="v2-source")})
    return tree_response(build_instance_tree(daemon.host.kernel_profile, kernel), format)


def tree_response(dtb: bytes, format: Literal["dts", "dtb"]) -> Response:
    headers = {"ETag": etag_of_bytes(dtb, variant=format)}
    if format == "dtb":
        return Response(dtb, media_type="application/x-dtb", headers=headers)
    return Response(dtb_to_dts(dtb), media_type="text/plain", headers=headers)
