"""Docker's network JSON <-> the engine's network types (the only place these shapes live).

network_json                  GET /networks, GET /networks/{id}
network_settings              a container's inspect NetworkSettings
ports_map / ps_ports          NetworkSettings.Ports and `ps`'s Ports column
parse_endpoints_config        POST /containers/create NetworkingConfig.EndpointsConfig, /connect
parse_port_bindings           POST /containers/create HostConfig.PortBindings
"""

from __future__ import annotations

from ..engine.networks import ContainerNetworks, EndpointConfig, NetworkView
from ..errors import InvalidParameter
from ..store.records import PortBindingSpec, PublishedPort
from .jsonfields import get_dict, get_str, get_str_list
from .timefmt import rfc3339


def network_json(view: NetworkView, detailed: bool = True) -> dict:
    net = view.record
    config = []
    if net.subnet:
        entry = {"Subnet": net.subnet}
        if net.ip_range:
            entry["IPRange"] = net.ip_range
        if net.gateway:
            entry["Gateway"] = net.gateway
        config.append(entry)
    containers = {}
    if detailed:
        for ep in view.endpoints:
            e = ep.record
            containers[e.container_id] = {"Name": ep.container_name, "EndpointID": e.endpoint_id,
                                          "MacAddress": e.mac, "IPv4Address": f"{e.ip}/{e.prefix_len}",
                                          "IPv6Address": ""}
    return {
        "Name": net.name, "Id": net.id, "Created": rfc3339(net.created), "Scope": "local",
        "Driver": net.driver, "EnableIPv4": net.driver == "bridge", "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None if net.builtin else {}, "Config": config},
        "Internal": net.internal, "Attachable": net.attachable, "Ingress": False,
        "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": containers,
        "Options": dict(net.options), "Labels": dict(net.labels),
    }


def _port_key(p: PublishedPort) -> str:
    return f"{p.container_port}/{p.proto}"


def ports_map(settings: ContainerNetworks, exposed: list[str] | None = None) -> dict:
    """NetworkSettings.Ports: every exposed or published port; null for an unpublished one."""
    out: dict[str, list | None] = {}
    for key in exposed or []:
        k = key if "/" in key else f"{key}/tcp"
        out.setdefault(k, None)
    for p in settings.ports:
        entry = out.get(_port_key(p)) or []
        entry.append({"HostIp": p.host_ip, "HostPort": str(p.host_port)})
        out[_port_key(p)] = entry
    return out


def ps_ports(settings: ContainerNetworks, exposed: list[str] | None = None) -> list[dict]:
    """`GET /containers/json` Ports: published ones with IP/PublicPort, exposed ones without."""
    out = [{"IP": p.host_ip, "PrivatePort": p.container_port, "PublicPort": p.host_port, "Type": p.proto}
           for p in settings.ports]
    published = {(p.container_port, p.proto) for p in settings.ports}
    for key in exposed or []:
        port, _, proto = key.partition("/")
        if port.isdigit() and (int(port), proto or "tcp") not in published:
            out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
    return out


def network_settings(settings: ContainerNetworks, exposed: list[str] | None = None) -> dict:
    """Docker 28's NetworkSettings. The top-level IPAddress/Gateway/MacAddress/EndpointID are, as
    in dockerd, those of the default `bridge` network only (empty on user networks)."""
    sb = settings.sandbox
    networks = {}
    top = {"EndpointID": "", "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
           "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": ""}
    for view in settings.endpoints:
        e, net = view.record, view.network
        ipam = {"IPv4Address": e.requested_ip} if e.requested_ip else None
        networks[net.name] = {
            "IPAMConfig": ipam, "Links": None, "Aliases": list(e.aliases) or None, "MacAddress": e.mac,
            "DriverOpts": None, "GwPriority": 0, "NetworkID": net.id, "EndpointID": e.endpoint_id,
            "Gateway": e.gateway, "IPAddress": e.ip, "IPPrefixLen": e.prefix_len, "IPv6Gateway": "",
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": list(e.dns_names) or None,
        }
        if net.builtin and net.name == "bridge" and e.ip:
            top = {**top, "EndpointID": e.endpoint_id, "Gateway": e.gateway, "IPAddress": e.ip,
                   "IPPrefixLen": e.prefix_len, "MacAddress": e.mac}
    if settings.network_mode == "none":
        networks["none"] = {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "",
                            "DriverOpts": None, "GwPriority": 0, "NetworkID": "", "EndpointID": "",
                            "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
                            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}
    return {
        "Bridge": "", "SandboxID": sb.sandbox_id if sb else "", "SandboxKey": sb.netns if sb else "",
        "Ports": ports_map(settings, exposed), "HairpinMode": False, "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
        **top, "Networks": networks,
    }


def parse_endpoint(raw: dict | None, where: str = "EndpointSettings") -> EndpointConfig:
    raw = raw or {}
    ipam = get_dict(raw, "IPAMConfig", where) if raw.get("IPAMConfig") is not None else {}
    if get_str(ipam, "IPv6Address", "EndpointIPAMConfig"):
        raise InvalidParameter("IPv6 addresses are not supported on this node")
    return EndpointConfig(aliases=tuple(get_str_list(raw, "Aliases", where) or ()),
                          ipv4_address=get_str(ipam, "IPv4Address", "EndpointIPAMConfig"))


def parse_endpoints_config(networking_config: dict | None) -> dict[str, EndpointConfig]:
    """NetworkingConfig -> {network name or id: EndpointConfig}."""
    if not networking_config:
        return {}
    if not isinstance(networking_config, dict):
        raise InvalidParameter("json: cannot unmarshal into Go struct field ContainerConfigWrapper."
                               "NetworkingConfig of type network.NetworkingConfig")
    endpoints = get_dict(networking_config, "EndpointsConfig", "NetworkingConfig")
    out = {}
    for name, cfg in endpoints.items():
        if cfg is not None and not isinstance(cfg, dict):
            raise InvalidParameter("json: cannot unmarshal into Go struct field NetworkingConfig."
                                   "EndpointsConfig of type network.EndpointSettings")
        out[name] = parse_endpoint(cfg)
    return out


def parse_port_bindings(host_config: dict) -> list[PortBindingSpec]:
    """HostConfig.PortBindings {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}."""
    raw = host_config.get("PortBindings") or {}
    if not isinstance(raw, dict):
        raise InvalidParameter("json: cannot unmarshal PortBindings into Go struct field "
                               "HostConfig.PortBindings of type nat.PortMap")
    out = []
    for port, targets in raw.items():
        for target in targets or [{}]:
            out.append(PortBindingSpec(port=port, host_ip=get_str(target or {}, "HostIp", "PortBinding"),
                                       host_port=get_str(target or {}, "HostPort", "PortBinding")))
    return out
