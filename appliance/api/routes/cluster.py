"""/appliance/members, /_health, and the cluster part of /info.

The blueprint takes only the gossip agent (anything with ``snapshot()`` returning a
:class:`~appliance.cluster.members.ClusterSnapshot`); None means the node runs without gossip.

Routes (not Docker's: no API version applies, a /vX.Y prefix is accepted as everywhere):

    GET /appliance/members   200 the members as this node sees them; 503 without gossip
    GET|HEAD /_health        200 when the node serves and its gossip runs, else 503 (JSON body)

The API listener starts after the store, runtime supervisor and gossip agent are up
(serve.py), so a node that answers has its services running; what can still go wrong is
gossip: not started, leaving (on SIGTERM the node drains: 503 before it leaves) or stopped.
"""

from __future__ import annotations

import json

from quart import Blueprint, Response, request

from ...errors import Unavailable

__all__ = ["blueprint", "members_json", "info_section", "info_labels"]

#: `docker info` lists members one per line up to this cluster size (`appliance members` has them all).
_INFO_MEMBER_LINES = 32


def blueprint(cluster) -> Blueprint:
    bp = Blueprint("cluster", __name__)

    @bp.get("/appliance/members")
    async def members():
        if cluster is None:
            raise Unavailable("this node runs without gossip")
        return _json(members_json(cluster.snapshot()))

    @bp.route("/_health", methods=["GET", "HEAD"])
    async def health():
        if cluster is None:
            body, ok = {"Status": "ok", "Gossip": "disabled"}, True
        else:
            snap = cluster.snapshot()
            ok = snap.gossip_up
            body = {"Status": "ok" if ok else "unavailable", "Node": snap.name, "Gossip": snap.state,
                    "Joined": snap.joined, "Members": snap.counts()}
        resp = _json(body, 200 if ok else 503)
        resp.headers["Cache-Control"] = "no-cache, no-store"
        if request.method == "HEAD":
            resp.set_data(b"")
        return resp

    return bp


def members_json(snap) -> dict:
    return {
        "Node": snap.name,
        "State": snap.state,
        "GossipAddr": _hostport(*snap.addr) if snap.addr else "",
        "Joined": snap.joined,
        "Seeds": list(snap.seeds),
        "Counts": snap.counts(),
        "Members": [
            {"Name": m.name, "Addr": _hostport(m.host, m.port), "Status": m.status,
             "Incarnation": m.incarnation, "Tags": dict(m.tags), "LastChange": m.last_change,
             "Local": m.local}
            for m in snap.members
        ],
    }


def info_section(cluster) -> dict | None:
    """The ``Cluster`` object of /info (docker-py and curl see it; the CLI ignores it)."""
    if cluster is None:
        return None
    snap = cluster.snapshot()
    return {"Node": snap.name, "State": snap.state, "GossipAddr": _hostport(*snap.addr) if snap.addr else "",
            "Joined": snap.joined, "Members": snap.counts(),
            "Nodes": [{"Name": m.name, "Addr": _hostport(m.host, m.port), "Status": m.status,
                       "Role": m.tags.get("role", "")} for m in snap.members]}


def info_labels(cluster) -> list[str]:
    """Lines for /info ``Labels``: what `docker info` prints of the cluster."""
    if cluster is None:
        return []
    snap = cluster.snapshot()
    counts = snap.counts()
    out = [f"appliance.cluster.gossip={_hostport(*snap.addr) if snap.addr else '-'} ({snap.state})",
           "appliance.cluster.members=" + ", ".join(f"{counts[k]} {k}" for k in counts)]
    if len(snap.members) <= _INFO_MEMBER_LINES:
        out += [f"appliance.cluster.member={m.name} {_hostport(m.host, m.port)} {m.status}" for m in snap.members]
    return out


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _json(value, status: int = 200) -> Response:
    return Response(json.dumps(value), status=status, content_type="application/json")
