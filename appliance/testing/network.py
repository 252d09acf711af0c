"""Fakes for the network service's two kernel seams: Wiring (netlink) and Firewall (iptables).

They record what they were asked and keep the same idempotence contract as the real ones, so the
engine's bookkeeping (leases, endpoints, events, errors) can be tested without root; the real
ones are exercised in tests/network inside throwaway namespaces.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from ..network.rtnl import Link
from ..network.wiring import Plug


class FakeWiring:
    def __init__(self) -> None:
        self.bridges: dict[str, tuple[str, int]] = {}
        self.sandboxes: dict[str, list[Plug]] = {}
        self.sysctls: dict[str, str] = {}

    def ensure_bridge(self, name: str, gateway: str, prefix_len: int, mtu: int, mac: str) -> None:
        self.bridges[name] = (gateway, prefix_len)

    def delete_bridge(self, name: str) -> bool:
        return self.bridges.pop(name, None) is not None

    def create_sandbox(self, pin: Path, plugs=()) -> None:
        self.sandboxes.setdefault(str(pin), [])
        for plug in plugs:
            self.plug(pin, plug)

    def plug(self, pin: Path, plug: Plug) -> None:
        if plug.bridge not in self.bridges:
            raise OSError(19, f"bridge {plug.bridge} does not exist")
        self.sandboxes.setdefault(str(pin), []).append(plug)

    def unplug(self, host_ifname: str) -> bool:
        for plugs in self.sandboxes.values():
            for plug in plugs:
                if plug.host_ifname == host_ifname:
                    plugs.remove(plug)
                    return True
        return False

    def destroy_sandbox(self, pin: Path, host_ifnames: list[str]) -> None:
        self.sandboxes.pop(str(pin), None)

    def links(self) -> list[Link]:
        out = [Link(i + 2, name, True, kind="bridge") for i, name in enumerate(self.bridges)]
        out += [Link(100 + i, p.host_ifname, True, kind="veth")
                for i, p in enumerate(p for plugs in self.sandboxes.values() for p in plugs)]
        return out

    def routes(self) -> list[ipaddress.IPv4Network]:
        return [ipaddress.IPv4Network(f"{gw}/{plen}", strict=False) for gw, plen in self.bridges.values()]

    def addresses(self) -> list[ipaddress.IPv4Interface]:
        return [ipaddress.IPv4Interface(f"{gw}/{plen}") for gw, plen in self.bridges.values()]

    def set_sysctl(self, key: str, value: str) -> None:
        self.sysctls[key] = value


class FakeFirewall:
    def __init__(self) -> None:
        self.hooked = False
        self.walls: list = []
        self.ports: list = []
        self.applied = 0

    async def ensure_hooks(self) -> None:
        self.hooked = True

    async def apply(self, walls, ports) -> None:
        self.walls, self.ports = list(walls), list(ports)
        self.applied += 1

    async def add_ports(self, ports) -> None:
        self.ports += list(ports)

    async def remove_ports(self, ports) -> None:
        self.ports = [p for p in self.ports if p not in list(ports)]

    async def teardown(self) -> None:
        self.walls, self.ports = [], []
