"""network/rules.py (iptables-restore text), network/rtnl.py codec, network/ports.py parsing."""

import socket
import struct

import pytest

from appliance.errors import InvalidParameter, SystemError_
from appliance.network import ports, rtnl, rules
from appliance.network.rules import BridgeWall, PortRule


def test_render_walls_and_ports():
    text = rules.render(
        [BridgeWall("br-a", "10.1.0.0/24", "10.1.0.1"),
         BridgeWall("br-i", "10.2.0.0/24", "10.2.0.1", internal=True, masquerade=True),
         BridgeWall("appl0", "10.213.0.0/16", "10.213.0.1", masquerade=True)],
        [PortRule("tcp", "", 8080, "10.1.0.2", 80, "br-a"),
         PortRule("udp", "192.0.2.1", 53, "10.1.0.2", 5353, "br-a")])
    lines = text.splitlines()
    assert lines[0] == "*filter" and lines.count("COMMIT") == 2
    for chain in ("APPL-FORWARD", "APPL-ISOLATE", "APPL-INPUT", "APPL-DNAT", "APPL-POSTROUTING"):
        assert f":{chain} - [0:0]" in lines and f"-F {chain}" in lines
    assert "-A APPL-FORWARD -i br-a -j APPL-ISOLATE" in lines
    assert "-A APPL-FORWARD -i br-i ! -o br-i -j DROP" in lines and "-A APPL-FORWARD -o br-i ! -i br-i -j DROP" in lines
    # an internal network's wall comes before published ports' DNAT accept (its gateway is local)
    assert lines.index("-A APPL-FORWARD -i br-i ! -o br-i -j DROP") < \
        lines.index("-A APPL-FORWARD -o br-a -m conntrack --ctstate DNAT -j ACCEPT")
    assert "-A APPL-INPUT -i br-i -j DROP" in lines
    for proto in ("udp", "tcp"):  # DNS, over UDP and TCP, is the one way to the node
        assert lines.index(f"-A APPL-INPUT -i br-i -d 10.2.0.1/32 -p {proto} --dport 53 -j ACCEPT") < \
            lines.index("-A APPL-INPUT -i br-i -j DROP")
    assert "-A APPL-ISOLATE -o br-i -j DROP" in lines
    # replies and published ports pass before any wall
    assert lines.index("-A APPL-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT") < \
        lines.index("-A APPL-FORWARD -i br-a -j APPL-ISOLATE")
    assert "-A APPL-DNAT ! -i br-a -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.2:80" in lines
    assert ("-A APPL-DNAT -d 192.0.2.1/32 ! -i br-a -p udp -m udp --dport 53 "
            "-j DNAT --to-destination 10.1.0.2:5353") in lines
    assert "-A APPL-POSTROUTING -s 10.213.0.0/16 ! -o appl0 -j MASQUERADE" in lines
    assert not any("10.2.0.0/24" in line and "MASQUERADE" in line for line in lines)  # internal: no way out


def test_missing_hooks_reads_iptables_save():
    saved = "*filter\n:INPUT ACCEPT [0:0]\n-A FORWARD -j APPL-FORWARD\nCOMMIT\n*nat\n" \
            "-A PREROUTING -m addrtype --dst-type LOCAL -j APPL-DNAT\nCOMMIT\n"
    missing = rules.missing_hooks(saved)
    assert ("filter", "FORWARD", "-j APPL-FORWARD") not in missing
    assert ("filter", "INPUT", "-j APPL-INPUT") in missing and len(missing) == 3
    text = rules.render_hooks(missing)
    assert "-I INPUT 1 -j APPL-INPUT" in text and "-I FORWARD" not in text
    assert rules.render_hooks([]) == ""


# ---- rtnetlink codec ----------------------------------------------------------------------------


def test_attr_padding_and_parse():
    blob = rtnl.attr(3, b"eth0\0") + rtnl.attr(4, struct.pack("=I", 1500))
    assert len(blob) % 4 == 0
    assert rtnl.parse_attrs(blob) == {3: b"eth0\0", 4: struct.pack("=I", 1500)}


def test_veth_request_nests_the_peer():
    body = rtnl.new_veth("vaabc", 1450, 7, "eth0", 42, "02:42:0a:00:00:02")
    attrs = rtnl.parse_attrs(body[16:])
    assert attrs[rtnl.IFLA_IFNAME] == b"vaabc\0"
    assert struct.unpack("=I", attrs[rtnl.IFLA_MASTER])[0] == 7
    info = rtnl.parse_attrs(attrs[rtnl.IFLA_LINKINFO])
    assert info[rtnl.IFLA_INFO_KIND] == b"veth\0"
    peer = rtnl.parse_attrs(info[rtnl.IFLA_INFO_DATA])[rtnl.VETH_INFO_PEER]
    peer_attrs = rtnl.parse_attrs(peer[16:])
    assert peer_attrs[rtnl.IFLA_IFNAME] == b"eth0\0"
    assert struct.unpack("=I", peer_attrs[rtnl.IFLA_NET_NS_FD])[0] == 42
    assert peer_attrs[rtnl.IFLA_ADDRESS] == bytes.fromhex("02420a000002")
    _, _, _, flags, change = struct.unpack_from("=BxHiII", body)
    assert flags & rtnl.IFF_UP and change & rtnl.IFF_UP  # host end up; the peer is set up inside


