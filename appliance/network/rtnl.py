"""rtnetlink, the few messages the node needs: links (bridge, veth), IPv4 addresses, routes.

Two halves. The codec (`link_message`, `addr_message`, ... and `parse_*`) is pure: it packs and
unpacks bytes and is tested without a kernel. `Netlink` is a blocking socket bound to the network
namespace it was opened in: one request, one ack or dump, errors as OSError with the kernel's
errno. Callers run it from a worker thread (`trio.to_thread.run_sync`); nothing here blocks for
long (the kernel answers in microseconds), and a socket is never shared between threads.

Why not iproute2 or pyroute2: one container's wiring is 5 netlink requests; done here they take
well under a millisecond, where `ip` costs ~2 ms per process and pyroute2 measured ~32 ms per
container on these hosts (docs/networking.md has the figures).
"""

from __future__ import annotations

import errno as _errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass
from typing import Self

# ---- constants (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/veth.h) --------------
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_LINKINFO, IFLA_NET_NS_FD = 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL, IFA_BROADCAST = 1, 2, 4
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5

IFF_UP = 0x1
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1

_NLMSGHDR = struct.Struct("=IHHII")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr: length, type, payload, padded to 4 bytes."""
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def _str(value: str) -> bytes:
    return value.encode() + b"\0"


def _u32(value: int) -> bytes:
    return struct.pack("=I", value)


def _mac(value: str) -> bytes:
    return bytes(int(part, 16) for part in value.split(":"))


def _ip4(value: str) -> bytes:
    return ipaddress.IPv4Address(value).packed


def header(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


# ---- request bodies (pure) ----------------------------------------------------------------------


def ifinfo(index: int = 0, up: bool | None = None) -> bytes:
    flags = IFF_UP if up else 0
    change = IFF_UP if up is not None else 0
    return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flags, change)


def new_bridge(name: str, mtu: int, mac: str) -> bytes:
    return (ifinfo(up=True) + attr(IFLA_IFNAME, _str(name)) + attr(IFLA_MTU, _u32(mtu))
            + attr(IFLA_ADDRESS, _mac(mac)) + attr(IFLA_LINKINFO, attr(IFLA_INFO_KIND, _str("bridge"))))


def new_veth(name: str, mtu: int, master: int, peer_name: str, peer_netns_fd: int, peer_mac: str) -> bytes:
    """A veth pair: `name` up on bridge `master` here, `peer_name` created directly in the
    namespace behind `peer_netns_fd` (so its name only has to be unique there). The peer is left
    down: the kernel refuses (ENOTCONN) to open it before the pair is registered; set it up
    from inside its namespace."""
    peer = (ifinfo() + attr(IFLA_IFNAME, _str(peer_name)) + attr(IFLA_MTU, _u32(mtu))
            + attr(IFLA_ADDRESS, _mac(peer_mac)) + attr(IFLA_NET_NS_FD, _u32(peer_netns_fd)))
    info = attr(IFLA_INFO_KIND, _str("veth")) + attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer))
    return (ifinfo(up=True) + attr(IFLA_IFNAME, _str(name)) + attr(IFLA_MTU, _u32(mtu))
            + attr(IFLA_MASTER, _u32(master)) + attr(IFLA_LINKINFO, info))


def link_by_name(name: str) -> bytes:
    return ifinfo() + attr(IFLA_IFNAME, _str(name))


def set_up(index: int) -> bytes:
    return ifinfo(index, up=True)


def new_addr(index: int, address: str, prefix_len: int) -> bytes:
    net = ipaddress.IPv4Network(f"{address}/{prefix_len}", strict=False)
    body = _IFADDRMSG.pack(socket.AF_INET, prefix_len, 0, RT_SCOPE_UNIVERSE, index)
    body += attr(IFA_LOCAL, _ip4(address)) + attr(IFA_ADDRESS, _ip4(address))
    if prefix_len <= 30:
        body += attr(IFA_BROADCAST, net.broadcast_address.packed)
    return body


def default_route(gateway: str, oif: int) -> bytes:
    body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
    return body + attr(RTA_GATEWAY, _ip4(gateway)) + attr(RTA_OIF, _u32(oif))


def dump_request(kind: int) -> bytes:
    if kind == RTM_GETLINK:
        return ifinfo()
    if kind == RTM_GETADDR:
        return _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
    return _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)


# ---- replies (pure) -----------------------------------------------------------------------------


def split_messages(data: bytes):
    """Yields (type, flags, seq, body) for each netlink message in a datagram."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            break
        yield kind, flags, seq, data[offset + _NLMSGHDR.size: offset + length]
        offset += _align(length)


