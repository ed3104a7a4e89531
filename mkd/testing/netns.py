"""A private network namespace joined to this one by a veth pair, for tests that need a client
beyond loopback (DESIGN "Testing notes"): no test ever uses the machine's external address.

The two ends get a /30 of 10.0.0.0/8 that no route of this machine covers; both the pair and
the namespace are removed on exit, failure included. Needs root (ip netns, ip link).
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import subprocess
from types import TracebackType

_made = itertools.count()
# Where the /30s are picked from: private, and checked against this machine's routes.
_POOL = ipaddress.IPv4Network("10.213.0.0/16")


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _routed_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination this machine routes (its own addresses included)."""
    networks: list[ipaddress.IPv4Network] = []
    for line in _ip("-4", "route", "show", "table", "all").splitlines():
        words = line.split()
        if words and words[0] in ("broadcast", "local", "unreachable", "blackhole", "prohibit"):
            words = words[1:]
        try:
            networks.append(ipaddress.IPv4Network(words[0], strict=False))
        except (ValueError, IndexError):
            continue  # "default" and the like
    return networks


class NetworkNamespace:
    """`with NetworkNamespace() as ns:` run a process inside with `ns.exec_prefix`; from this
    namespace it is reached at `ns.inner_address`, and it sees this side as `ns.outer_address`."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100_000}x{next(_made)}"
        self.name = f"mkdt{tag}"
        self.outer_if, self.inner_if = f"mkv{tag}o", f"mkv{tag}i"  # at most 15 characters
        subnet = self._free_subnet(os.getpid() + next(_made))
        outer, inner = subnet.hosts()
        self.prefix = subnet.prefixlen
        self.outer_address, self.inner_address = str(outer), str(inner)

    @staticmethod
    def _free_subnet(seed: int) -> ipaddress.IPv4Network:
        taken = _routed_networks()
        candidates: list[ipaddress.IPv4Network] = list(ipaddress.IPv4Network(_POOL).subnets(new_prefix=30))
        for offset in range(len(candidates)):
            subnet = candidates[(seed * 7919 + offset) % len(candidates)]
            if not any(subnet.overlaps(network) for network in taken):
                return subnet
        raise RuntimeError(f"no /30 of {_POOL} is free of this machine's routes")

    @property
    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def __enter__(self) -> NetworkNamespace:
        try:
            _ip("netns", "add", self.name)
            _ip("link", "add", self.outer_if, "type", "veth", "peer", "name", self.inner_if)
            _ip("link", "set", self.inner_if, "netns", self.name)
            _ip("addr", "add", f"{self.outer_address}/{self.prefix}", "dev", self.outer_if)
            _ip("link", "set", self.outer_if, "up")
            _ip("-n", self.name, "addr", "add", f"{self.inner_address}/{self.prefix}", "dev", self.inner_if)
            _ip("-n", self.name, "link", "set", self.inner_if, "up")
            _ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        """Delete the pair (deleting one end deletes both) and the namespace; whatever exists."""
        for args in (("link", "del", self.outer_if), ("netns", "del", self.name)):
            try:
                _ip(*args)
            except RuntimeError:
                pass  # not made (a failure part-way) or already gone

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.remove()
