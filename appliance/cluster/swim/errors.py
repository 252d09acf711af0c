"""Errors of the gossip core, named by whose fault they are (h11's split).

A peer's bad packet is a ``RemoteProtocolError``: the core drops it, counts it and logs at
debug; it never crashes the node.  Our own misuse of the core (leaving twice, meta over 512
bytes, feeding a reply for a request we never made) is a ``LocalProtocolError`` and changes
nothing.
"""

from __future__ import annotations

__all__ = ["ProtocolError", "RemoteProtocolError", "LocalProtocolError"]


class ProtocolError(Exception):
    """Base class of the gossip core's errors."""


class RemoteProtocolError(ProtocolError):
    """A peer sent something we cannot accept: drop it, count it, carry on."""


class LocalProtocolError(ProtocolError):
    """We asked the core for something illegal; nothing was changed."""
