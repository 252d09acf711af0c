"""Command line, in dockerd's words: `appliance serve --data-root DIR -H unix:///PATH ...`,
plus `appliance members [-H ...] [--json]`, a client of a running node."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from pathlib import Path

from .config import parse_listen_address, DEFAULT_DATA_ROOT, DEFAULT_GOSSIP_BIND, DEFAULT_HOST, Config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description="A container cloud node.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run this host's node (Docker Engine API, runtime, store)")
    serve.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT,
                       help=f"root of persistent state (default {DEFAULT_DATA_ROOT})")
    serve.add_argument("-H", "--host", action="append", dest="hosts",
                       help=f"daemon socket to listen on: unix:///PATH or tcp://ADDR:PORT (default {DEFAULT_HOST})")
    serve.add_argument("--node-name", default="", help="this node's name in the cluster (default: hostname)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--bridge", default="appl0", metavar="NAME|none",
                       help="bridge of the default network, in the node's network namespace; "
                            "'none': containers get loopback only (as dockerd's --bridge=none)")
    serve.add_argument("--no-userns", dest="userns", action="store_false",
                       help="run container root as host root (not recommended)")
    serve.add_argument("--join", action="append", default=[], metavar="HOST:PORT[,HOST:PORT...]",
                       help="members to join (repeatable); retried with back-off until one answers")
    serve.add_argument("--gossip-bind", metavar="ADDR[:PORT]",
                       help=f"gossip UDP+TCP address (default {DEFAULT_GOSSIP_BIND[0]}:{DEFAULT_GOSSIP_BIND[1]}; "
                            "if that port is taken, a free one); port 0 picks a free port")
    serve.add_argument("--advertise", metavar="ADDR[:PORT]",
                       help="gossip address the other members use for this node "
                            "(default: the bind address, or the first private IPv4 for a wildcard bind)")
    members = sub.add_parser("members", help="list the cluster's members as a running node sees them")
    members.add_argument("-H", "--host", default=DEFAULT_HOST,
                         help=f"the node's API socket: unix:///PATH or tcp://ADDR:PORT (default {DEFAULT_HOST})")
    members.add_argument("--json", action="store_true", help="print the node's JSON as it is")
    release = sub.add_parser("release-namespace",
                             help="after the node and its containers are gone: drop its pinned mount namespace")
    release.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    return parser


def _gossip_options(args: argparse.Namespace) -> dict:
    """--join / --gossip-bind / --advertise -> Config fields; ValueError with a CLI message."""
    from .cluster.addresses import parse_hostport

    default_port = DEFAULT_GOSSIP_BIND[1]
    out: dict = {}
    if args.gossip_bind:
        host, port = parse_hostport(args.gossip_bind, default_port)
        ipaddress.ip_address(host)  # an address, not a name: raises ValueError
        out.update(gossip_bind=(host, port), gossip_port_fallback=False)
    if args.advertise:
        host, port = parse_hostport(args.advertise, 0)
        ipaddress.ip_address(host)
        if ipaddress.ip_address(host).is_unspecified:
            raise ValueError("--advertise needs a routable address, not a wildcard")
        out["advertise"] = (host, port or None)
    seeds = tuple(s.strip() for arg in args.join for s in arg.split(",") if s.strip())
    for seed in seeds:
        parse_hostport(seed, default_port)
    out["join"] = seeds
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "release-namespace":
        from .runtime.mountns import release_pinned_namespace

        release_pinned_namespace(args.data_root.resolve())
        return 0
    if args.command == "members":
        from .cluster.members_cli import main as members_main

        return members_main(args.host, as_json=args.json)
    try:
        gossip = _gossip_options(args)
        hosts = tuple(args.hosts or [DEFAULT_HOST])
        for host in hosts:  # refused before anything is set up on the machine
            parse_listen_address(host)
    except ValueError as exc:
        _parser().error(str(exc))
    config = Config(data_root=args.data_root.resolve(), hosts=hosts, node_name=args.node_name,
                    log_level=args.log_level, userns=args.userns, bridge=args.bridge, **gossip)
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config.data_root.mkdir(parents=True, exist_ok=True)
    # Before trio starts any thread: setns() into a mount namespace needs a single-threaded process.
    from .runtime.mountns import enter_private_mount_namespace

    enter_private_mount_namespace(config.data_root)
    import trio

    from .serve import serve

    trio.run(serve, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
