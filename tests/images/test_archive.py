"""docker save / docker load archives: the Engine 25+ layout, legacy layouts, failures."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from appliance.errors import InvalidParameter, NotImplementedYet, SystemError_
from appliance.images.archive import ArchiveImage, LoadedImage, read_archive, write_archive
from appliance.images.config import encode_json, image_id, import_config
from appliance.images.layers import LayerStore
from tests.images.tarbuild import dir_, reg, sym, tar_bytes

NS = 1_700_000_000_000_000_000
STORE_DIRS = {"blobs", "blobs/sha256", "layers", "meta", "tmp"}


@pytest.fixture
def src(tmp_path: Path) -> LayerStore:
    return LayerStore(tmp_path / "src")


@pytest.fixture
def dst(tmp_path: Path) -> LayerStore:
    return LayerStore(tmp_path / "dst")


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def all_paths(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


def imported(store: LayerStore, layer_tar: bytes, tags=("busybox:latest",)) -> ArchiveImage:
    layer = store.add(io.BytesIO(layer_tar))
    config = import_config(diff_id=layer.diff_id, created_ns=NS)
    return ArchiveImage(image_id(config), config, list(tags), [layer.diff_id])


def layered(store: LayerStore, layer_tars: list[bytes], tags=(), os_name="linux") -> ArchiveImage:
    diff_ids = [store.add(io.BytesIO(t)).diff_id for t in layer_tars]
    config = encode_json({
        "architecture": "amd64",
        "created": "2023-11-14T22:13:20Z",
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": f"layer {i}"}
                    for i in range(len(diff_ids))],
        "os": os_name,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    return ArchiveImage(image_id(config), config, list(tags), diff_ids)


def save(images, store) -> bytes:
    buf = io.BytesIO()
    write_archive(buf, images, store)
    return buf.getvalue()


def members(archive: bytes) -> dict[str, bytes | None]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for m in tar:
            out[m.name] = tar.extractfile(m).read() if m.isreg() else None
    return out


def archive_of(files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    entries = [reg(name, data) for name, data in files.items()]
    entries += [sym(name, target) for name, target in (symlinks or {}).items()]
    return tar_bytes(*entries)


LAYER_A = tar_bytes(dir_("etc/"), reg("etc/os-release", b"ID=test\n"), reg("bin/sh", b"#!x", 0o755))
LAYER_B = tar_bytes(reg("etc/.wh.os-release"), dir_("app/"), reg("app/.wh..wh..opq"),
                    reg("app/main", b"main"))
LAYER_C = tar_bytes(reg("srv/c", b"c" * 100))


# -- save ------------------------------------------------------------------------------


def test_save_writes_the_engine_25_layout(src):
    image = imported(src, LAYER_A, tags=["busybox:latest", "localhost:5000/a/b:t"])
    files = members(save([image], src))
    layer_hex = image.diff_ids[0][7:]
    config_hex = image.image_id[7:]
    assert files["oci-layout"] == b'{"imageLayoutVersion": "1.0.0"}'
    assert files[f"blobs/sha256/{config_hex}"] == image.config_bytes
    assert files[f"blobs/sha256/{layer_hex}"] == LAYER_A
    assert files["blobs"] is None and files["blobs/sha256"] is None

    manifest = json.loads(files["manifest.json"])
    assert files["manifest.json"].endswith(b"\n")
    assert manifest == [{"Config": f"blobs/sha256/{config_hex}",
                         "RepoTags": ["busybox:latest", "localhost:5000/a/b:t"],
                         "Layers": [f"blobs/sha256/{layer_hex}"]}]
    assert json.loads(files["repositories"]) == {
        "busybox": {"latest": layer_hex}, "localhost:5000/a/b": {"t": layer_hex}}

    index = json.loads(files["index.json"])
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [d["annotations"] for d in index["manifests"]] == [
        {"io.containerd.image.name": "docker.io/library/busybox:latest",
         "org.opencontainers.image.ref.name": "latest"},
        {"io.containerd.image.name": "localhost:5000/a/b:t",
         "org.opencontainers.image.ref.name": "t"}]
    desc = index["manifests"][0]
    blob = files[f"blobs/sha256/{desc['digest'][7:]}"]
    assert sha(blob) == desc["digest"] and len(blob) == desc["size"]
    oci = json.loads(blob)
    assert oci == {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": image.image_id, "size": len(image.config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": image.diff_ids[0], "size": len(LAYER_A)}],
    }
    assert set(files) == {"blobs", "blobs/sha256", f"blobs/sha256/{config_hex}",
                          f"blobs/sha256/{layer_hex}", f"blobs/sha256/{desc['digest'][7:]}",
                          "index.json", "manifest.json", "oci-layout", "repositories"}


def test_save_untagged_image(src):
    image = imported(src, LAYER_A, tags=[])
    files = members(save([image], src))
    assert json.loads(files["manifest.json"])[0]["RepoTags"] is None
    assert "repositories" not in files
    [desc] = json.loads(files["index.json"])["manifests"]
    assert "annotations" not in desc


def test_save_shared_layers_once_and_streams_to_a_pipe(src):
    one = layered(src, [LAYER_A, LAYER_B], tags=["one:1"])
    two = layered(src, [LAYER_A, LAYER_C], tags=["two:2"])

    class Pipe:
        def __init__(self):
            self.chunks = []

        def write(self, data):
            self.chunks.append(bytes(data))
            return len(data)

    pipe = Pipe()
    write_archive(pipe, [one, two], src)
    names = list(members(b"".join(pipe.chunks)))
    assert names.count(f"blobs/sha256/{one.diff_ids[0][7:]}") == 1
    assert names == sorted(names)


def test_save_merges_the_same_image_named_twice(src):
    a = imported(src, LAYER_A, tags=["a:1"])
    b = ArchiveImage(a.image_id, a.config_bytes, ["b:2", "a:1"], a.diff_ids)
    files = members(save([a, b], src))
    [item] = json.loads(files["manifest.json"])
    assert item["RepoTags"] == ["a:1", "b:2"]
    assert len(json.loads(files["index.json"])["manifests"]) == 2


def test_save_refuses_empty_images_and_bad_ids(src):
    config = encode_json({"os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
    with pytest.raises(NotImplementedYet, match="empty export - not implemented"):
        save([ArchiveImage(image_id(config), config, [], [])], src)
    image = imported(src, LAYER_A)
    with pytest.raises(SystemError_):
        save([ArchiveImage("sha256:" + "0" * 64, image.config_bytes, [], image.diff_ids)], src)


# -- round trips -------------------------------------------------------------------------


def test_round_trip_gives_identical_ids(src, dst):
    image = imported(src, LAYER_A, tags=["busybox:latest", "localhost:5000/a/b:t"])
    [loaded] = read_archive(io.BytesIO(save([image], src)), dst)
    assert loaded == LoadedImage(image.image_id, image.config_bytes,
                                 ("busybox:latest", "localhost:5000/a/b:t"),
                                 tuple(image.diff_ids))
    with dst.open_tar(image.diff_ids[0]) as f:
        assert f.read() == LAYER_A
    assert (dst.path(image.diff_ids[0]) / "etc/os-release").read_bytes() == b"ID=test\n"
    assert os.listdir(dst.root / "tmp") == []


def test_round_trip_multi_image_multi_layer(src, dst):
    one = layered(src, [LAYER_A, LAYER_B], tags=["one:1", "one:latest"])
    two = layered(src, [LAYER_A, LAYER_C], tags=["reg.io/team/two:2"])
    loaded = read_archive(io.BytesIO(save([one, two], src)), dst)
    assert [(x.image_id, x.diff_ids, x.repo_tags) for x in loaded] == [
        (one.image_id, tuple(one.diff_ids), ("one:1", "one:latest")),
        (two.image_id, tuple(two.diff_ids), ("reg.io/team/two:2",))]
    assert sorted(layer.diff_id for layer in dst.list_layers()) == sorted(
        {*one.diff_ids, *two.diff_ids})
    b = dst.path(one.diff_ids[1])
    assert os.getxattr(b / "app", "trusted.overlay.opaque") == b"y"
    assert os.lstat(b / "etc/os-release").st_rdev == os.makedev(0, 0)
    # save again from the loaded store: byte-identical archive
    again = save([ArchiveImage(x.image_id, x.config_bytes, list(x.repo_tags), list(x.diff_ids))
                  for x in loaded], dst)
    assert again == save([one, two], src)


def test_load_compressed_archive_and_from_a_path(src, dst, tmp_path):
    image = imported(src, LAYER_A)
    path = tmp_path / "img.tar.gz"
    path.write_bytes(gzip.compress(save([image], src)))
    [loaded] = read_archive(path, dst)
    assert loaded.image_id == image.image_id
    [again] = read_archive(str(path), dst)  # layers already present: nothing to do
    assert again == loaded


def test_load_gzip_layer_blobs(dst):
    diff_id = sha(LAYER_A)
    config = encode_json({"os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}})
    gz = gzip.compress(LAYER_A)
    files = {
        "manifest.json": json.dumps([{"Config": f"blobs/sha256/{sha(config)[7:]}",
                                      "RepoTags": ["gz:1"],
                                      "Layers": [f"blobs/sha256/{sha(gz)[7:]}"]}]).encode(),
        f"blobs/sha256/{sha(config)[7:]}": config,
        f"blobs/sha256/{sha(gz)[7:]}": gz,
    }
    [loaded] = read_archive(io.BytesIO(archive_of(files)), dst)
    assert loaded.diff_ids == (diff_id,)
    with dst.open_tar(diff_id) as f:
        assert f.read() == LAYER_A


def legacy_archive() -> tuple[bytes, list[str], list[str]]:
    """A pre-25 `docker save`: <v1id>/layer.tar + json + VERSION, <config id>.json, a
    symlinked duplicate layer (as Docker 1.10-17.x wrote for shared layers)."""
    base, top = sha(LAYER_A), sha(LAYER_B)
    config1 = encode_json({"architecture": "amd64", "os": "linux",
                           "rootfs": {"type": "layers", "diff_ids": [base, top]}})
    config2 = encode_json({"architecture": "amd64", "os": "linux",
                           "rootfs": {"type": "layers", "diff_ids": [base]}})
    v1 = ["1" * 64, "2" * 64, "3" * 64]
    files = {
        f"{v1[0]}/VERSION": b"1.0",
        f"{v1[0]}/json": b'{"id":"' + v1[0].encode() + b'"}',
        f"{v1[0]}/layer.tar": LAYER_A,
        f"{v1[1]}/VERSION": b"1.0",
        f"{v1[1]}/json": b'{"id":"' + v1[1].encode() + b'"}',
        f"{v1[1]}/layer.tar": LAYER_B,
        f"{v1[2]}/VERSION": b"1.0",
        f"{v1[2]}/json": b'{"id":"' + v1[2].encode() + b'"}',
        f"{sha(config1)[7:]}.json": config1,
        f"{sha(config2)[7:]}.json": config2,
        "manifest.json": json.dumps([
            {"Config": f"{sha(config1)[7:]}.json", "RepoTags": ["legacy:1"],
             "Layers": [f"{v1[0]}/layer.tar", f"{v1[1]}/layer.tar"]},
            {"Config": f"{sha(config2)[7:]}.json", "RepoTags": None,
             "Layers": [f"{v1[2]}/layer.tar"]},
        ]).encode(),
        "repositories": json.dumps({"legacy": {"1": v1[1]}}).encode(),
    }
    archive = archive_of(files, symlinks={f"{v1[2]}/layer.tar": f"../{v1[0]}/layer.tar"})
    return archive, [sha(config1), sha(config2)], [base, top]


def test_load_legacy_layout(dst):
    archive, ids, diff_ids = legacy_archive()
    loaded = read_archive(io.BytesIO(archive), dst)
    assert [x.image_id for x in loaded] == ids
    assert loaded[0].repo_tags == ("legacy:1",) and loaded[1].repo_tags == ()
    assert loaded[0].diff_ids == tuple(diff_ids)
    assert sorted(x.diff_id for x in dst.list_layers()) == sorted(diff_ids)


def test_load_oci_only_layout(src, dst):
    image = layered(src, [LAYER_A, LAYER_C], tags=["oci:1"])
    files = members(save([image], src))
    for name in ("manifest.json", "repositories", "blobs", "blobs/sha256"):
        files.pop(name, None)
    [loaded] = read_archive(io.BytesIO(archive_of(files)), dst)
    assert (loaded.image_id, loaded.repo_tags, loaded.diff_ids) == (
        image.image_id, ("oci:1",), tuple(image.diff_ids))


# -- failures: all or nothing --------------------------------------------------------------


def docker_archive(configs_and_layers: list[tuple[bytes, list[bytes], list[str]]]) -> bytes:
    files: dict[str, bytes] = {}
    manifest = []
    for config, layer_blobs, tags in configs_and_layers:
        files[f"blobs/sha256/{sha(config)[7:]}"] = config
        for blob in layer_blobs:
            files[f"blobs/sha256/{sha(blob)[7:]}"] = blob
        manifest.append({"Config": f"blobs/sha256/{sha(config)[7:]}", "RepoTags": tags,
                         "Layers": [f"blobs/sha256/{sha(b)[7:]}" for b in layer_blobs]})
    files["manifest.json"] = json.dumps(manifest).encode()
    return archive_of(files)


def config_for(*diff_ids: str, os_name: str = "linux") -> bytes:
    return encode_json({"os": os_name, "rootfs": {"type": "layers", "diff_ids": list(diff_ids)}})


def test_diff_id_mismatch_is_rejected_and_cleaned_up(dst):
    claimed = sha(LAYER_C)
    archive = docker_archive([(config_for(claimed), [LAYER_A], ["x:1"])])
    with pytest.raises(InvalidParameter) as info:
        read_archive(io.BytesIO(archive), dst)
    assert info.value.message == (
        f'invalid diffID for layer 0: expected "{claimed}", got "{sha(LAYER_A)}"')
    assert all_paths(dst.root) == STORE_DIRS


def test_failure_in_a_later_image_undoes_the_whole_load(dst):
    existing = dst.add(io.BytesIO(LAYER_C))
    good = (config_for(sha(LAYER_C), sha(LAYER_A)), [LAYER_C, LAYER_A], ["good:1"])
    bad = (config_for(sha(LAYER_A), "sha256:" + "9" * 64), [LAYER_A, LAYER_B], ["bad:1"])
    with pytest.raises(InvalidParameter, match="invalid diffID for layer 1"):
        read_archive(io.BytesIO(docker_archive([good, bad])), dst)
    assert dst.list_layers() == [existing]  # the layer that was there before stays
    assert os.listdir(dst.root / "tmp") == []


def test_referenced_layers_survive_a_failed_load(dst):
    good = (config_for(sha(LAYER_A)), [LAYER_A], ["good:1"])
    bad = (config_for(sha(LAYER_C)), [LAYER_B], ["bad:1"])
    with pytest.raises(InvalidParameter):
        read_archive(io.BytesIO(docker_archive([good, bad])), dst,
                     is_referenced=lambda d: d == sha(LAYER_A))
    assert [x.diff_id for x in dst.list_layers()] == [sha(LAYER_A)]


def test_hostile_layer_in_an_archive(dst):
    evil = tar_bytes(sym("a", "/"), reg("a/tmp/evil-from-archive", b"x"))
    archive = docker_archive([(config_for(sha(evil)), [evil], ["evil:1"])])
    with pytest.raises(InvalidParameter):
        read_archive(io.BytesIO(archive), dst)
    assert all_paths(dst.root) == STORE_DIRS
    assert not os.path.exists("/tmp/evil-from-archive")


def test_config_digest_mismatch(dst):
    config = config_for(sha(LAYER_A))
    files = {
        f"blobs/sha256/{'0' * 64}": config,
        f"blobs/sha256/{sha(LAYER_A)[7:]}": LAYER_A,
        "manifest.json": json.dumps([{"Config": f"blobs/sha256/{'0' * 64}", "RepoTags": [],
                                      "Layers": [f"blobs/sha256/{sha(LAYER_A)[7:]}"]}]).encode(),
    }
    with pytest.raises(InvalidParameter, match="does not match its digest"):
        read_archive(io.BytesIO(archive_of(files)), dst)
    assert all_paths(dst.root) == STORE_DIRS


@pytest.mark.parametrize("mutate,message", [
    (lambda f: f.pop("manifest.json"), "invalid archive: does not contain a manifest.json"),
    (lambda f: f.update({"manifest.json": b"null"}),
     "invalid manifest, manifest cannot be null (but can be [])"),
    (lambda f: f.update({"manifest.json": b"{nope"}),
     "invalid archive: failed to decode manifest.json"),
])
def test_manifest_problems(dst, mutate, message):
    files = members(docker_archive([(config_for(sha(LAYER_A)), [LAYER_A], ["x:1"])]))
    mutate(files)
    with pytest.raises(InvalidParameter) as info:
        read_archive(io.BytesIO(archive_of(files)), dst)
    assert info.value.message.startswith(message)


def test_layers_length_mismatch(dst):
    archive = docker_archive([(config_for(sha(LAYER_A), sha(LAYER_B)), [LAYER_A], ["x:1"])])
    with pytest.raises(InvalidParameter,
                       match="^invalid manifest, layers length mismatch: expected 1, got 2$"):
        read_archive(io.BytesIO(archive), dst)


def test_windows_image_is_refused(dst):
    archive = docker_archive([(config_for(sha(LAYER_A), os_name="windows"), [LAYER_A], [])])
    with pytest.raises(InvalidParameter, match="^cannot load windows image on linux$"):
        read_archive(io.BytesIO(archive), dst)


@pytest.mark.parametrize("tag,message", [
    ("Busybox:latest",
     "invalid reference format: repository name (library/Busybox) must be lowercase"),
    ("busybox", 'invalid tag "busybox"'),
])
def test_bad_repo_tags(dst, tag, message):
    archive = docker_archive([(config_for(sha(LAYER_A)), [LAYER_A], [tag])])
    with pytest.raises(InvalidParameter) as info:
        read_archive(io.BytesIO(archive), dst)
    assert info.value.message == message
    assert all_paths(dst.root) == STORE_DIRS


def test_hostile_archive_paths(dst):
    with pytest.raises(InvalidParameter):
        read_archive(io.BytesIO(archive_of({"../manifest.json": b"[]"})), dst)
    # a symlink cannot reach outside the archive: /etc/hostname resolves inside it
    archive = archive_of({}, symlinks={"manifest.json": "/etc/hostname"})
    with pytest.raises(InvalidParameter, match="does not contain a manifest.json"):
        read_archive(io.BytesIO(archive), dst)
    with pytest.raises(InvalidParameter):
        read_archive(io.BytesIO(b"garbage" * 200), dst)
    assert all_paths(dst.root) == STORE_DIRS
