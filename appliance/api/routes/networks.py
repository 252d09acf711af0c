"""/networks/*: parse, call engine.networks, serialise (network_json.py holds the shapes).

    GET    /networks                    list (filters: driver, id, label, name, scope, type, dangling)
    GET    /networks/{id}               inspect
    POST   /networks/create             201 {"Id", "Warning"}
    DELETE /networks/{id}               204
    POST   /networks/prune              {"NetworksDeleted"}
    POST   /networks/{id}/connect       200
    POST   /networks/{id}/disconnect    200
"""

from __future__ import annotations

import json

from quart import Blueprint, Response, request

from ...errors import InvalidParameter, NotImplementedYet, Unavailable
from ..jsonfields import get_bool, get_dict, get_str, get_str_map, parse_filters
from ..network_json import network_json, parse_endpoint
from .params import body_json

_WHERE = "CreateRequest"


def blueprint(engine) -> Blueprint:
    bp = Blueprint("networks", __name__)

    def service():
        networks = getattr(engine, "networks", None)
        if networks is None:
            raise Unavailable("networking is not enabled on this node")
        return networks

    @bp.get("/networks")
    async def list_():
        filters = parse_filters(request.args.get("filters"))
        return _json([network_json(v, detailed=False) for v in service().list(filters)])

    @bp.get("/networks/<term>")
    async def inspect(term):
        return _json(network_json(service().inspect(term)))

    @bp.post("/networks/create")
    async def create():
        body = await body_json(allow_empty=False)
        name = get_str(body, "Name", _WHERE)
        if not name:
            raise InvalidParameter("network name cannot be empty")
        if get_bool(body, "Ingress", _WHERE) or get_bool(body, "ConfigOnly", _WHERE) or body.get("ConfigFrom"):
            raise NotImplementedYet("ingress and config-only networks are not supported on this node")
        if body.get("EnableIPv4") is False:
            raise NotImplementedYet("IPv6-only networks are not supported on this node")
        ipam = get_dict(body, "IPAM", _WHERE)
        configs = ipam.get("Config") or []
        if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
            raise InvalidParameter("json: cannot unmarshal into Go struct field IPAM.Config of type []network.IPAMConfig")
        v4 = [c for c in configs if ":" not in get_str(c, "Subnet", "IPAMConfig")]
        first = v4[0] if v4 else (configs[0] if configs else {})
        if first.get("AuxiliaryAddresses"):
            raise NotImplementedYet("auxiliary addresses are not supported on this node")
        rec = await service().create(
            name, driver=get_str(body, "Driver", _WHERE), subnet=get_str(first, "Subnet", "IPAMConfig"),
            ip_range=get_str(first, "IPRange", "IPAMConfig"), gateway=get_str(first, "Gateway", "IPAMConfig"),
            internal=get_bool(body, "Internal", _WHERE), attachable=get_bool(body, "Attachable", _WHERE),
            labels=get_str_map(body, "Labels", _WHERE), options=get_str_map(body, "Options", _WHERE),
            enable_ipv6=get_bool(body, "EnableIPv6", _WHERE), ipam_driver=get_str(ipam, "Driver", "IPAM"),
            extra_subnets=max(0, len(configs) - 1))
        return _json({"Id": rec.id, "Warning": ""}, 201)

    @bp.delete("/networks/<term>")
    async def remove(term):
        await service().remove(term)
        return Response(b"", status=204)

    @bp.post("/networks/prune")
    async def prune():
        removed = await service().prune(parse_filters(request.args.get("filters")))
        return _json({"NetworksDeleted": removed})

    @bp.post("/networks/<term>/connect")
    async def connect(term):
        body = await body_json(allow_empty=False)
        container = get_str(body, "Container", "NetworkConnectRequest")
        if not container:
            raise InvalidParameter("no container specified")
        cfg = parse_endpoint(get_dict(body, "EndpointConfig", "NetworkConnectRequest"))
        rec = engine.containers.get(container)
        await service().connect(term, rec, cfg)
        return Response(b"", status=200)

    @bp.post("/networks/<term>/disconnect")
    async def disconnect(term):
        body = await body_json(allow_empty=False)
        container = get_str(body, "Container", "NetworkDisconnectRequest")
        if not container:
            raise InvalidParameter("no container specified")
        rec = engine.containers.get(container)
        await service().disconnect(term, rec, get_bool(body, "Force", "NetworkDisconnectRequest"))
        return Response(b"", status=200)

    return bp


def _json(value, status: int = 200) -> Response:
    return Response(json.dumps(value), status=status, content_type="application/json")
