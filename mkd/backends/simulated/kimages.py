"""kimage_free for multikernel images (spec 2.5): give memory back, unlink, state READY."""

from __future__ import annotations

from mkd.backends.simulated.model import InstanceRecord, KernelModel
from mkd.backends.simulated.states import KEvent, transition


def free_kimage(model: KernelModel, inst: InstanceRecord) -> None:
    """Every segment and control page returns to the instance pool; `instance->kimage = NULL`."""
    if inst.kimage is not None:
        for addr, size in inst.kimage.pool_allocations:
            inst.pool.free(addr, size)
    inst.kimage = None
    inst.dangling_kimage = False
    inst.spawn = None
    if model.kexec_image_slot == inst.id:
        model.kexec_image_slot = None
    inst.state = transition(model.profile, inst.state, KEvent.KIMAGE_FREE, instance_id=inst.id)