def parse_attrs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    offset = 0
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        out[kind & 0x3FFF] = data[offset + _RTATTR.size: offset + length]
        offset += _align(length)
    return out


@dataclass(frozen=True, slots=True)
class Link:
    index: int
    name: str
    up: bool
    master: int = 0
    kind: str = ""
    mtu: int = 0


@dataclass(frozen=True, slots=True)
class Route:
    dst: ipaddress.IPv4Network
    oif: int = 0


def parse_link(body: bytes) -> Link:
    _, _, index, flags, _ = _IFINFOMSG.unpack_from(body)
    attrs = parse_attrs(body[_IFINFOMSG.size:])
    kind = ""
    if IFLA_LINKINFO in attrs:
        info = parse_attrs(attrs[IFLA_LINKINFO])
        kind = info.get(IFLA_INFO_KIND, b"").rstrip(b"\0").decode()
    return Link(index=index, name=attrs.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(),
                up=bool(flags & IFF_UP),
                master=struct.unpack("=I", attrs[IFLA_MASTER])[0] if IFLA_MASTER in attrs else 0,
                kind=kind, mtu=struct.unpack("=I", attrs[IFLA_MTU])[0] if IFLA_MTU in attrs else 0)


def parse_route(body: bytes) -> Route | None:
    family, dst_len, _, _, table, _, _, rtype, _ = _RTMSG.unpack_from(body)
    if family != socket.AF_INET or table != RT_TABLE_MAIN or rtype != RTN_UNICAST:
        return None
    attrs = parse_attrs(body[_RTMSG.size:])
    dst = attrs.get(RTA_DST, b"\0\0\0\0")
    oif = struct.unpack("=I", attrs[RTA_OIF])[0] if RTA_OIF in attrs else 0
    return Route(ipaddress.IPv4Network((ipaddress.IPv4Address(dst), dst_len)), oif)


def parse_addr(body: bytes) -> tuple[int, ipaddress.IPv4Interface] | None:
    family, prefix_len, _, _, index = _IFADDRMSG.unpack_from(body)
    if family != socket.AF_INET:
        return None
    attrs = parse_attrs(body[_IFADDRMSG.size:])
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    if raw is None:
        return None
    return index, ipaddress.IPv4Interface((ipaddress.IPv4Address(raw), prefix_len))


def encode_batch(requests, first_seq: int) -> tuple[bytes, list[int]]:
    """Several requests in one datagram, each asking for an ack: (bytes, their sequence numbers).
    `requests` are (type, flags, body); the kernel handles them in order, one after the other,
    and acks each (an error does not stop the ones after it)."""
    out, seqs = [], []
    for offset, (kind, flags, body) in enumerate(requests):
        seq = first_seq + offset
        msg = header(kind, flags | NLM_F_REQUEST | NLM_F_ACK, seq, body)
        out.append(msg + b"\0" * (_align(len(msg)) - len(msg)))
        seqs.append(seq)
    return b"".join(out), seqs


def collect_acks(data: bytes, pending: set[int], results: dict[int, int]) -> None:
    """Pure: record the errno (0: done) of each ack in `data` whose sequence is pending, and
    forget it from `pending`. Other messages (notifications, stale replies) are skipped."""
    for mtype, _, seq, payload in split_messages(data):
        if mtype == NLMSG_ERROR and seq in pending:
            results[seq] = -struct.unpack_from("=i", payload)[0]
            pending.discard(seq)


# ---- the socket ---------------------------------------------------------------------------------


