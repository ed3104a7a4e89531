"""Instance and Pool documents (DESIGN "Desired state"): Kubernetes-shaped, JSON or YAML.

YAML goes through a safe loader that refuses aliases (no billion laughs) and answers a
too-deep document with 422 instead of a RecursionError."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import yaml
from fastapi import Request
from pydantic import Field, StrictBool, StringConstraints, ValidationError, model_validator
from pydantic.json_schema import models_json_schema

from mkd.api.problems import validation_problem
from mkd.api.schemas import InstanceId, Name, PoolIn, ResourcesIn, Sha256, Strict
from mkd.domain.requests import MAX_CMDLINE_BYTES
from mkd.errors import InvalidInput

API_VERSION = "mkd.dev/v1"
# The body middleware enforces [limits] max_json_bytes first; this is the routes' own backstop.
MAX_DOCUMENT_BYTES = 1 << 34
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")

LabelKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$")]
LabelValue = Annotated[str, StringConstraints(pattern=r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")]


class RestartBackoffIn(Strict):
    initial_s: float = Field(1.0, gt=0, le=3600)
    max_s: float = Field(300.0, gt=0, le=86400)


class InstanceSpecIn(Strict):
    id: InstanceId | None = None
    resources: ResourcesIn
    kernel: Sha256
    initrd: Sha256 | None = None
    cmdline: str = Field("", max_length=MAX_CMDLINE_BYTES)
    state: Literal["Ready", "Loaded", "Active"] = "Active"
    restartPolicy: Literal["Never", "OnFailure", "Always"] = "OnFailure"  # noqa: N815 (the document's name)
    restartBackoff: RestartBackoffIn = Field(default_factory=RestartBackoffIn)  # noqa: N815
    maxRestarts: int = Field(5, ge=0, le=10_000)  # noqa: N815
    updateStrategy: Literal["InPlace", "Recreate"] = "InPlace"  # noqa: N815
    paused: StrictBool = False


class Metadata(Strict):
    name: Name
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=64)


class InstanceDocument(Strict):
    apiVersion: Literal["mkd.dev/v1"]  # noqa: N815
    kind: Literal["Instance"]
    metadata: Metadata
    spec: InstanceSpecIn
    # What `mkd get -o yaml` prints carries the status; it is read back and ignored.
    status: dict[str, Any] | None = None


class FleetInstanceSpecIn(InstanceSpecIn):
    """DESIGN "Fleet": an Instance spec plus where it may run, and whether it moves when its node
    is lost. No `id`: ids belong to the node that runs the instance."""

    node: Name | None = None
    nodeSelector: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=64)  # noqa: N815
    reschedule: Literal["Never", "OnNodeLoss"] = "Never"

    @model_validator(mode="before")
    @classmethod
    def _no_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and "id" in data:
            raise ValueError("a fleet instance has no spec.id: ids belong to the node that runs it")
        return data


class FleetInstanceDocument(InstanceDocument):
    spec: FleetInstanceSpecIn  # the fleet's spec extends the node's


class PoolDocument(Strict):
    apiVersion: Literal["mkd.dev/v1"]  # noqa: N815
    kind: Literal["Pool"]
    metadata: dict[str, Any] | None = None
    spec: PoolIn
    status: dict[str, Any] | None = None


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors' aliases: a few bytes must not expand into gigabytes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(None, None, "aliases are not allowed", event.start_mark)
        return super().compose_node(parent, index)


def is_yaml(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() in YAML_TYPES


def load_body(body: bytes, content_type: str) -> Any:
    """One JSON or YAML value; anything unreadable is 422."""
    try:
        if is_yaml(content_type):
            return yaml.load(body.decode("utf-8"), Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader)
        return json.loads(body)
    except (yaml.YAMLError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"the body is not a readable {'YAML' if is_yaml(content_type) else 'JSON'} document: "
                           f"{str(exc)[:200]}") from exc
    except RecursionError as exc:
        raise InvalidInput("the document is nested too deeply") from exc


def is_document(value: Any, kind: str) -> bool:
    return isinstance(value, dict) and value.get("kind") == kind and "apiVersion" in value


def instance_document(value: Any, request: Request) -> InstanceDocument:
    try:
        return InstanceDocument.model_validate(value)
    except ValidationError as exc:
        raise validation_problem(exc, request) from exc


def fleet_instance_document(value: Any, request: Request) -> FleetInstanceDocument:
    try:
        return FleetInstanceDocument.model_validate(value)
    except ValidationError as exc:
        raise validation_problem(exc, request) from exc


def pool_body(value: Any, request: Request) -> PoolIn:
    """PUT /v1/pool takes the pool body or a `kind: Pool` document whose spec is that body."""
    try:
        if is_document(value, "Pool"):
            return PoolDocument.model_validate(value).spec
        return PoolIn.model_validate(value)
    except ValidationError as exc:
        raise validation_problem(exc, request) from exc


def document_components() -> dict[str, Any]:
    """JSON schemas of the document bodies (and what they nest) for OpenAPI's components: the
    routes read these bodies by hand, so FastAPI does not collect them itself."""
    _, top = models_json_schema(
        [(InstanceDocument, "validation"), (FleetInstanceDocument, "validation"), (PoolDocument, "validation"),
         (PoolIn, "validation")],
        ref_template="#/components/schemas/{model}",
    )
    defs: dict[str, Any] = top.get("$defs", {})
    return defs
