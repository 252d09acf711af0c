"""network/ and engine/networks.py keep to their seams (same ast reading as test_layering.py)."""

from pathlib import Path

from tests.unit.test_layering import PKG, _files, _offenders

PURE = [PKG / "network" / n for n in ("ipam.py", "hostsfiles.py", "dnscodec.py", "rules.py", "rtnl.py")]


def test_pure_network_cores_do_no_async_io():
    # rules.py holds the Firewall shell too, so it may use trio; the others are plain functions.
    assert _offenders([p for p in PURE if p.name != "rules.py"], ("trio", "lmdb", "subprocess")) == []
    assert _offenders(PURE, ("lmdb", "appliance.store", "appliance.engine")) == []


def test_network_package_never_reaches_up():
    assert _offenders(_files("network"), ("appliance.engine", "appliance.api", "appliance.serve",
                                          "appliance.store", "quart", "hypercorn", "lmdb")) == []


def test_engine_networks_stays_below_the_api():
    assert _offenders([PKG / "engine" / "networks.py"], ("appliance.api", "quart", "hypercorn")) == []


def test_only_api_knows_the_json_shapes():
    text = (PKG / "engine" / "networks.py").read_text()
    assert '"IPAddress"' not in text and '"EndpointID"' not in text
    assert Path(PKG / "api" / "network_json.py").exists()
