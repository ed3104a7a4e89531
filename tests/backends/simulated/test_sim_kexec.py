"""kexec_file_load and unload, both generations (spec 2.2-2.6; vectors 1-5, 14-24, 53)."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import pytest
from conftest import BackendFactory, MiB, kernel_of, load_flags, spec, with_baseline

from mkd.backends.host.backend import HostBackend
from mkd.backends.simulated.faults import Faults
from mkd.errors import KernelError
from mkd.kernel_types import LoadRequest
from mkd.kexec.flags import (
    KEXEC_FILE_UNLOAD,
    KEXEC_MULTIKERNEL,
    kexec_get_mk_id,
    kexec_mk_id,
)


def _load(
    backend: HostBackend,
    image: Path,
    instance_id: int = 1,
    *,
    flags: int | None = None,
    cmdline: bytes | None = b"console=ttyS0\0",
) -> None:
    kernel_of(backend).kexec_file_load(
        image, None, cmdline, load_flags(instance_id) if flags is None else flags, kernel_sha256="k" * 64
    )


def _errno_of(call: object, *args: object, **kwargs: object) -> int:
    with pytest.raises(KernelError) as exc:
        call(*args, **kwargs)  # type: ignore[operator]
    return exc.value.errno_code


def test_flag_vectors() -> None:
    """vectors 1-3."""
    assert kexec_mk_id(1) == 0x20 and KEXEC_MULTIKERNEL | kexec_mk_id(1) == 0x30
    assert kexec_get_mk_id(0xFFFF) == 2047
    assert kexec_mk_id(2048) == 0


@pytest.mark.parametrize("profile", ["rfc-v2", "tree"])
def test_generic_and_id_checks(make_backend: BackendFactory, images: dict[str, Path], profile: str) -> None:
    backend = make_backend(kernel_profile=profile)
    vmlinux = images["vmlinux"]
    assert _errno_of(_load, backend, vmlinux, flags=0x10000 | load_flags(1)) == errno.EINVAL  # 2.2 step 2
    assert _errno_of(_load, backend, vmlinux, flags=KEXEC_MULTIKERNEL) == errno.EINVAL  # vector 4
    assert _errno_of(_load, backend, vmlinux, flags=KEXEC_MULTIKERNEL | kexec_mk_id(2048)) == errno.EINVAL  # 3
    assert _errno_of(_load, backend, vmlinux, 5) == errno.ENOENT  # vector 5
    assert backend.list_instances() == []
    # id <= 0 wins over everything else, lookup wins over the image
    assert _errno_of(_load, backend, images["garbage"], flags=KEXEC_MULTIKERNEL) == errno.EINVAL
    assert _errno_of(_load, backend, images["garbage"], 5) == errno.ENOENT


@pytest.mark.parametrize("profile", ["rfc-v2", "tree"])
def test_concurrent_load_is_refused_by_the_kexec_mutex(
    make_backend: BackendFactory, images: dict[str, Path], profile: str
) -> None:
    backend = with_baseline(make_backend(kernel_profile=profile))
    backend.create_instances([spec(1, "web", (), 256 * MiB)])
    holder_ready, release = threading.Event(), threading.Event()

    def hold_mutex() -> None:  # another kexec call in progress
        with kernel_of(backend).kexec_mutex:
            holder_ready.set()
            release.wait(5)

    thread = threading.Thread(target=hold_mutex)
    thread.start()
    holder_ready.wait(5)
    try:
        assert _errno_of(_load, backend, images["vmlinux"]) == errno.EBUSY
        assert _errno_of(backend.start, 1) == errno.EBUSY
    finally:
        release.set()
        thread.join()
    assert backend.read_instance(1).kernel_state == "ready"
    _load(backend, images["vmlinux"])


def test_v2_load_keeps_loading_and_lists_the_kimage(v2: HostBackend, images: dict[str, Path]) -> None:
    """vectors 14, 15, 53."""
    assert kernel_of(v2).proc_kimage().splitlines()[-1] == "No kimages loaded"
    v2.create_instances([spec(1, "web", (1,), 512 * MiB)])
    inst = v2.kexec_file_load(LoadRequest(images["vmlinux"], None, b"console=ttyS0\0", load_flags(1), "a" * 64))
    assert inst.kernel_state == "loading"
    assert inst.kimage is not None and inst.kimage.kernel_sha256 == "a" * 64
    # mainline's IMA buffer (v2 does not skip it), the vmlinux segments, then control + swap pages
    assert [s.kind for s in inst.kimage.segments] == ["ima", "boot_params", "kernel", "control", "swap"]
    assert all(s.in_pool for s in inst.kimage.segments)
    assert any(line.startswith("    1  multikernel") for line in kernel_of(v2).proc_kimage().splitlines())
    assert _errno_of(_load, v2, images["vmlinux"]) == errno.EBUSY  # vector 15
    assert v2.read_instance(1).kernel_state == "loading"
    free = v2.read_instance(1)
    v2.unload(1)
    after = v2.read_instance(1)
    assert after.kernel_state == "ready" and after.kimage is None
    assert after.memory == free.memory


def test_v2_failed_load_reverts_to_ready(v2: HostBackend, images: dict[str, Path]) -> None:
    """vector 16, default mode."""
    v2.create_instances([spec(1, "web", (1,), 512 * MiB)])
    assert _errno_of(_load, v2, images["garbage"]) == errno.ENOEXEC
    inst = v2.read_instance(1)
    assert (inst.kernel_state, inst.kimage, inst.failure) == ("ready", None, None)
    _load(v2, images["vmlinux"])
    assert v2.read_instance(1).kernel_state == "loading"


def test_v2_bug_compat_leaves_a_dangling_kimage(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    """vector 16, bug-compatible mode: stays loading, next load EBUSY, rmdir EBUSY, unload clears it."""
    backend = make_backend(kernel_profile="rfc-v2", bug_compat=True)
    backend.create_instances([spec(1, "web", (1,), 512 * MiB)])
    assert _errno_of(_load, backend, images["garbage"]) == errno.ENOEXEC
    kernel = kernel_of(backend)
    inst = kernel.read_instance(1)  # the kernel's record: no kimage behind the state
    assert inst.kernel_state == "loading" and inst.kimage is None
    assert inst.failure is not None and "dangling" in inst.failure
    assert backend.read_instance(1).kernel_state == "loading"  # all the client can see
    assert _errno_of(_load, backend, images["vmlinux"]) == errno.EBUSY
    assert _errno_of(backend.delete_instance, 1) == errno.EBUSY
    assert _errno_of(backend.start, 1) == errno.EINVAL
    # The seed's unload frees only the `kexec_image` slot, which the failed image never reached:
    # it returns 0 and the dangling kimage stays (spec 2.3 note, 2.5). The client, told no
    # per-instance unload exists there, does not try.
    assert kernel.kexec_file_load(None, None, None, KEXEC_FILE_UNLOAD | load_flags(1)) == 0
    assert kernel.read_instance(1).kernel_state == "loading"
    assert kernel.read_instance(1).failure is not None
    assert _errno_of(backend.unload, 1) == errno.EOPNOTSUPP


def test_v2_bug_compat_unload_ignores_the_id(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    """spec 2.5 / seed: KEXEC_FILE_UNLOAD jumps past the multikernel path: id 0 or an unknown id
    returns 0 and frees whatever image holds the single `kexec_image` slot."""
    backend = make_backend(kernel_profile="rfc-v2", bug_compat=True)
    backend.create_instances([spec(1, "a", (1,), 256 * MiB), spec(2, "b", (2,), 256 * MiB)])
    _load(backend, images["vmlinux"], 2)
    assert kernel_of(backend).kexec_file_load(None, None, None, KEXEC_FILE_UNLOAD | KEXEC_MULTIKERNEL) == 0  # id 0
    assert backend.read_instance(2).kernel_state == "ready"
    assert kernel_of(backend)._model.instances[2].pool.avail() == 256 * MiB
    _load(backend, images["vmlinux"], 2)
    assert kernel_of(backend).kexec_file_load(None, None, None, KEXEC_FILE_UNLOAD | load_flags(99)) == 0  # unknown
    assert backend.read_instance(2).kernel_state == "ready"
    # an empty slot: still 0, nothing changes
    assert kernel_of(backend).kexec_file_load(None, None, None, KEXEC_FILE_UNLOAD | load_flags(1)) == 0
    # without bug_compat the same calls are refused per id
    plain = make_backend(kernel_profile="rfc-v2")
    assert _errno_of(kernel_of(plain).kexec_file_load, None, None, None, KEXEC_FILE_UNLOAD | KEXEC_MULTIKERNEL) == (
        errno.EINVAL
    )
    assert _errno_of(kernel_of(plain).kexec_file_load, None, None, None, KEXEC_FILE_UNLOAD | load_flags(99)) == (
        errno.ENOENT
    )


@pytest.mark.parametrize("bug_compat", [False, True])
def test_v2_failed_load_pool_memory(make_backend: BackendFactory, images: dict[str, Path], bug_compat: bool) -> None:
    """The seed's failed-load path frees nothing of the pool: segments placed and the control page
    are on no list, so they stay taken (bug_compat); default mode gives everything back."""
    backend = make_backend(Faults(fail_page_alloc=["swap"]), kernel_profile="rfc-v2", bug_compat=bug_compat)
    backend.create_instances([spec(1, "web", (1,), 512 * MiB)])
    assert _errno_of(_load, backend, images["vmlinux"]) == errno.ENOMEM
    left = kernel_of(backend)._model.instances[1].pool.avail()
    if bug_compat:
        # ima + boot_params + kernel + control page are all still allocated
        assert left < 512 * MiB - 0x1A00000
        assert backend.read_instance(1).kernel_state == "loading"
    else:
        assert left == 512 * MiB
        assert backend.read_instance(1).kernel_state == "ready"


def test_v2_bug_compat_single_kexec_image_slot(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    """spec 2.3 last paragraph: a second instance's image replaces and frees the first."""
    backend = make_backend(kernel_profile="rfc-v2", bug_compat=True)
    backend.create_instances([spec(1, "a", (1,), 256 * MiB), spec(2, "b", (2,), 256 * MiB)])
    _load(backend, images["vmlinux"], 1)
    _load(backend, images["vmlinux"], 2)
    assert backend.read_instance(1).kernel_state == "ready"
    assert backend.read_instance(1).kimage is None
    assert backend.read_instance(2).kernel_state == "loading"
    # mainline KEXEC_FILE_UNLOAD (no MULTIKERNEL) drops the slot
    kernel_of(backend).kexec_file_load(None, None, None, KEXEC_FILE_UNLOAD)
    assert backend.read_instance(2).kernel_state == "ready"


