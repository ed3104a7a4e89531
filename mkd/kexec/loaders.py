"""kexec_file_loaders[] per architecture (spec 2.7.1 step 2)."""

from __future__ import annotations

from mkd.kexec.arm64_image import ARM64_IMAGE
from mkd.kexec.bzimage import BZIMAGE64
from mkd.kexec.env import KexecEnv
from mkd.kexec.loader_api import KexecLoader
from mkd.kexec.vmlinux import VMLINUX


def loaders_for(env: KexecEnv) -> tuple[KexecLoader, ...]:
    """x86_64: [vmlinux, bzImage64] (vmlinux needs CONFIG_MULTIKERNEL, which both simulated profiles
    have); arm64: [Image]."""
    if env.arch == "arm64":
        return (ARM64_IMAGE,)
    return (VMLINUX, BZIMAGE64) if env.multikernel else (BZIMAGE64,)
