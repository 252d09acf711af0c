"""LMDB-backed state: typed tables of records (msgpack values) with a schema version."""

from .env import SCHEMA_VERSION, SchemaMismatch, Store, Txn, open_store

__all__ = ["SCHEMA_VERSION", "SchemaMismatch", "Store", "Txn", "open_store"]
