"""Command line, in dockerd's words: `appliance serve --data-root DIR -H unix:///PATH ...`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .config import DEFAULT_DATA_ROOT, DEFAULT_HOST, Config


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
    serve.add_argument("--no-userns", dest="userns", action="store_false",
                       help="run container root as host root (not recommended)")
    release = sub.add_parser("release-namespace",
                             help="after the node and its containers are gone: drop its pinned mount namespace")
    release.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "release-namespace":
        from .runtime.mountns import release_pinned_namespace

        release_pinned_namespace(args.data_root.resolve())
        return 0
    config = Config(data_root=args.data_root.resolve(), hosts=tuple(args.hosts or [DEFAULT_HOST]),
                    node_name=args.node_name, log_level=args.log_level, userns=args.userns)
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
