"""Composition root: the only place long-lived tasks start.

Task tree of `appliance serve`:
    serve (root nursery)
    ├── signal watcher          SIGTERM/SIGINT: leave the cluster gracefully, then cancel the root
    │                           scope (containers keep running); a second signal skips the leave
    ├── NetworkService.run      bridges, iptables, one DNS responder per network, port proxies
    ├── ContainerService.run    supervisor nursery: one task per running container (waits on
    │                           conmon, runs its health checks, waits out restart back-off)
    ├── ExecService.run         detached execs (`docker exec -d`)
    ├── LogRotator.run          --log-opt max-size/max-file: rotates running containers' logs
    ├── ClusterAgent.run        gossip (SWIM on memberlist's wire), join retries, node events, tags
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
from dataclasses import replace
from pathlib import Path

import trio

from .api.app import create_app
from .api.front import Front
from .api.hijack import make_hijack_handler
from .cluster.agent import AgentConfig, ClusterAgent, read_host_load
from .config import Config, parse_listen_address
from .engine import Engine
from .engine.containers import ContainerService, NodeLimits
from .engine.events import EventLog
from .engine.execs import ExecService
from .engine.filesystem import FilesystemService
from .engine.filesystem.idmap import IdShift
from .engine.images import ImageService
from .engine.logrotate import LogRotator
from .engine.networks import NetworkOptions, NetworkService
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
        kind, where, port = parse_listen_address(host)
        if kind == "unix":
            path = where
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
        else:
            tcp = await trio.open_tcp_listeners(port, host=where)
            for listener in tcp:
                name = listener.socket.getsockname()
                urls.append(f"tcp://{name[0]}:{name[1]}")
            listeners.extend(tcp)
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
    networks = None
    if config.bridge != "none":
        networks = NetworkService(store, events, node_name, config.tenant, data_root=data_root, owner_uid=owner,
                                  options=NetworkOptions(default_bridge=config.bridge))
    containers = ContainerService(store=store, events=events, images=images, volumes=volumes, runtime=runtime,
                                  node=node_name, tenant=config.tenant, limits=limits, networks=networks)
    images.set_container_index(containers)
    filesystem = FilesystemService(containers, images, events,
                                   id_shift=IdShift(idmap.host_base, idmap.size) if idmap else IdShift(0),
                                   networks=networks)
    return Engine(facts=facts, events=events, images=images, volumes=volumes, containers=containers,
                  execs=ExecService(containers, runtime), networks=networks, filesystem=filesystem)


def build_cluster_agent(config: Config, engine: Engine, api_urls: list[str]) -> ClusterAgent:
    host, port = config.gossip_bind
    adv_host, adv_port = config.advertise or (None, None)
    agent_config = AgentConfig(name=engine.facts.node_name, bind_host=host, bind_port=port,
                               port_fallback=config.gossip_port_fallback, advertise_host=adv_host,
                               advertise_port=adv_port, seeds=config.join, api_urls=tuple(api_urls))
    return ClusterAgent(
        agent_config,
        publish=lambda action, actor, attrs: engine.events.publish("node", action, actor, attrs),
        sample=lambda: read_host_load(engine.facts.ncpu, engine.containers.counts()["running"]),
    )


async def _watch_signals(cancel_scope: trio.CancelScope, agent: ClusterAgent | None = None) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s: stopping the node; containers keep running", signal.Signals(signum).name)
            break
        if agent is not None:
            # Leave first (/_health says 503 meanwhile), so the other members and Serf say `left`
            # rather than `failed`.  Bounded by the agent's leave_timeout; a second signal cuts it short.
            async with trio.open_nursery() as leaving:
                leaving.start_soon(_cancel_on_signal, signals, leaving.cancel_scope)
                await agent.leave()
                leaving.cancel_scope.cancel()
        cancel_scope.cancel()


async def _cancel_on_signal(signals, scope: trio.CancelScope) -> None:
    async for signum in signals:
        log.info("received %s again: stopping without finishing the leave", signal.Signals(signum).name)
        scope.cancel()
        return


async def serve(config: Config) -> None:
    runtime = Runtime(config.data_root, cgroup_parent=cgroup_parent(config))
    engine = build_engine(config, runtime)
    listeners, urls = await open_listeners(config.hosts)
    agent = build_cluster_agent(config, engine, urls)
    engine = replace(engine, cluster=agent)
    front = Front(create_app(engine), make_hijack_handler(engine))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, nursery.cancel_scope, agent)
        if engine.networks is not None:  # bridges, rules and DNS before any container starts
            await nursery.start(engine.networks.run)
        await nursery.start(engine.containers.run)
        await nursery.start(engine.execs.run)
        await nursery.start(LogRotator(engine.containers, engine.events).run)
        await nursery.start(agent.run)
        await nursery.start(front.run, listeners)
        log.info("node %s ready on %s", engine.facts.node_name, ", ".join(urls))
        print(f"export DOCKER_HOST={urls[0]}", flush=True)
        sys.stdout.flush()
