"""A declared instance's spec as the daemon stores it (DESIGN "Desired state", the document's
`spec`), with every default filled in, so the same document twice is the same spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mkd.domain.desired.plan import Boot, DesiredState, Want
from mkd.domain.desired.restart import Backoff, RestartPolicy

UpdateStrategy = Literal["InPlace", "Recreate"]
DEFAULT_MAX_RESTARTS = 5
# DESIGN "Desired state": under tree the reconciler (and `mkd run`) add the multikernel console
# unless the command line names one, so a panic is visible to OnFailure.
MK_CONSOLE = "console=mktty0"


def effective_cmdline(cmdline: str, profile: str) -> str:
    if profile != "tree" or any(word.startswith("console=") for word in cmdline.split()):
        return cmdline
    return f"{cmdline} {MK_CONSOLE}".strip()


@dataclass(frozen=True)
class DeclaredSpec:
    resources: dict[str, Any]
    kernel: str
    initrd: str | None = None
    cmdline: str = ""
    state: DesiredState = DesiredState.ACTIVE
    restart_policy: RestartPolicy = RestartPolicy.ON_FAILURE
    backoff: Backoff = field(default_factory=Backoff)
    max_restarts: int = DEFAULT_MAX_RESTARTS
    update_strategy: UpdateStrategy = "InPlace"
    paused: bool = False
    id: int | None = None

    def boot(self, profile: str) -> Boot:
        """The kimage this spec asks for on a kernel of `profile`."""
        return Boot(self.kernel, self.initrd, effective_cmdline(self.cmdline, profile))

    def want(self, profile: str, *, deleting: bool = False) -> Want:
        return Want(
            state=None if deleting else self.state, boot=self.boot(profile), resources=self.resources, id=self.id,
            recreate=self.update_strategy == "Recreate",
        )

    def to_json(self) -> dict[str, Any]:
        """The document's `spec`, camelCase as the document has it."""
        out: dict[str, Any] = {
            "resources": self.resources, "kernel": self.kernel, "initrd": self.initrd, "cmdline": self.cmdline,
            "state": self.state.value, "restartPolicy": self.restart_policy.value,
            "restartBackoff": {"initial_s": self.backoff.initial_s, "max_s": self.backoff.max_s},
            "maxRestarts": self.max_restarts, "updateStrategy": self.update_strategy, "paused": self.paused,
        }
        if self.id is not None:
            out["id"] = self.id
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> DeclaredSpec:
        backoff = raw.get("restartBackoff") or {}
        return cls(
            resources=dict(raw["resources"]), kernel=raw["kernel"], initrd=raw.get("initrd"),
            cmdline=raw.get("cmdline") or "", state=DesiredState(raw.get("state", "Active")),
            restart_policy=RestartPolicy(raw.get("restartPolicy", "OnFailure")),
            backoff=Backoff(float(backoff.get("initial_s", 1.0)), float(backoff.get("max_s", 300.0))),
            max_restarts=int(raw.get("maxRestarts", DEFAULT_MAX_RESTARTS)),
            update_strategy="Recreate" if raw.get("updateStrategy") == "Recreate" else "InPlace",
            paused=bool(raw.get("paused", False)), id=raw.get("id"),
        )