class Netlink:
    """A NETLINK_ROUTE socket in the network namespace of the thread that opened it."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   socket.NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self._seq += 1
        self._sock.send(header(kind, flags | NLM_F_REQUEST, self._seq, body))
        return self._seq

    def request(self, kind: int, body: bytes, flags: int = 0) -> None:
        """Send one request and wait for its ack; a kernel error raises OSError(errno)."""
        seq = self._send(kind, flags | NLM_F_ACK, body)
        while True:
            for mtype, _, mseq, payload in split_messages(self._sock.recv(65536)):
                if mseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return

    def batch(self, requests) -> list[int]:
        """Send every (type, flags, body) request in one sendmsg and wait for all the acks:
        one round trip instead of len(requests). Returns each request's errno (0: done), in
        order; raising is the caller's choice, since a batch is not atomic."""
        if not requests:
            return []
        data, seqs = encode_batch(requests, self._seq + 1)
        self._seq = seqs[-1]
        self._sock.send(data)
        pending, results = set(seqs), {}
        while pending:
            collect_acks(self._sock.recv(65536), pending, results)
        return [results[seq] for seq in seqs]

    def get(self, kind: int, body: bytes) -> bytes:
        """One non-dump GET: the body of the answer, or OSError."""
        seq = self._send(kind, 0, body)
        while True:
            for mtype, _, mseq, payload in split_messages(self._sock.recv(65536)):
                if mseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    raise OSError(code or _errno.EIO, os.strerror(code or _errno.EIO))
                return payload

    def dump(self, kind: int) -> list[bytes]:
        seq = self._send(kind, NLM_F_DUMP, dump_request(kind))
        out: list[bytes] = []
        while True:
            for mtype, _, mseq, payload in split_messages(self._sock.recv(1 << 20)):
                if mseq != seq:
                    continue
                if mtype == NLMSG_DONE:
                    return out
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return out
                out.append(payload)

    # ---- the operations the wiring uses ---------------------------------------------------------

    def link(self, name: str) -> Link | None:
        try:
            return parse_link(self.get(RTM_GETLINK, link_by_name(name)))
        except OSError as exc:
            if exc.errno in (_errno.ENODEV, _errno.ENOENT):
                return None
            raise

    def links(self) -> list[Link]:
        return [parse_link(body) for body in self.dump(RTM_GETLINK)]

    def routes(self) -> list[Route]:
        return [r for r in (parse_route(body) for body in self.dump(RTM_GETROUTE)) if r is not None]

    def addresses(self) -> list[tuple[int, ipaddress.IPv4Interface]]:
        return [a for a in (parse_addr(body) for body in self.dump(RTM_GETADDR)) if a is not None]

    def delete_link(self, name: str) -> bool:
        """Idempotent: False if there was no such link."""
        try:
            self.request(RTM_DELLINK, link_by_name(name))
            return True
        except OSError as exc:
            if exc.errno in (_errno.ENODEV, _errno.ENOENT):
                return False
            raise

    def set_up(self, index: int) -> None:
        self.request(RTM_NEWLINK, set_up(index))

    def add_address(self, index: int, address: str, prefix_len: int) -> None:
        """Idempotent: an address already there is fine."""
        try:
            self.request(RTM_NEWADDR, new_addr(index, address, prefix_len), NLM_F_CREATE | NLM_F_EXCL)
        except OSError as exc:
            if exc.errno != _errno.EEXIST:
                raise

    def add_default_route(self, gateway: str, oif: int) -> None:
        self.request(RTM_NEWROUTE, default_route(gateway, oif), NLM_F_CREATE | NLM_F_REPLACE)

    def add_bridge(self, name: str, mtu: int, mac: str) -> int:
        """Creates the bridge (or finds it) and returns its index."""
        try:
            self.request(RTM_NEWLINK, new_bridge(name, mtu, mac), NLM_F_CREATE | NLM_F_EXCL)
        except OSError as exc:
            if exc.errno != _errno.EEXIST:
                raise
        found = self.link(name)
        if found is None:
            raise OSError(_errno.ENODEV, f"bridge {name} vanished")
        if not found.up:
            self.set_up(found.index)
        return found.index

    def add_veth(self, name: str, mtu: int, master: int, peer_name: str, peer_netns_fd: int,
                 peer_mac: str) -> None:
        self.request(RTM_NEWLINK, new_veth(name, mtu, master, peer_name, peer_netns_fd, peer_mac),
                     NLM_F_CREATE | NLM_F_EXCL)
