"""Bounds on device-tree input, so hostile bodies cost bounded time and memory."""

from __future__ import annotations

from mkd.kernel_types import MAX_DT_WRITE_BYTES, MAX_INSTANCE_ID

# DESIGN "Device trees per profile": device-tree bodies are limited to what the tree kernfs takes
# in one write (spec 5.1 rule 2 / 5.4).
MAX_DT_BYTES = MAX_DT_WRITE_BYTES

# No property the schema knows comes near this: 8192 u64 CPU ids are 64 KiB.
MAX_PROPERTY_BYTES = 64 * 1024

# The deepest node the schemas read is /fragment@N/__overlay__/instance-create/resources/devices/<dev>
# (depth 6); anything deeper is refused before it is walked.
MAX_NODE_DEPTH = 8

# DESIGN "Ids and refs": no plan can hold more instances than there are ids.
MAX_INSTANCES = MAX_INSTANCE_ID

# dtc's CPU, memory, wall-clock and concurrency bounds are [limits] settings (mkd.config.LimitSettings).
