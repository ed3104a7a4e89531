"""Bounds on device-tree input, so hostile bodies cost bounded time and memory."""

from __future__ import annotations

# DESIGN "Device trees per profile": device-tree bodies are limited to 1 MiB (the tree kernfs
# write limit too, spec 5.1 rule 2 / 5.4).
MAX_DT_BYTES = 1 << 20

# No property the schema knows comes near this: 8192 u64 CPU ids are 64 KiB.
MAX_PROPERTY_BYTES = 64 * 1024

# The deepest node the schemas read is /fragment@N/__overlay__/instance-create/resources/devices/<dev>
# (depth 6); anything deeper is refused before it is walked.
MAX_NODE_DEPTH = 8

# DESIGN "Ids and refs": ids are 1..2047 (11 flag bits), so no plan can hold more instances.
MAX_INSTANCE_ID = 2047
MAX_INSTANCES = MAX_INSTANCE_ID

PAGE_SIZE = 4096

# Spec 5.3/5.5: numa-node ids must be < MAX_NUMNODES; the kernel's largest is 1 << NODES_SHIFT(10).
MAX_NUMNODES = 1 << 10

# dtc's CPU, memory, wall-clock and concurrency bounds are [limits] settings (mkd.config.LimitSettings).
