"""Settings: a TOML file, then MKD_ environment variables, then command-line flags (highest)."""

from __future__ import annotations

import ipaddress
import re
import socket
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mkd.errors import InvalidInput
from mkd.kernel_types import KernelProfile


class SimulatorSettings(BaseModel):
    """The simulated machine and kernel (DESIGN.md "Running", section [simulator])."""

    model_config = ConfigDict(extra="forbid")

    # DESIGN "Two kernel generations": the tree (v7.0-mk2) is the kernel hosts run.
    kernel_profile: KernelProfile = "tree"
    arch: Literal["x86_64", "arm64"] = "x86_64"
    cpus: int = Field(16, ge=1, le=8192)
    numa_nodes: int = Field(2, ge=1, le=64)
    llc_per_node: int = Field(1, ge=1, le=64)
    llc_ways: int = Field(12, ge=1, le=32)
    memory_bytes: int = Field(32 << 30, ge=1 << 20, le=1 << 50)
    pool_base: int = Field(0x1_0000_0000, ge=0, le=1 << 50)
    pool_bytes: int = Field(4 << 30, ge=4096, le=1 << 46)
    mk_ipi_abi_version: int = Field(1, ge=0, le=0xFFFF_FFFF)
    halt_ack_timeout_s: float = Field(30.0, ge=0.0, le=3600.0)
    bug_compat: bool = False
    # Kernel build options that change loader behaviour (spec 2.7).
    five_level_paging: bool = False
    kexec_sig_enforced: bool = False
    # The caller's privileges and the kernel's lockdown (spec 2.2 step 1, 2.7.1 step 3, 6.2).
    cap_sys_boot: bool = True
    lockdown: Literal["none", "integrity", "confidentiality"] = "none"
    purgatory_bytes: int = Field(0x4000, ge=4096, le=1 << 20)
    bzimage_policy: Literal["load-no-spawn", "reject"] = "load-no-spawn"  # spec 2.7.5 option a / b
    devices: list[str] = Field(default_factory=list)  # platform device names / PCI ids present
    heartbeat_interval_s: float = Field(5.0, gt=0.0, le=3600.0)  # rfc-v2 only: the tree release has none
    # tree at v7.0-mk2 (spec 8): the open LLC pull request's behaviour instead of ignoring llc-way-mask
    llc_way_masks: bool = False
    chosen_layout: Literal["pool-cpus", "host-tree"] = "pool-cpus"  # spec 8.9.2: the boot tree's /chosen
    memory_block_size: int = Field(128 << 20, ge=4096, le=1 << 40)  # spec 8.7.3: the spawn's hot-plug unit
    resource_ack_timeout_s: float = Field(10.0, ge=0.0, le=3600.0)  # spec 8.3.3: MK_RES_ACK wait; tests set it low
    offline_cpus: list[int] = Field(default_factory=list)  # host CPUs that are offline (spec 8.5.5)
    # Fault injection, used by tests: see mkd.backends.simulated.faults.Faults.
    faults: dict[str, Any] = Field(default_factory=dict)


class DaemonSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state_dir: Path = Path("var")
    listen: str | None = "127.0.0.1:8080"
    # DESIGN "Security": a unix socket (0660) and loopback by default; `socket` moves it.
    unix_socket: bool = True
    socket: Path | None = None  # default <state_dir>/mkd.sock
    backend: Literal["simulated", "host"] = "simulated"
    strict_isolation: bool = True
    tokens_file: Path | None = None
    allowed_hosts: list[str] = Field(default_factory=list)  # DNS names clients may use in Host
    # Kept for old configs; [limits] max_image_bytes is the setting (see Settings.image_limit).
    max_image_bytes: int | None = Field(None, ge=1, le=1 << 42)
    event_retention: int = Field(10_000, ge=1, le=10_000_000)
    idempotency_ttl_s: int = Field(24 * 3600, ge=1)
    sysfs_root: Path = Path("/sys/fs/multikernel")
    console_device: Path = Path("/dev/mktty")  # the tree's console device (spec 8.8)
    # The kernel raises no notification (spec 8.4): instance status is polled this often.
    status_poll_interval_s: float = Field(1.0, gt=0, le=3600)
    # Memory hot-add to an ACTIVE instance: the release allocates by size, not at the spawn's
    # address (spec 8.7.3), so it is refused unless an operator asks for it.
    hotplug_memory_active: bool = False
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"  # uvicorn's names
    crash_at: str | None = None  # tests only: see mkd.crash_points
    # DESIGN "Durability" needs "full"; "normal" exists only as the bench's baseline (tests/bench).
    sqlite_synchronous: Literal["full", "normal"] = "full"
    # DESIGN "Security": TLS beyond loopback (client certificates required when tls_client_ca is
    # set), or plaintext there only with insecure_plaintext = true; proxies whose X-Forwarded-*
    # headers count (addresses or networks; default none).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    insecure_plaintext: bool = False
    trusted_proxies: list[str] = Field(default_factory=list)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_networks(cls, proxies: list[str]) -> list[str]:
        for proxy in proxies:
            ipaddress.ip_network(proxy, strict=False)  # ValueError names the bad entry
        return proxies

    @model_validator(mode="after")
    def _tls_pair(self) -> DaemonSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca needs tls_cert and tls_key")
        return self


