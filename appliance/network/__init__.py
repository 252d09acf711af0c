"""Container networking building blocks (no engine, store or API knowledge).

    ipam.py        address pools, validation, allocation, per-node slices          pure
    hostsfiles.py  /etc/hosts, /etc/hostname, /etc/resolv.conf contents            pure
    dnscodec.py    DNS messages                                                     pure
    dns.py         name registry + decide() (pure), DnsServer (trio)
    rules.py       iptables-restore text (pure), Firewall (runs iptables)
    rtnl.py        rtnetlink codec (pure) and a blocking netlink socket
    netns.py       pinned network namespaces, per-thread setns
    wiring.py      bridges, veths, addresses, routes: what one container needs
    ports.py       published-port reservation and the userland proxy (trio)

engine/networks.py puts them together; docs/networking.md describes the design.
"""
