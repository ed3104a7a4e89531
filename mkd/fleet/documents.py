"""Fleet Instance documents (DESIGN "Fleet"): a desired-state Instance document whose spec may
add `node`, `nodeSelector` and `reschedule`, and may not carry `id` (ids are per node)."""

from __future__ import annotations

import re
from typing import Any

from mkd.domain.desired.spec import DeclaredSpec
from mkd.errors import InvalidInput

API_VERSION = "mkd.dev/v1"
FLEET_FIELDS = ("node", "nodeSelector", "reschedule")
RESCHEDULE = ("Never", "OnNodeLoss")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def fleet_document(name: str, document: Any) -> dict[str, Any]:
    """The document as stored under instances/<name> (status dropped), or InvalidInput."""
    if not isinstance(document, dict):
        raise InvalidInput("a fleet instance is an Instance document (a JSON object)")
    if document.get("apiVersion") != API_VERSION or document.get("kind") != "Instance":
        raise InvalidInput(f"apiVersion must be {API_VERSION!r} and kind 'Instance'")
    metadata = document.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("name") != name:
        raise InvalidInput(f"metadata.name must be the name in the path {name!r}")
    if not _NAME.fullmatch(name):
        raise InvalidInput(f"{name!r} is not an instance name")
    spec = document.get("spec")
    if not isinstance(spec, dict):
        raise InvalidInput("spec is missing")
    if "id" in spec:
        raise InvalidInput("a fleet instance has no spec.id: ids belong to the node that runs it")
    if not isinstance(spec.get("kernel"), str) or not isinstance(spec.get("resources"), dict):
        raise InvalidInput("spec.kernel and spec.resources are required")
    for role in ("kernel", "initrd"):
        sha = spec.get(role)
        if sha is not None and (not isinstance(sha, str) or not _SHA256.fullmatch(sha)):
            raise InvalidInput(f"spec.{role} must be an image's sha256 (64 lowercase hex digits)")
    declared_spec(spec)
    node = spec.get("node")
    if node is not None and (not isinstance(node, str) or not _NAME.fullmatch(node)):
        raise InvalidInput("spec.node must be a node name")
    selector = spec.get("nodeSelector", {})
    if not isinstance(selector, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in selector.items()):
        raise InvalidInput("spec.nodeSelector maps label names to values (strings)")
    if spec.get("reschedule", "Never") not in RESCHEDULE:
        raise InvalidInput(f"spec.reschedule must be one of {', '.join(RESCHEDULE)}")
    labels = metadata.get("labels") or {}
    if not isinstance(labels, dict):
        raise InvalidInput("metadata.labels maps names to values")
    return {"apiVersion": API_VERSION, "kind": "Instance",
            "metadata": {"name": name, "labels": dict(labels)}, "spec": dict(spec)}


def local_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec the node's own desired-state engine gets: the fleet's fields taken out."""
    return {key: value for key, value in spec.items() if key not in FLEET_FIELDS}


def declared_spec(spec: dict[str, Any]) -> DeclaredSpec:
    """The node's desired-state spec of a fleet spec; InvalidInput when a value is not one."""
    try:
        return DeclaredSpec.from_json(local_spec(spec))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"spec: {exc}") from exc


def is_deleting(document: dict[str, Any]) -> bool:
    return bool(document.get("metadata", {}).get("deletionTimestamp"))