def test_v2_small_pool_falls_back_to_system_ram(v2: HostBackend, images: dict[str, Path]) -> None:
    """vector 17: 4 MiB instance pool, 26 MiB kernel segment: lands outside the pool."""
    v2.create_instances([spec(1, "web", (1,), 4 * MiB)])
    _load(v2, images["vmlinux"])
    inst = v2.read_instance(1)
    assert inst.kimage is not None
    kernel = next(s for s in inst.kimage.segments if s.kind == "kernel")
    assert not kernel.in_pool
    v2.unload(1)
    assert v2.read_instance(1).kernel_state == "ready"


def test_tree_small_pool_is_enomem(tree: HostBackend, images: dict[str, Path]) -> None:
    """vector 18."""
    tree.create_instances([spec(1, "web", (1,), 4 * MiB)])
    assert _errno_of(_load, tree, images["vmlinux"]) == errno.ENOMEM
    inst = tree.read_instance(1)
    assert inst.kernel_state == "ready" and inst.kimage is None


def test_tree_load_unload(tree: HostBackend, images: dict[str, Path]) -> None:
    """vectors 21, 22, 23, 53."""
    assert "No kimages loaded" not in kernel_of(tree).proc_kimage()
    tree.create_instances([spec(1, "web", (1,), 512 * MiB), spec(3, "db", (2,), 64 * MiB)])
    _load(tree, images["vmlinux"])
    inst = tree.read_instance(1)
    assert inst.kernel_state == "loaded"
    row = next(line for line in kernel_of(tree).proc_kimage().splitlines() if line.lstrip().startswith("1 "))
    assert "multikernel" in row and "file" in row and "console=ttyS0" in row
    assert _errno_of(_load, tree, images["vmlinux"]) == errno.EBUSY
    kernel_of(tree).kexec_file_load(None, None, None, KEXEC_FILE_UNLOAD | load_flags(1))
    after = tree.read_instance(1)
    assert after.kernel_state == "ready" and after.kimage is None
    assert kernel_of(tree)._model.instances[1].pool.avail() == 512 * MiB
    assert _errno_of(tree.unload, 3) == errno.ENOENT  # vector 23: no kimage
    assert _errno_of(tree.unload, 9) == errno.ENOENT  # unknown
    assert _errno_of(tree.unload, 2049) == errno.EINVAL  # never masked to 1


