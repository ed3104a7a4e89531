"""Where the fleet keeps what in etcd (DESIGN "Fleet", keys under `[fleet] prefix`): one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FleetKeys:
    prefix: str

    def _under(self, kind: str) -> str:
        return f"{self.prefix}/{kind}/"

    @property
    def nodes(self) -> str:
        return self._under("nodes")

    @property
    def instances(self) -> str:
        return self._under("instances")

    @property
    def placements(self) -> str:
        return self._under("placements")

    @property
    def allocations(self) -> str:
        return self._under("allocations")

    @property
    def statuses(self) -> str:
        return self._under("status")

    @property
    def images(self) -> str:
        return self._under("images")

    @property
    def cordons(self) -> str:
        # Kept apart from nodes/<node> (which lives on the node's lease and is rewritten by it),
        # so a cordon outlives the node's restarts.
        return self._under("cordons")

    @property
    def leader(self) -> str:
        return f"{self.prefix}/scheduler/leader"

    def node(self, name: str) -> str:
        return self.nodes + name

    def instance(self, name: str) -> str:
        return self.instances + name

    def placement(self, name: str) -> str:
        return self.placements + name

    def allocation(self, node: str) -> str:
        return self.allocations + node

    def status(self, name: str) -> str:
        return self.statuses + name

    def cordon(self, node: str) -> str:
        return self.cordons + node

    def image(self, sha256: str, node: str) -> str:
        return f"{self.images}{sha256}/{node}"

    def image_holders(self, sha256: str) -> str:
        return f"{self.images}{sha256}/"

    def name_in(self, kind_prefix: str, key: str) -> str:
        """The last part of a key under `kind_prefix` (a node or instance name)."""
        return key[len(kind_prefix):]
