"""Fakes for the network service's two kernel seams: Wiring (netlink) and Firewall (iptables).

They record what they were asked and keep the same idempotence contract as the real ones, so the
engine's bookkeeping (leases, endpoints, events, errors) can be tested without root; the real
ones are exercised in tests/network inside throwaway namespaces.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from ..network.rtnl import Link
from ..network.wiring import Plug, Spare


class FakeWiring:
    def __init__(self) -> None:
        self.bridges: dict[str, tuple[str, int]] = {}
        self.sandboxes: dict[str, list[Plug]] = {}
        self.sysctls: dict[str, str] = {}
        self.default_routes: dict[str, tuple[str, str]] = {}  # pin -> (ifname, gateway)

    def ensure_bridge(self, name: str, gateway: str, prefix_len: int, mtu: int, mac: str) -> None:
        self.bridges[name] = (gateway, prefix_len)

    def delete_bridge(self, name: str) -> bool:
        return self.bridges.pop(name, None) is not None

    def make_spare(self, ns: Path, pin: Path) -> Spare:
        return Spare(ns, pin, None)

    def drop_spare(self, spare: Spare) -> None:
        pass

    def create_sandbox(self, pin: Path, plugs=(), spare: Spare | None = None) -> None:
        self.sandboxes.setdefault(str(pin), [])
        for plug in plugs:
            self.plug(pin, plug)

    def plug(self, pin: Path, plug: Plug) -> None:
        if plug.bridge not in self.bridges:
            raise OSError(19, f"bridge {plug.bridge} does not exist")
        self.sandboxes.setdefault(str(pin), []).append(plug)
        if plug.gateway:
            self.default_routes[str(pin)] = (plug.ifname, plug.gateway)

    def set_default_route(self, pin: Path, ifname: str, gateway: str) -> None:
        if not any(p.ifname == ifname for p in self.sandboxes.get(str(pin), [])):
            raise OSError(19, f"{ifname} is not in {pin}")
        self.default_routes[str(pin)] = (ifname, gateway)

    def unplug(self, host_ifname: str) -> bool:
        for pin, plugs in self.sandboxes.items():
            for plug in plugs:
                if plug.host_ifname == host_ifname:
                    plugs.remove(plug)
                    if self.default_routes.get(pin, ("",))[0] == plug.ifname:
                        del self.default_routes[pin]  # the kernel drops routes through a deleted link
                    return True
        return False

    def destroy_sandbox(self, pin: Path, host_ifnames: list[str]) -> None:
        self.sandboxes.pop(str(pin), None)
        self.default_routes.pop(str(pin), None)

    def release_sandbox(self, pin: Path) -> None:
        """The real one unpins and the kernel removes the veths a little later; here at once."""
        self.destroy_sandbox(pin, [])

    def present(self, names: list[str]) -> set[str]:
        plugged = {p.host_ifname for plugs in self.sandboxes.values() for p in plugs}
        return {n for n in names if n in plugged}

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