class ReconcilerSettings(BaseModel):
    """DESIGN "Desired state": how the reconciler works through declared instances."""

    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(8, ge=1, le=256)
    poll_interval_s: float = Field(1.0, gt=0.0, le=3600.0)
    # Above the kernel's 30 s halt ACK wait, so the kernel's ETIMEDOUT comes first.
    stop_timeout_s: float = Field(40.0, gt=0.0, le=3600.0)


class LimitSettings(BaseModel):
    """DESIGN "Limits": nothing a client sends can exhaust the daemon (section [limits])."""

    model_config = ConfigDict(extra="forbid")

    max_json_bytes: int = Field(1 << 20, ge=1024, le=1 << 34)
    max_dt_bytes: int = Field(1 << 20, ge=1024, le=1 << 34)
    max_image_bytes: int = Field(8 << 30, ge=1, le=1 << 42)
    max_validation_errors: int = Field(20, ge=1, le=100_000)
    max_connections: int = Field(1024, ge=1, le=1_000_000)  # busy TCP connections; the unix socket is exempt
    header_timeout_s: float = Field(10.0, gt=0.0, le=3600.0)
    keepalive_timeout_s: float = Field(5.0, gt=0.0, le=3600.0)
    body_stall_timeout_s: float = Field(30.0, gt=0.0, le=3600.0)
    max_event_streams: int = Field(256, ge=1, le=1_000_000)
    max_console_streams: int = Field(64, ge=1, le=1_000_000)
    max_waiters: int = Field(256, ge=1, le=1_000_000)
    idempotency_keys_per_token: int = Field(10_000, ge=1, le=100_000_000)
    idempotency_bytes_per_token: int = Field(64 << 20, ge=1024, le=1 << 40)
    dtc_concurrency: int = Field(2, ge=1, le=256)
    dtc_queue: int = Field(8, ge=0, le=10_000)
    dtc_cpu_s: int = Field(5, ge=1, le=3600)
    dtc_memory_bytes: int = Field(256 << 20, ge=16 << 20, le=1 << 40)
    dtc_timeout_s: float = Field(10.0, gt=0.0, le=3600.0)  # wall clock: a dtc blocked on nothing CPU can't end
    dtc_path: Path | None = None  # default: `dtc` on PATH
    console_history_bytes: int = Field(1 << 20, ge=1024, le=1 << 34)
    audit_max_bytes: int = Field(64 << 20, ge=1024, le=1 << 40)
    audit_files: int = Field(4, ge=1, le=1000)


