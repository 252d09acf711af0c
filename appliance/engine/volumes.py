"""Local volumes: a directory per volume under the node's data root, owned by container root."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ..errors import Conflict, NotFound
from ..store import Store
from ..store.records import VolumeRecord
from .events import EventLog
from .naming import check_volume_name, new_id


class VolumeService:
    def __init__(self, store: Store, events: EventLog, root: Path, node: str, tenant: str, owner_uid: int):
        self._store, self._events, self._root = store, events, root
        self._node, self._tenant, self._owner = node, tenant, owner_uid
        root.mkdir(parents=True, exist_ok=True)

    def create(self, name: str | None, labels: dict[str, str] | None = None,
               options: dict[str, str] | None = None, anonymous: bool = False) -> VolumeRecord:
        """Idempotent for an existing name, as dockerd's local driver is."""
        name = check_volume_name(name) if name else new_id()
        with self._store.read() as txn:
            existing = txn.volumes.get(name)
        if existing:
            return existing
        data = self._root / name / "_data"
        data.mkdir(parents=True, exist_ok=True)
        # Container root is the user-namespace base uid: it must own a fresh volume to write it.
        os.chown(data, self._owner, self._owner)
        rec = VolumeRecord(name=name, node=self._node, tenant=self._tenant, created=time.time_ns(),
                           mountpoint=str(data), labels=dict(labels or {}), options=dict(options or {}),
                           anonymous=anonymous)
        with self._store.write() as txn:
            txn.volumes.put(name, rec)
        self._events.publish("volume", "create", name, {"driver": "local"})
        return rec

    def get(self, name: str) -> VolumeRecord:
        with self._store.read() as txn:
            rec = txn.volumes.get(name)
        if rec is None:
            raise NotFound(f"get {name}: no such volume")
        return rec

    def list(self) -> list[VolumeRecord]:
        with self._store.read() as txn:
            return list(txn.volumes.values())

    def users(self, name: str) -> list[str]:
        with self._store.read() as txn:
            return [c.id for c in txn.containers.values() if any(m.name == name for m in c.mounts)]

    def remove(self, name: str, force: bool = False) -> None:
        rec = self.get(name) if not force else self._get_or_none(name)
        if rec is None:
            return
        in_use = self.users(name)
        if in_use:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(in_use)}]")
        with self._store.write() as txn:
            txn.volumes.delete(name)
        shutil.rmtree(self._root / name, ignore_errors=True)
        self._events.publish("volume", "destroy", name, {"driver": "local"})

    def prune(self, all_volumes: bool, labels: list[str]) -> tuple[list[str], int]:
        """Unused volumes; anonymous only unless all_volumes (dockerd 23+)."""
        removed, reclaimed = [], 0
        for rec in self.list():
            if not (all_volumes or rec.anonymous) or not _label_match(rec.labels, labels):
                continue
            if self.users(rec.name):
                continue
            reclaimed += _du(Path(rec.mountpoint))
            self.remove(rec.name)
            removed.append(rec.name)
        return removed, reclaimed

    def _get_or_none(self, name: str) -> VolumeRecord | None:
        with self._store.read() as txn:
            return txn.volumes.get(name)


def _label_match(labels: dict[str, str], wanted: list[str]) -> bool:
    for w in wanted:
        key, eq, value = w.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


def _du(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total
