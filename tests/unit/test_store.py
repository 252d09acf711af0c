import pytest

from appliance.store import SchemaMismatch, open_store
from appliance.store.records import (
    ContainerConfig, ContainerRecord, HostConfig, MountPoint, MountRequest, VolumeRecord,
)


def _record(cid="c1", name="web"):
    return ContainerRecord(
        id=cid, name=name, node="n1", tenant="default", created=1, image_id="sha256:ab",
        config=ContainerConfig(image="busybox", cmd=["sh"], labels={"a": "b"}),
        host_config=HostConfig(memory=1 << 20, mounts=[MountRequest(type="bind", source="/x", target="/y")]),
        mounts=[MountPoint(type="volume", destination="/data", name="v1")],
    )


def test_round_trip_keeps_nested_records(tmp_path):
    store = open_store(tmp_path / "db")
    with store.write() as txn:
        txn.containers.put("c1", _record())
        txn.names.put("web", "c1")
    with store.read() as txn:
        got = txn.containers.get("c1")
        assert got == _record()
        assert isinstance(got.host_config.mounts[0], MountRequest)
        assert txn.names.get("web") == "c1"


def test_a_raising_write_block_changes_nothing(tmp_path):
    store = open_store(tmp_path / "db")
    with pytest.raises(RuntimeError):
        with store.write() as txn:
            txn.volumes.put("v", VolumeRecord(name="v", node="n", tenant="t", created=0, mountpoint="/m"))
            raise RuntimeError("half way")
    with store.read() as txn:
        assert txn.volumes.get("v") is None


def test_survives_reopen_and_refuses_a_newer_schema(tmp_path):
    store = open_store(tmp_path / "db")
    with store.write() as txn:
        txn.containers.put("c1", _record())
    store.close()
    store = open_store(tmp_path / "db")
    with store.read() as txn:
        assert [r.id for r in txn.containers.values()] == ["c1"]
    with store._env.begin(write=True) as raw:
        raw.put(b"schema_version", b"999", db=store._dbs["meta"])
    store.close()
    with pytest.raises(SchemaMismatch):
        open_store(tmp_path / "db")


def test_unknown_fields_from_a_newer_writer_are_ignored(tmp_path):
    import msgpack

    store = open_store(tmp_path / "db")
    data = {"name": "v", "node": "n", "tenant": "t", "created": 0, "mountpoint": "/m", "future": 1}
    with store._env.begin(write=True) as raw:
        raw.put(b"v", msgpack.packb(data), db=store._dbs["volumes"])
    with store.read() as txn:
        assert txn.volumes.get("v").name == "v"


def test_prefix_scan(tmp_path):
    store = open_store(tmp_path / "db")
    with store.write() as txn:
        for cid in ("abc1", "abc2", "abd"):
            txn.containers.put(cid, _record(cid))
    with store.read() as txn:
        assert txn.containers.keys_with_prefix("abc") == ["abc1", "abc2"]