def test_tree_unload_while_active(tree: HostBackend, images: dict[str, Path]) -> None:
    """vector 24: no state guard."""
    tree.create_instances([spec(1, "web", (1,), 512 * MiB)])
    _load(tree, images["vmlinux"])
    assert tree.start(1).kernel_state == "active"
    assert tree.unload(1).kernel_state == "ready"
    assert kernel_of(tree).spawn_status(1) is None


@pytest.mark.parametrize("profile", ["rfc-v2", "tree"])
def test_copy_fault_frees_the_kimage(make_backend: BackendFactory, images: dict[str, Path], profile: str) -> None:
    backend = with_baseline(make_backend(Faults(fail_load_step="copy"), kernel_profile=profile))
    backend.create_instances([spec(1, "web", (), 512 * MiB)])
    assert _errno_of(_load, backend, images["vmlinux"]) == errno.EIO
    inst = backend.read_instance(1)
    assert inst.kernel_state == "ready" and inst.kimage is None
    assert kernel_of(backend)._model.instances[1].pool.avail() == 512 * MiB
    kernel_of(backend).faults.fail_load_step = None
    _load(backend, images["vmlinux"])
    assert backend.read_instance(1).kimage is not None


def test_non_multikernel_load_is_not_simulated(v2: HostBackend, images: dict[str, Path]) -> None:
    assert _errno_of(_load, v2, images["vmlinux"], flags=0) == errno.EOPNOTSUPP
    # a plain KEXEC_FILE_UNLOAD drops mainline's kexec_image slot (spec 2.4): empty here, so it
    # returns 0 and no instance changes
    v2.create_instances([spec(1, "web", (1,), 64 * MiB)])
    _load(v2, images["vmlinux"])
    before = v2.list_instances()
    assert kernel_of(v2).kexec_file_load(None, None, None, KEXEC_FILE_UNLOAD) == 0
    assert v2.list_instances() == before
