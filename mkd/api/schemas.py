"""Wire shapes of the HTTP API (DESIGN.md "Shapes"). Every integer is bounded."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, field_validator

from mkd.domain.names import NAME_PATTERN
from mkd.domain.requests import MAX_CMDLINE_BYTES, CpuAffinity, MemoryPolicy
from mkd.domain.states import Action
from mkd.kernel_types import MAX_INSTANCE_ID, MAX_NUMNODES, MIN_INSTANCE_ID

U64 = Annotated[int, Field(ge=0, le=(1 << 64) - 1)]
CpuId = Annotated[int, Field(ge=0, le=(1 << 32) - 1)]
InstanceId = Annotated[int, Field(ge=MIN_INSTANCE_ID, le=MAX_INSTANCE_ID)]
# The characters and length; mkd.domain.names refuses the rest (numeric names, "." and "..").
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
LlcMask = Annotated[int, Field(ge=0, le=(1 << 32) - 1)]
DeviceName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9,._:+-]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# DESIGN "Shapes": required and non-zero in JSON (alignment and rfc-v2's u32 are the domain's checks).
MemoryBytes = Annotated[int, Field(ge=1, le=(1 << 64) - 1)]
CpuList = Annotated[list[CpuId], Field(max_length=8192)]
CpuCount = Annotated[int, Field(ge=1, le=8192)]
NumaNodes = Annotated[list[Annotated[int, Field(ge=0, lt=MAX_NUMNODES)]], Field(max_length=64)]
LlcWays = Annotated[int, Field(ge=1, le=32)]
DeviceList = Annotated[list[DeviceName], Field(max_length=256)]


class ResourcesIn(Strict):
    cpus: CpuList | None = None
    cpu_count: CpuCount | None = None
    numa_nodes: NumaNodes | None = None
    cpu_affinity: CpuAffinity = "compact"
    memory_bytes: MemoryBytes
    memory_policy: MemoryPolicy = "prefer-local"
    llc_way_mask: LlcMask | None = None
    llc_ways: LlcWays | None = None
    devices: DeviceList = Field(default_factory=list)


class InstanceCreate(Strict):
    name: Name
    id: InstanceId | None = None
    resources: ResourcesIn


class ResourcesPatch(Strict):
    """A JSON merge patch of resources (RFC 7396): what is absent keeps its value, a list given
    replaces the list, null removes an optional field (memory_bytes is not optional)."""

    cpus: CpuList | None = None
    cpu_count: CpuCount | None = None
    numa_nodes: NumaNodes | None = None
    cpu_affinity: CpuAffinity | None = None
    memory_bytes: MemoryBytes | None = None
    memory_policy: MemoryPolicy | None = None
    llc_way_mask: LlcMask | None = None
    llc_ways: LlcWays | None = None
    devices: DeviceList | None = None

    @field_validator("memory_bytes", mode="before")
    @classmethod
    def _memory_stays(cls, value: object) -> object:
        # Only an explicit null reaches here (defaults are not validated).
        if value is None:
            raise ValueError("memory_bytes is required and cannot be removed")
        return value

    def changes(self) -> dict[str, Any]:
        """The fields the patch gives, null included."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class InstanceUpdate(Strict):
    resources: ResourcesPatch = Field(default_factory=ResourcesPatch)


class LoadBody(Strict):
    kernel: Sha256
    initrd: Sha256 | None = None
    cmdline: str | None = Field(None, max_length=MAX_CMDLINE_BYTES)


class ActionBody(Strict):
    force: StrictBool = False  # "yes" or 1 is a 422, not a forced stop


class PoolIn(Strict):
    cpus: list[CpuId] = Field(max_length=8192)
    memory_base: U64
    memory_bytes: U64
    llc_way_mask: LlcMask | None = None
    devices: list[DeviceName] = Field(default_factory=list, max_length=256)


class MemChunkOut(BaseModel):
    base: int
    bytes: int
    numa_node: int | None = None


class SegmentOut(BaseModel):
    kind: str
    mem: int
    memsz: int
    bufsz: int
    sha256: str
    in_pool: bool = True


class KimageOut(BaseModel):
    kernel: str
    initrd: str | None
    cmdline: str
    loader: str
    start: int
    spawnable: bool
    segments: list[SegmentOut]
    # DESIGN "Two backends": `kernel` when the kernel showed the segments (the simulator does),
    # `computed` when the daemon planned them with its own loaders (a real kernel shows none).
    segments_source: Literal["kernel", "computed"] = "kernel"