class FleetSettings(BaseModel):
    """DESIGN "Fleet": this daemon as one node of a fleet that shares an etcd cluster (section [fleet])."""

    model_config = ConfigDict(extra="forbid")

    endpoints: list[str] = Field(min_length=1, max_length=16)  # etcd client URLs, e.g. "http://10.0.0.1:2379"
    node: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    advertise_url: str | None = None  # how peers and the CLI reach this node; default from [daemon] listen
    labels: dict[str, str] = Field(default_factory=dict)
    # To etcd and to peers: a client certificate (both or neither) and the CA that signs theirs.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    peer_token_file: Path | None = None  # a token this node presents to peers (image pulls)
    prefix: str = Field("/mkd/v1", pattern=r"^/[A-Za-z0-9._/-]*[A-Za-z0-9._-]$")
    scheduler: bool = True
    lease_ttl_s: int = Field(10, ge=2, le=3600)  # etcd leases count whole seconds
    fence_grace_s: float = Field(5.0, ge=0.0, le=3600.0)
    request_timeout_s: float = Field(5.0, gt=0.0, le=600.0)
    strategy: Literal["most-allocated", "spread"] = "most-allocated"

    @field_validator("endpoints", mode="before")
    @classmethod
    def _endpoints_from_env(cls, endpoints: Any) -> Any:
        """MKD_FLEET__ENDPOINTS="http://a:2379,http://b:2379": a comma-separated list."""
        return [e.strip() for e in endpoints.split(",") if e.strip()] if isinstance(endpoints, str) else endpoints

    @field_validator("endpoints")
    @classmethod
    def _endpoints_are_urls(cls, endpoints: list[str]) -> list[str]:
        for endpoint in endpoints:
            if not re.fullmatch(r"https?://[^/\s]+/?", endpoint):
                raise ValueError(f"endpoint {endpoint!r} is not an http(s)://host:port URL")
        return [endpoint.rstrip("/") for endpoint in endpoints]

    @model_validator(mode="after")
    def _tls_pair(self) -> FleetSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    daemon: DaemonSettings = Field(default_factory=lambda: DaemonSettings())
    simulator: SimulatorSettings = Field(default_factory=lambda: SimulatorSettings())
    reconciler: ReconcilerSettings = Field(default_factory=lambda: ReconcilerSettings())
    limits: LimitSettings = Field(default_factory=lambda: LimitSettings())
    fleet: FleetSettings | None = None  # absent: a lone daemon (the fleet routes answer 404)

    @model_validator(mode="after")
    def _one_image_limit(self) -> Settings:
        """`[daemon] max_image_bytes` still works; set beside a different `[limits]` one it is an error."""
        old = self.daemon.max_image_bytes
        if old is not None:
            if "max_image_bytes" in self.limits.model_fields_set and self.limits.max_image_bytes != old:
                raise ValueError(f"[daemon] max_image_bytes ({old}) and [limits] max_image_bytes "
                                 f"({self.limits.max_image_bytes}) differ: keep only [limits]")
            self.limits.max_image_bytes = old
        return self

    @property
    def database_path(self) -> Path:
        return self.daemon.state_dir / "mkd.sqlite3"

    @property
    def unix_socket_path(self) -> Path | None:
        """Where `mkd serve` binds its unix socket, or None when it binds none."""
        if self.daemon.socket is not None:
            return self.daemon.socket
        return self.daemon.state_dir / "mkd.sock" if self.daemon.unix_socket else None

    @property
    def advertise_url(self) -> str:
        """How peers reach this node: `[fleet] advertise_url`, else the listen address."""
        if self.fleet is not None and self.fleet.advertise_url:
            return self.fleet.advertise_url.rstrip("/")
        scheme = "https" if self.daemon.tls_cert is not None else "http"
        return f"{scheme}://{self.daemon.listen or '127.0.0.1:8080'}"

    @property
    def images_dir(self) -> Path:
        return self.daemon.state_dir / "images"

    @property
    def simulator_state_path(self) -> Path:
        return self.daemon.state_dir / "simkernel.sqlite3"


_PREFIXED_INT = re.compile(r"[+-]?0[xXoObB][0-9a-fA-F_]+")


def _env_value(value: str) -> str | int:
    """Environment values are strings; 0x/0o/0b integers are read as TOML would read them
    (pool_base = 0x100000000), everything else is left to the settings' own parsing."""
    return int(value, 0) if _PREFIXED_INT.fullmatch(value) else value


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    section, _, key = dotted.partition(".")
    data.setdefault(section, {})[key] = value


def load_settings(
    config_file: Path | None = None,
    *,
    env: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Build settings from a TOML file, MKD_<SECTION>__<KEY> env vars, then dotted overrides."""
    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            with open(config_file, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise InvalidInput(f"cannot read config file {config_file}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"config file {config_file} is not valid TOML: {exc}") from exc
    for key, value in (env or {}).items():
        if key.startswith("MKD_") and "__" in key:
            section, _, name = key[4:].lower().partition("__")
            _set_path(data, f"{section}.{name}", _env_value(value))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_path(data, dotted, value)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise InvalidInput(f"invalid settings: {problems}") from exc
    if settings.simulator.cpus % settings.simulator.numa_nodes:
        raise InvalidInput("simulator.cpus must split evenly over simulator.numa_nodes")
    return settings
