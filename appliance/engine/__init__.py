"""The one engine layer: container, image and volume semantics over the store and the runtime.

HTTP routes, the hijack path and (later) the cluster forwarder all call these services; none of
them touch LMDB or crun directly. Nothing here imports quart, hypercorn or api/.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .containers import ContainerService
from .events import EventLog
from .execs import ExecService
from .images import ImageService
from .system import HostFacts
from .volumes import VolumeService

if TYPE_CHECKING:
    from ..cluster.agent import ClusterAgent
    from .filesystem import FilesystemService
    from .networks import NetworkService


@dataclass(frozen=True)
class Engine:
    facts: HostFacts
    events: EventLog
    images: ImageService
    volumes: VolumeService
    containers: ContainerService
    execs: ExecService
    #: The gossip agent (membership, node events); None when the node runs without one.
    cluster: ClusterAgent | None = None
    #: Container networking (bridges, IPAM, DNS, published ports); None: loopback-only containers.
    networks: NetworkService | None = None
    #: docker cp / export / diff / commit.
    filesystem: FilesystemService | None = None
