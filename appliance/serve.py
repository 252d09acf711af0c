"""Composition root: the only place long-lived tasks start.

Task tree of `appliance serve`:
    serve (root nursery)
    ├── signal watcher          SIGTERM/SIGINT cancel the root scope (containers keep running)
    ├── ContainerService.run    supervisor nursery: one task per running container (waits on conmon)
    ├── ExecService.run         detached execs (`docker exec -d`)
    ├── LogRotator.run          --log-opt max-size/max-file: rotates running containers' logs
    └── Front.run               listeners; per connection: hijack handler or hypercorn TCPServer
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import sys
import uuid
from pathlib import Path

import trio

from .api.app import create_app
from .api.front import Front
from .api.hijack import make_hijack_handler
from .config import Config
from .engine import Engine
from .engine.containers import ContainerService, NodeLimits
from .engine.events import EventLog
from .engine.execs import ExecService
from .engine.images import ImageService
from .engine.logrotate import LogRotator
from .engine.system import read_host_facts
from .engine.volumes import VolumeService
from .images.layers import LayerStore
from .runtime import spec as rspec
from .runtime.monitor import Runtime
from .store import open_store

log = logging.getLogger(__name__)

USERNS_BASE = 100000


def _node_id(data_root: Path) -> str:
    path = data_root / "node-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        node_id = uuid.uuid4().hex
        tmp = path.with_suffix(".tmp")
        tmp.write_text(node_id)
        os.replace(tmp, path)
        return node_id


async def open_listeners(hosts: tuple[str, ...]) -> tuple[list[trio.abc.Listener], list[str]]:
    listeners, urls = [], []
    for host in hosts:
        if host.startswith("unix://"):
            path = host[len("unix://"):]
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            await sock.bind(path)
            os.chmod(path, 0o660)
            sock.listen(128)
            listeners.append(trio.SocketListener(sock))
            urls.append(host)
        elif host.startswith("tcp://"):
            addr, _, port = host[len("tcp://"):].rpartition(":")
            tcp = await trio.open_tcp_listeners(int(port), host=addr or "127.0.0.1")
            for listener in tcp:
                name = listener.socket.getsockname()
                urls.append(f"tcp://{name[0]}:{name[1]}")
            listeners.extend(tcp)
        else:
            raise SystemExit(f"unsupported -H {host!r}: use unix:///PATH or tcp://ADDR:PORT")
    return listeners, urls


def cgroup_parent(config: Config) -> str:
    return f"/appliance/{config.node_name or socket.gethostname()}"


def build_engine(config: Config, runtime: Runtime) -> Engine:
    data_root = config.data_root
    store = open_store(data_root / "store")
    node_name = config.node_name or socket.gethostname()
    facts = read_host_facts(_node_id(data_root), node_name, str(data_root), runtime.runtime_path)
    events = EventLog()
    idmap = rspec.IdMap(host_base=USERNS_BASE) if config.userns else None
    owner = idmap.host_base if idmap else 0
    layers = LayerStore(data_root / "image", uid_shift=owner)
    images = ImageService(store, events, layers, node_name, config.tenant, data_root / "image" / "spool")
    volumes = VolumeService(store, events, data_root / "volumes", node_name, config.tenant, owner)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = NodeLimits(ncpu=facts.ncpu, nofile=(hard, hard), idmap=idmap,
                        cgroup_parent=cgroup_parent(config))
    containers = ContainerService(store=store, events=events, images=images, volumes=volumes, runtime=runtime,
                                  node=node_name, tenant=config.tenant, limits=limits)
    images.set_container_index(containers)
    return Engine(facts=facts, events=events, images=images, volumes=volumes, containers=containers,
                  execs=ExecService(containers, runtime))


async def _watch_signals(cancel_scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s: stopping the node; containers keep running", signal.Signals(signum).name)
            cancel_scope.cancel()
            return


async def serve(config: Config) -> None:
    runtime = Runtime(config.data_root, cgroup_parent=cgroup_parent(config))
    engine = build_engine(config, runtime)
    listeners, urls = await open_listeners(config.hosts)
    front = Front(create_app(engine), make_hijack_handler(engine))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, nursery.cancel_scope)
        await nursery.start(engine.containers.run)
        await nursery.start(LogRotator(engine.containers, engine.events).run)
        await nursery.start(engine.execs.run)
        await nursery.start(front.run, listeners)
        log.info("node %s ready on %s", engine.facts.node_name, ", ".join(urls))
        print(f"export DOCKER_HOST={urls[0]}", flush=True)
        sys.stdout.flush()