def test_address_and_route_messages():
    body = rtnl.new_addr(3, "10.1.0.2", 24)
    family, plen, _, _, index = struct.unpack_from("=BBBBI", body)
    assert (family, plen, index) == (socket.AF_INET, 24, 3)
    attrs = rtnl.parse_attrs(body[8:])
    assert attrs[rtnl.IFA_LOCAL] == bytes([10, 1, 0, 2]) and attrs[rtnl.IFA_BROADCAST] == bytes([10, 1, 0, 255])
    route = rtnl.default_route("10.1.0.1", 3)
    assert rtnl.parse_route(route) is not None and rtnl.parse_route(route).dst.prefixlen == 0


def test_split_messages_and_parse_link():
    link_body = rtnl.ifinfo(5, up=True) + rtnl.attr(rtnl.IFLA_IFNAME, b"br-x\0") + \
        rtnl.attr(rtnl.IFLA_LINKINFO, rtnl.attr(rtnl.IFLA_INFO_KIND, b"bridge\0"))
    data = rtnl.header(rtnl.RTM_NEWLINK, 0, 9, link_body) + rtnl.header(rtnl.NLMSG_DONE, 0, 9, b"\0" * 4)
    msgs = list(rtnl.split_messages(data))
    assert [m[0] for m in msgs] == [rtnl.RTM_NEWLINK, rtnl.NLMSG_DONE]
    link = rtnl.parse_link(msgs[0][3])
    assert (link.index, link.name, link.kind, link.up) == (5, "br-x", "bridge", True)


# ---- published ports ----------------------------------------------------------------------------


def test_requests_from_bindings_and_publish_all():
    reqs = ports.requests_from({"80/tcp": [("", "8080")], "53/udp": [("192.0.2.1", "5353")], "443": [("", "")]},
                               exposed=["80/tcp", "9000/tcp"], publish_all=True)
    assert ports.PortRequest(80, "tcp", "", 8080) in reqs
    assert ports.PortRequest(53, "udp", "192.0.2.1", 5353) in reqs
    assert ports.PortRequest(443, "tcp", "", 0) in reqs
    assert ports.PortRequest(9000, "tcp", "", 0) in reqs
    assert sum(r.container_port == 80 for r in reqs) == 1


@pytest.mark.parametrize("key", ["80/sctp", "x/tcp", "0/tcp", "70000"])
def test_bad_port_keys(key):
    with pytest.raises(InvalidParameter):
        ports.requests_from({key: [("", "1")]})


def test_reserve_conflicts_with_our_own_ports_in_dockers_words():
    held = [ports.Published("tcp", 80, "0.0.0.0", 18080)]
    with pytest.raises(SystemError_) as exc:  # dockerd: 500
        ports.reserve([ports.PortRequest(80, "tcp", "127.0.0.1", 18080)], held, "web (abc)", "10.0.0.2")
    assert exc.value.message == ("driver failed programming external connectivity on endpoint web (abc): "
                                 "Bind for 127.0.0.1:18080 failed: port is already allocated")


def test_reserve_is_all_or_nothing():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    try:
        with pytest.raises(SystemError_, match="address already in use"):
            ports.reserve([ports.PortRequest(80, "tcp", "127.0.0.1", 0),
                           ports.PortRequest(81, "tcp", "127.0.0.1", taken)], [], "web (abc)", "10.0.0.2")
        got = ports.reserve([ports.PortRequest(80, "tcp", "127.0.0.1", 0),
                             ports.PortRequest(53, "udp", "127.0.0.1", 0)], [], "web (abc)", "10.0.0.2")
        try:
            assert [p.proto for p in got.published] == ["tcp", "udp"]
            assert all(p.host_port > 0 and p.host_ip == "127.0.0.1" for p in got.published)
        finally:
            got.close()
    finally:
        blocker.close()


def test_incremental_port_rules_match_the_full_render():
    port = PortRule("tcp", "", 8080, "10.1.0.2", 80, "br-a")
    full = rules.render([BridgeWall("br-a", "10.1.0.0/24", "10.1.0.1")], [port]).splitlines()
    add = rules.render_ports("A", [port]).splitlines()
    assert add[0] == "*nat" and add[-1] == "COMMIT" and add[1] in full
    assert rules.render_ports("D", [port]).splitlines()[1] == add[1].replace("-A ", "-D ", 1)
    assert rules.render_ports("A", []) == ""
