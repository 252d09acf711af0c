"""A container's default route, moved after the fact: when the endpoint that carried it is
unplugged (the kernel drops a route together with its link), the network service re-elects the
next non-internal endpoint and points the route there. Synchronous, like `wiring.py`; called
through `Wiring.set_default_route` (the network service's kernel seam) in a worker thread."""

from __future__ import annotations

import errno
from pathlib import Path

from . import netns
from .rtnl import Netlink


def set_default_route(pin: Path, ifname: str, gateway: str) -> None:
    """The default route of the namespace pinned at `pin`: via `gateway` on `ifname`, replacing
    any other (one RTM_NEWROUTE with NLM_F_REPLACE; idempotent)."""
    with netns.entered(pin):
        ctr = Netlink()
    with ctr:
        link = ctr.link(ifname)
        if link is None:
            raise OSError(errno.ENODEV, f"{ifname} is not in {pin}")
        ctr.add_default_route(gateway, link.index)
