"""Choose the backend from the settings (the one place that knows both)."""

from __future__ import annotations

from mkd.backends.base import Backend
from mkd.config import Settings


def make_backend(settings: Settings) -> Backend:
    if settings.daemon.backend == "host":
        from mkd.backends.host.backend import HostBackend

        return HostBackend(settings)
    from mkd.backends.simulated.client import simulated_client

    return simulated_client(settings)
