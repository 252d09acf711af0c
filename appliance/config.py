"""The node's configuration: parsed once in __main__, passed down, never read from os.environ elsewhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATA_ROOT = Path("/var/lib/appliance")
DEFAULT_HOST = "unix:///run/appliance.sock"


@dataclass(frozen=True)
class Config:
    data_root: Path = DEFAULT_DATA_ROOT
    hosts: tuple[str, ...] = (DEFAULT_HOST,)
    node_name: str = ""
    tenant: str = "default"
    log_level: str = "info"
    userns: bool = True
    extra: dict = field(default_factory=dict)