class ResourcesOut(BaseModel):
    cpus: list[int]
    memory_bytes: int
    llc_way_mask: int | None = None
    devices: list[str] = Field(default_factory=list)
    numa_node: int | None = None


class ConditionOut(BaseModel):
    type: Literal["ResourcesApplied", "KernelLoaded", "Running"]
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    last_transition: str


class PlanStep(BaseModel):
    action: str
    reason: str


class InstanceOut(BaseModel):
    id: int
    name: str
    uid: str
    state: Literal["EMPTY", "READY", "LOADING", "LOADED", "ACTIVE", "FAILED"]
    kernel_state: str
    resources: ResourcesOut
    memory: list[MemChunkOut]
    kimage: KimageOut | None
    failure: str | None = None
    # What the daemon lets reach the kernel now (mkd/domain/states.py allowed_actions): the state's
    # transition rules less what the host's capabilities rule out. "update" is PATCH.
    allowed_actions: list[Action]
    version: int
    created_at: str
    updated_at: str
    # Only on a declared instance (DESIGN "Desired state").
    spec: dict[str, Any] | None = None
    generation: int | None = None
    observed_generation: int | None = None
    restarts: int | None = None
    labels: dict[str, str] | None = None
    conditions: list[ConditionOut] | None = None
    last_failure: dict[str, Any] | None = None
    deleting: bool | None = None
    plan: list[PlanStep] | None = None  # dry runs of a document PUT


class InstanceList(BaseModel):
    items: list[InstanceOut]
    next_cursor: str | None


class InstanceItems(BaseModel):
    items: list[InstanceOut]


class PoolFree(BaseModel):
    cpus: list[int]
    memory_bytes: int
    llc_way_mask: int | None = None
    devices: list[str] = Field(default_factory=list)


class PoolOut(BaseModel):
    cpus: list[int]
    memory_base: int
    memory_bytes: int
    llc_way_mask: int | None
    devices: list[str]
    chunks: list[MemChunkOut]
    free: PoolFree


class PoolPutOut(BaseModel):
    changed: bool
    diff: dict[str, Any]
    pool: PoolOut


class ImageOut(BaseModel):
    sha256: str
    size: int
    format: Literal["bzImage", "elf", "arm64-image", "initrd", "unknown"]
    created_at: str | None = None


class ImageList(BaseModel):
    items: list[ImageOut]
    next_cursor: str | None = None


class CpuOut(BaseModel):
    id: int
    logical_id: int
    numa_node: int
    llc: int


class DeviceOut(BaseModel):
    name: str
    type: str


class TopologyOut(BaseModel):
    cpus: list[CpuOut]
    memory_bytes: int
    numa_nodes: int
    llc_way_mask: int
    devices: list[DeviceOut]
    pool_base: int
    pool_bytes: int


class HostOut(BaseModel):
    backend: str
    kernel_profile: str
    arch: str
    capabilities: dict[str, bool] = Field(description=(
        "What the kernel can do: halt, per_instance_unload, hot_update, numa, active_reported, and at "
        "v7.0-mk2 hotplug_active (hot-plug into ACTIVE instances), console (the console device), "
        "llc_way_masks (LLC requests are 409 EOPNOTSUPP without it)"))
    topology: TopologyOut


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errno: str | None = None
    errno_value: int | None = None
    instance_id: int | None = None
    # PATCH of an ACTIVE instance that failed part-way (spec 8.7): the operations that took effect.
    applied: list[dict[str, Any]] | None = None


class ImagesPruned(BaseModel):
    removed: list[str]


class FleetNodeOut(BaseModel):
    """`nodes/<node>` as DESIGN "Fleet" lists it, plus `live` (holds a lease) and `cordoned`."""

    model_config = ConfigDict(extra="allow")
    name: str
    cordoned: bool = False
    live: bool = True


class FleetNodeList(BaseModel):
    items: list[FleetNodeOut]


class FleetStatusOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    node: str | None
    phase: Literal["Pending", "Placed", "Running", "NodeLost", "Failed"]


class FleetInstanceOut(BaseModel):
    """A fleet Instance document as stored, with its `status`."""

    model_config = ConfigDict(extra="allow")
    apiVersion: str  # noqa: N815
    kind: str
    metadata: dict[str, Any]
    spec: dict[str, Any]
    status: FleetStatusOut


class FleetInstanceList(BaseModel):
    items: list[FleetInstanceOut]
