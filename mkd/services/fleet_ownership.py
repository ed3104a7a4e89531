"""A fleet instance is a declared instance of its node that only the fleet changes (DESIGN
"Fleet": local writes to it answer 409 EBUSY, "owned by the fleet").

The mark is a label on the declared instance, so it is stored with the spec, survives restarts
and shows in `mkd get -o yaml`; no client may set it or remove it."""

from __future__ import annotations

import errno
from collections.abc import Mapping

from mkd.db.models import DeclaredRecord
from mkd.errors import InvalidInput, KernelError

OWNER_LABEL = "mkd.dev/owner"
# The fleet spec's `reschedule` (Never|OnNodeLoss), kept on the node so it knows what to fence
# without etcd (DESIGN "Fleet", fencing).
RESCHEDULE_LABEL = "mkd.dev/reschedule"
RESERVED_LABELS = (OWNER_LABEL, RESCHEDULE_LABEL)
FLEET = "fleet"


def is_fleet_owned(declared: DeclaredRecord | None) -> bool:
    return declared is not None and declared.labels.get(OWNER_LABEL) == FLEET


def refuse_if_fleet_owned(name: str, declared: DeclaredRecord | None, *, cause: str,
                          instance_id: int | None = None) -> None:
    """Local writes (cause `api`) to a fleet instance: 409 EBUSY. The fleet and the reconciler pass."""
    if cause == "api" and is_fleet_owned(declared):
        raise KernelError(errno.EBUSY, f"instance {name!r} is owned by the fleet: change it through "
                          f"/v1/fleet/instances/{name}", instance_id=instance_id)


def check_labels(labels: Mapping[str, str], *, cause: str) -> None:
    """Only the fleet sets its labels."""
    for label in RESERVED_LABELS:
        if cause != FLEET and label in labels:
            raise InvalidInput(f"label {label!r} is reserved for the fleet")
