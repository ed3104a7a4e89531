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
from mkd.kexec.kernel_pages import KernelPages
from mkd.kexec.kexec_file import CONTROL_PAGE_KINDS, KexecEnv, PreparedKimage, prepare_kimage, release_kimage

COPY_STEP = "copy"
# Sizes of the pages a load takes from the page allocator. The real constants were not read
# (spec 2.4 step 4, 6.4): one page each for the manifest and the KHO FDT (6.4: "must fit 4096
# bytes"), and the IPI area as two 64-slot rings of 4 KiB messages plus headers (6.3), inferred.
MK_MANIFEST_SIZE = 4096
MK_SHARED_DATA_SIZE = 2 * 64 * (4096 + 64)
KHO_FDT_SIZE = 4096


def _page_allocator(model: KernelModel, env: KexecEnv, settings: SimulatorSettings, faults: Faults) -> KernelPages:
    """The page allocator as it stands: kernel RAM minus every pool chunk and every page a kimage holds.

    rfc-v2's RAM already leaves out the boot pool (memblock-reserved); the tree's pool is grown from
    the page allocator, so all of RAM is the allocator's except the chunks handed out (spec 3.1).
    """
    whole = ((0, settings.memory_bytes),)
    ram = (env.system_ram or whole) if model.profile == "rfc-v2" else whole
    excluded = [(chunk.base, chunk.size) for chunk in model.pool.chunks]
    for inst in model.instances.values():
        excluded += inst.chunks
        if inst.kimage is not None:
            excluded += [(addr, size) for addr, size, in_pool in inst.kimage.control_pages if not in_pool]
            excluded += [(addr, size) for _, addr, size in inst.kimage.kernel_pages]
    return KernelPages(ram=ram, excluded=excluded, failing=frozenset(faults.fail_page_alloc))


def _record(
    prepared: PreparedKimage, mk_id: int, request: LoadRequest, pages: KernelPages | None = None
) -> KimageRecord:
    kimage = prepared.to_kimage(kernel_sha256=request.kernel_sha256, initrd_sha256=request.initrd_sha256)
    return KimageRecord(
        mk_id=mk_id,
        kimage=kimage,
        sources=[segment.source for segment in prepared.segments],
        pool_allocations=list(prepared.pool_allocations()),
        control_pages=[(addr, size, in_pool) for addr, size, in_pool in prepared.control_pages],
        nr_segments=prepared.nr_segments,
        cmdline=prepared.cmdline,
        # manifest, IPI ring, KHO FDT: held until kimage_free; control pages are listed above
        kernel_pages=[] if pages is None else [page for page in pages.taken if page[0] not in CONTROL_PAGE_KINDS],
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
    pages = _page_allocator(model, env, settings, faults)
    try:
        pages.alloc("kho_fdt", KHO_FDT_SIZE)  # spec 2.3 step 6 (patch 16): one KHO FDT page
        # The seed's error path frees none of the pool: placed segments and control pages are on no
        # list (seed kexec_alloc_multikernel / kimage_alloc_multikernel_control_pages), so they leak.
        prepared = prepare_kimage(
            env, request, inst.pool, kernel_pages=pages, free_on_failure=not settings.bug_compat
        )
    except KernelError:
        if settings.bug_compat:
            # the patch's error label frees the image without undoing the cross-link
            inst.dangling_kimage = True
        else:
            inst.state = transition(model.profile, inst.state, KEvent.LOAD_FAILURE, instance_id=mk_id)
        raise
    _copy_segments(model, inst, prepared, faults)
    inst.kimage = _record(prepared, mk_id, request, pages)
    inst.state = transition(model.profile, inst.state, KEvent.LOAD_SUCCESS, instance_id=mk_id)
    if settings.bug_compat:
        # installed as `kexec_image`: the image in that slot is replaced and freed (spec 2.3)
        unload_slot(model)
        model.kexec_image_slot = mk_id
    return inst


def load_tree(
    model: KernelModel, request: LoadRequest, env: KexecEnv, settings: SimulatorSettings, faults: Faults
) -> InstanceRecord:
    """tree order (spec 2.4): id, lookup, busy, prepare (state untouched), copy, LOADED."""
    mk_id = kexec_get_mk_id(request.flags)
    if mk_id <= 0:
        raise KernelError(errno.EINVAL, "multikernel id must be > 0", instance_id=mk_id)
    if request.flags & KEXEC_FILE_UNLOAD:
        return unload_by_id(model, mk_id)
    inst = _lookup(model, mk_id)
    if inst.has_kimage:
        raise KernelError(errno.EBUSY, f"instance {mk_id} already has a kimage", instance_id=mk_id)
    # kimage_file_alloc_init (spec 2.4 step 4): the manifest pages, then the IPI ring pages, then
    # the image; any failure undoes the association only, and what was taken is given back.
    pages = _page_allocator(model, env, settings, faults)
    pages.alloc("manifest", MK_MANIFEST_SIZE)
    pages.alloc("ipi", MK_SHARED_DATA_SIZE)
    prepared = prepare_kimage(env, request, inst.pool, kernel_pages=pages)
    _copy_segments(model, inst, prepared, faults)
    inst.kimage = _record(prepared, mk_id, request, pages)
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
        return load_tree(model, request, env, settings, faults)
    if flags & KEXEC_FILE_UNLOAD:
        if settings.bug_compat:
            # The seed's kexec_file_load jumps to the image exchange before kimage_file_alloc_init:
            # whatever the id (0, unknown), the single `kexec_image` slot is freed and 0 returned
            # (spec 2.3 last paragraph, 2.5; seed-rfc-v2-15-16 adds no unload path).
            holder = model.instances.get(model.kexec_image_slot) if model.kexec_image_slot else None
            unload_slot(model)
            return holder
        return unload_by_id(model, kexec_get_mk_id(flags))
    return load_v2(model, request, env, settings, faults)
