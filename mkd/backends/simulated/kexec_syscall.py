"""kexec_file_load for multikernel images, after the generic pre-checks (spec 2.3, 2.4, 2.5).

The generic checks (legal flags, the kexec mutex) run in the kernel facade; these functions
run with the mutex held.
"""

from __future__ import annotations

import errno

from mkd.backends.simulated.faults import Faults
from mkd.backends.simulated.kimages import free_kimage
from mkd.backends.simulated.model import InstanceRecord, KernelModel, KimageRecord
from mkd.backends.simulated.states import KEvent, transition
from mkd.config import SimulatorSettings
from mkd.errors import KernelError
from mkd.kernel_types import LoadRequest
from mkd.kexec.flags import (
    KEXEC_FILE_ON_CRASH,
    KEXEC_FILE_UNLOAD,
    KEXEC_MULTIKERNEL,
    kexec_get_mk_id,
)
from mkd.kexec.kexec_file import KexecEnv, PreparedKimage, prepare_kimage, release_kimage

COPY_STEP = "copy"


def _record(prepared: PreparedKimage, mk_id: int, request: LoadRequest) -> KimageRecord:
    kimage = prepared.to_kimage(kernel_sha256=request.kernel_sha256, initrd_sha256=request.initrd_sha256)
    return KimageRecord(
        mk_id=mk_id,
        kimage=kimage,
        sources=[segment.source for segment in prepared.segments],
        pool_allocations=list(prepared.pool_allocations()),
        control_pages=[(addr, size, in_pool) for addr, size, in_pool in prepared.control_pages],
        nr_segments=prepared.nr_segments,
        cmdline=prepared.cmdline,
    )


def _lookup(model: KernelModel, mk_id: int) -> InstanceRecord:
    inst = model.instances.get(mk_id)
    if inst is None:
        raise KernelError(errno.ENOENT, f"no instance {mk_id}", instance_id=mk_id)
    return inst


def _copy_segments(model: KernelModel, inst: InstanceRecord, prepared: PreparedKimage, faults: Faults) -> None:
    """spec 2.4 step 5: machine_kexec_prepare + kimage_load_segment; failure -> kimage_free."""
    if faults.fail_load_step == COPY_STEP:
        release_kimage(prepared, inst.pool)
        inst.kimage = None
        free_kimage(model, inst)
        raise KernelError(
            errno.EIO, "copying a segment into instance memory failed (fault injection)", instance_id=inst.id
        )


def unload_by_id(model: KernelModel, mk_id: int) -> InstanceRecord:
    """KEXEC_FILE_UNLOAD|KEXEC_MULTIKERNEL (tree 2.4 step 2; the simulator's v2 default, 2.3)."""
    if mk_id <= 0:
        raise KernelError(errno.EINVAL, "multikernel id must be > 0", instance_id=mk_id)
    inst = model.instances.get(mk_id)
    if inst is None or not inst.has_kimage:
        raise KernelError(errno.ENOENT, f"no kimage for instance {mk_id}", instance_id=mk_id)
    free_kimage(model, inst)
    return inst


def unload_slot(model: KernelModel) -> None:
    """KEXEC_FILE_UNLOAD without KEXEC_MULTIKERNEL: mainline drops `kexec_image` (spec 2.4, 2.5).

    Under bug-compatible rfc-v2 that slot may hold a multikernel image (spec 2.3).
    """
    if model.kexec_image_slot is not None:
        holder = model.instances.get(model.kexec_image_slot)
        model.kexec_image_slot = None
        if holder is not None and holder.kimage is not None:
            free_kimage(model, holder)


def load_v2(
    model: KernelModel, request: LoadRequest, env: KexecEnv, settings: SimulatorSettings, faults: Faults
) -> InstanceRecord:
    """v2 order (spec 2.3): id, lookup, busy, associate + LOADING, then prepare."""
    mk_id = kexec_get_mk_id(request.flags)
    if mk_id <= 0:
        raise KernelError(errno.EINVAL, "multikernel id must be > 0", instance_id=mk_id)
    inst = _lookup(model, mk_id)
    if inst.has_kimage:
        raise KernelError(errno.EBUSY, f"instance {mk_id} already has a kimage", instance_id=mk_id)
    loading = transition(model.profile, inst.state, KEvent.LOAD_ASSOCIATE, instance_id=mk_id)
    inst.state = loading
    try:
        prepared = prepare_kimage(env, request, inst.pool)
    except KernelError:
        if settings.bug_compat:
            # the patch's error label frees the image without undoing the cross-link
            inst.dangling_kimage = True
        else:
            inst.state = transition(model.profile, inst.state, KEvent.LOAD_FAILURE, instance_id=mk_id)
        raise
    _copy_segments(model, inst, prepared, faults)
    inst.kimage = _record(prepared, mk_id, request)
    inst.state = transition(model.profile, inst.state, KEvent.LOAD_SUCCESS, instance_id=mk_id)
    if settings.bug_compat:
        # installed as `kexec_image`: the image in that slot is replaced and freed (spec 2.3)
        unload_slot(model)
        model.kexec_image_slot = mk_id
    return inst


def load_tree(model: KernelModel, request: LoadRequest, env: KexecEnv, faults: Faults) -> InstanceRecord:
    """tree order (spec 2.4): id, lookup, busy, prepare (state untouched), copy, LOADED."""
    mk_id = kexec_get_mk_id(request.flags)
    if mk_id <= 0:
        raise KernelError(errno.EINVAL, "multikernel id must be > 0", instance_id=mk_id)
    if request.flags & KEXEC_FILE_UNLOAD:
        return unload_by_id(model, mk_id)
    inst = _lookup(model, mk_id)
    if inst.has_kimage:
        raise KernelError(errno.EBUSY, f"instance {mk_id} already has a kimage", instance_id=mk_id)
    prepared = prepare_kimage(env, request, inst.pool)  # a failure undoes the association only
    _copy_segments(model, inst, prepared, faults)
    inst.kimage = _record(prepared, mk_id, request)
    inst.state = transition(model.profile, inst.state, KEvent.LOAD_SUCCESS, instance_id=mk_id)
    return inst


def kexec_file_load(
    model: KernelModel, request: LoadRequest, env: KexecEnv, settings: SimulatorSettings, faults: Faults
) -> InstanceRecord | None:
    """The syscall body; returns the instance it loaded or unloaded (None for the host slot)."""
    flags = request.flags
    crash = bool(flags & KEXEC_FILE_ON_CRASH)
    multikernel = bool(flags & KEXEC_MULTIKERNEL) and not (crash and model.profile == "rfc-v2")
    if not multikernel:
        # ON_CRASH wins over MULTIKERNEL in v2 (spec 2.3); host kexec images are not simulated
        if flags & KEXEC_FILE_UNLOAD:
            unload_slot(model)
            return None
        raise KernelError(errno.EOPNOTSUPP, "the simulated kernel loads only multikernel images")
    if model.profile == "tree":
        return load_tree(model, request, env, faults)
    if flags & KEXEC_FILE_UNLOAD:
        return unload_by_id(model, kexec_get_mk_id(flags))
    return load_v2(model, request, env, settings, faults)
