"""The LMDB environment: one file per node, short synchronous transactions, a schema version.

Rule: never hold a transaction across an `await`. LMDB allows one writer; a write txn kept open
while trio switches tasks would block the next writer on the only thread (a deadlock).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Generic, TypeVar

import lmdb

from . import codec
from .records import (
    ContainerRecord,
    EndpointRecord,
    ImageRecord,
    NetworkRecord,
    SandboxRecord,
    VolumeRecord,
)

SCHEMA_VERSION = 1
_MAP_SIZE = 1 << 30  # a ceiling for sparse-file growth, not an allocation

R = TypeVar("R")


class SchemaMismatch(Exception):
    """The store was written by a newer schema than this node knows."""


class Table(Generic[R]):
    """A typed view of one LMDB sub-database inside a transaction."""

    def __init__(self, txn: lmdb.Transaction, db, cls: type[R]):
        self._txn, self._db, self._cls = txn, db, cls

    def get(self, key: str) -> R | None:
        raw = self._txn.get(key.encode(), db=self._db)
        return None if raw is None else codec.unpack(self._cls, raw)

    def put(self, key: str, record: R) -> None:
        self._txn.put(key.encode(), codec.pack(record), db=self._db)

    def delete(self, key: str) -> bool:
        return self._txn.delete(key.encode(), db=self._db)

    def values(self) -> Iterator[R]:
        with self._txn.cursor(db=self._db) as cur:
            for _, raw in cur:
                yield codec.unpack(self._cls, raw)

    def keys_with_prefix(self, prefix: str) -> list[str]:
        out = []
        with self._txn.cursor(db=self._db) as cur:
            if cur.set_range(prefix.encode()):
                for key in cur.iternext(values=False):
                    k = key.decode()
                    if not k.startswith(prefix):
                        break
                    out.append(k)
        return out


class Index:
    """A str -> str map (names -> ids, tags -> image ids)."""

    def __init__(self, txn: lmdb.Transaction, db):
        self._txn, self._db = txn, db

    def get(self, key: str) -> str | None:
        raw = self._txn.get(key.encode(), db=self._db)
        return None if raw is None else raw.decode()

    def put(self, key: str, value: str) -> None:
        self._txn.put(key.encode(), value.encode(), db=self._db)

    def delete(self, key: str) -> bool:
        return self._txn.delete(key.encode(), db=self._db)

    def items(self) -> list[tuple[str, str]]:
        with self._txn.cursor(db=self._db) as cur:
            return [(k.decode(), v.decode()) for k, v in cur]

    def items_with_prefix(self, prefix: str) -> list[tuple[str, str]]:
        out = []
        with self._txn.cursor(db=self._db) as cur:
            if cur.set_range(prefix.encode()):
                for key, value in cur:
                    k = key.decode()
                    if not k.startswith(prefix):
                        break
                    out.append((k, value.decode()))
        return out


class Txn:
    def __init__(self, txn: lmdb.Transaction, dbs: dict):
        self.containers = Table(txn, dbs["containers"], ContainerRecord)
        self.names = Index(txn, dbs["names"])
        self.images = Table(txn, dbs["images"], ImageRecord)
        self.tags = Index(txn, dbs["tags"])
        self.volumes = Table(txn, dbs["volumes"], VolumeRecord)
        self.networks = Table(txn, dbs["networks"], NetworkRecord)
        self.network_names = Index(txn, dbs["network_names"])
        # IPAM leases: "<network id>/<ip>" -> container id. One put per address inside the same
        # transaction as the container record, so an address is never handed out twice.
        self.ip_leases = Index(txn, dbs["ip_leases"])
        # Network endpoints "<container id>/<network id>" and running containers' namespaces.
        self.endpoints = Table(txn, dbs["endpoints"], EndpointRecord)
        self.sandboxes = Table(txn, dbs["sandboxes"], SandboxRecord)


class Store:
    def __init__(self, env: lmdb.Environment, dbs: dict):
        self._env, self._dbs = env, dbs

    @contextlib.contextmanager
    def read(self) -> Iterator[Txn]:
        with self._env.begin(write=False) as txn:
            yield Txn(txn, self._dbs)

    @contextlib.contextmanager
    def write(self) -> Iterator[Txn]:
        """Commits when the block ends normally; aborts (changes nothing) if it raises."""
        with self._env.begin(write=True) as txn:
            yield Txn(txn, self._dbs)

    def close(self) -> None:
        self._env.close()


def open_store(path: Path) -> Store:
    path.mkdir(parents=True, exist_ok=True)
    # sync=True and metasync=True (lmdb's defaults): a commit that returned survives kill -9.
    env = lmdb.open(str(path), map_size=_MAP_SIZE, max_dbs=16, subdir=True)
    names = ("meta", "containers", "names", "images", "tags", "volumes", "networks", "network_names",
             "ip_leases", "endpoints", "sandboxes")
    dbs = {n: env.open_db(n.encode()) for n in names}
    with env.begin(write=True) as txn:
        raw = txn.get(b"schema_version", db=dbs["meta"])
        if raw is None:
            txn.put(b"schema_version", str(SCHEMA_VERSION).encode(), db=dbs["meta"])
        elif int(raw) > SCHEMA_VERSION:
            env.close()
            raise SchemaMismatch(f"store schema {int(raw)} is newer than this node's {SCHEMA_VERSION}")
    return Store(env, dbs)
