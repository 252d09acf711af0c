"""network/hostsfiles.py: the three files, in dockerd's formats."""

from appliance.network import hostsfiles


def test_hosts_defaults_then_extra_then_own_addresses():
    text = hostsfiles.hosts("abc123", "", ["10.1.0.2", "10.2.0.5"], [("db.local", "192.0.2.9")])
    assert text == ("127.0.0.1\tlocalhost\n"
                    "::1\tlocalhost ip6-localhost ip6-loopback\n"
                    "fe00::\tip6-localnet\n"
                    "ff00::\tip6-mcastprefix\n"
                    "ff02::1\tip6-allnodes\n"
                    "ff02::2\tip6-allrouters\n"
                    "192.0.2.9\tdb.local\n"
                    "10.1.0.2\tabc123\n"
                    "10.2.0.5\tabc123\n")


def test_hosts_with_domain_and_without_network():
    assert hostsfiles.hosts("web", "example.org", ["10.0.0.2"]).endswith("10.0.0.2\tweb.example.org web\n")
    assert hostsfiles.hosts("solo").splitlines()[-1] == "ff02::2\tip6-allrouters"


def test_hostname():
    assert hostsfiles.hostname("abc") == "abc\n"


def test_parse_resolv_conf():
    host = hostsfiles.parse_resolv_conf(
        "# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.1 ; trailing\ndomain a.example\n"
        "search b.example c.example\noptions edns0 ndots:2 trust-ad\n")
    assert host.nameservers == ("127.0.0.53", "192.0.2.1")
    assert host.search == ("b.example", "c.example")
    assert host.options == ("edns0", "ndots:2", "trust-ad")


def test_resolv_conf_with_the_embedded_resolver():
    host = hostsfiles.HostResolvConf(("127.0.0.53",), ("corp.example",), ("edns0", "ndots:3"))
    text = hostsfiles.resolv_conf(host, resolver="10.216.0.1")
    lines = text.splitlines()
    assert "nameserver 10.216.0.1" in lines
    assert not any(line == "nameserver 127.0.0.53" for line in lines)
    assert "search corp.example" in lines
    assert "options ndots:0 edns0" in lines  # ndots:0 as dockerd's internal resolver sets it
    assert "# ExtServers: [host(127.0.0.53)]" in lines


def test_resolv_conf_without_resolver_drops_loopback_servers():
    host = hostsfiles.HostResolvConf(("127.0.0.53", "192.0.2.53"))
    lines = hostsfiles.resolv_conf(host, resolver=None).splitlines()
    assert [line for line in lines if line.startswith("nameserver")] == ["nameserver 192.0.2.53"]


def test_resolv_conf_overrides():
    host = hostsfiles.HostResolvConf(("192.0.2.53",), ("a",), ("edns0",))
    text = hostsfiles.resolv_conf(host, resolver=None, dns=["198.51.100.1"], dns_search=["x.y"],
                                  dns_options=["timeout:1"])
    assert "nameserver 198.51.100.1" in text and "search x.y" in text and "options timeout:1" in text
    assert "192.0.2.53" not in text
