"""Gossip addresses: ``HOST:PORT`` parsing and memberlist's choice of an address to advertise."""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

__all__ = ["parse_hostport", "private_ipv4", "format_hostport"]

_SIOCGIFADDR = 0x8915


def parse_hostport(text: str, default_port: int) -> tuple[str, int]:
    """'10.0.0.1:7946', '10.0.0.1', 'host:7000', '[::1]:7946', ':7946' -> (host, port).

    ValueError (with a message fit for the command line) for anything else.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty address")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad address {text!r}")
        port_text = rest[1:] if rest else ""
    elif text.count(":") > 1:  # bare IPv6, no port
        host, port_text = text, ""
    else:
        host, _, port_text = text.partition(":")
    if port_text:
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ValueError(f"bad port in {text!r}")
        port = int(port_text)
    else:
        port = default_port
    return host or "0.0.0.0", port


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def private_ipv4() -> str | None:
    """memberlist ``GetPrivateIP``: the first RFC 1918 IPv4 address of an interface that is
    up, else the first non-loopback one; None if there is none.  Reads interface addresses
    with SIOCGIFADDR; sends nothing."""
    found: list[ipaddress.IPv4Address] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in socket.if_nameindex():
            try:
                req = struct.pack("256s", name.encode()[:15])
                res = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, req)
            except OSError:
                continue  # no IPv4 address on this interface
            found.append(ipaddress.IPv4Address(res[20:24]))
    usable = [a for a in found if not a.is_loopback and not a.is_link_local and not a.is_unspecified]
    for addr in usable:
        if addr.is_private:
            return str(addr)
    return str(usable[0]) if usable else None
