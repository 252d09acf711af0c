"""docker-archive tars: ``docker save`` output and ``docker load`` input.

write_archive writes what Docker Engine 25+ writes (moby image/tarexport/save.go): an OCI
image layout (``oci-layout``, ``index.json``, manifest/config/layer blobs under
``blobs/sha256/``) plus the Docker ``manifest.json`` and legacy ``repositories`` files.

read_archive accepts that layout, the older one (``<id>/layer.tar``, ``<id>.json``,
symlinked duplicate layers), gzip/bzip2/xz compressed archives or layer blobs, and an
OCI-only layout (``index.json`` without ``manifest.json``). A load is all or nothing: on
any error the layers it added are removed again (unless ``is_referenced`` says otherwise).

Sync; the outer tar is streamed and spooled under the layer store's tmp dir.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import re
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from appliance.errors import InvalidParameter, NotImplementedYet, SystemError_
from appliance.images import reference
from appliance.images.config import encode_json, parse_config, parse_rfc3339
from appliance.images.layers import CHUNK, LayerStore, member_parts

MANIFEST_FILE = "manifest.json"
REPOSITORIES_FILE = "repositories"
INDEX_FILE = "index.json"
LAYOUT_FILE = "oci-layout"
LAYOUT_CONTENT = b'{"imageLayoutVersion": "1.0.0"}'

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MEDIA_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MEDIA_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

_HEX64 = re.compile(r"[a-f0-9]{64}")


@dataclass(frozen=True, slots=True)
class ArchiveImage:
    """One image to save. ``repo_tags`` are familiar ("busybox:latest"); empty = by id."""

    image_id: str
    config_bytes: bytes
    repo_tags: Sequence[str]
    diff_ids: Sequence[str]


@dataclass(frozen=True, slots=True)
class LoadedImage:
    """One image a load produced; its layers are in the store. ``repo_tags`` are familiar."""

    image_id: str
    config_bytes: bytes
    repo_tags: tuple[str, ...]
    diff_ids: tuple[str, ...]


# -----------------------------------------------------------------------------------------
# save


@dataclass
class _Entry:
    name: str
    mtime: int
    data: bytes | None = None  # None: a layer blob streamed from the store
    diff_id: str = ""
    size: int = 0


def write_archive(out: BinaryIO, images: Sequence[ArchiveImage], layers: LayerStore) -> None:
    """Write a ``docker save`` tar of ``images`` to ``out`` (which need not be seekable).

    The same image listed twice (``docker save a b`` naming one image) is written once,
    with the union of its tags.
    """
    merged: dict[str, ArchiveImage] = {}
    for image in images:
        seen = merged.get(image.image_id)
        if seen is None:
            merged[image.image_id] = image
        else:
            tags = list(seen.repo_tags) + [t for t in image.repo_tags if t not in seen.repo_tags]
            merged[image.image_id] = ArchiveImage(seen.image_id, seen.config_bytes, tags,
                                                  seen.diff_ids)
    images = list(merged.values())
    blobs: dict[str, _Entry] = {}
    manifest: list[dict] = []
    index: list[dict] = []
    repositories: dict[str, dict[str, str]] = {}

    for image in images:
        if "sha256:" + hashlib.sha256(image.config_bytes).hexdigest() != image.image_id:
            raise SystemError_(f"image {image.image_id}: config does not match its id")
        if not image.diff_ids:
            raise NotImplementedYet("empty export - not implemented")
        created = _created_seconds(image.config_bytes)
        config_hex = image.image_id[7:]
        blobs.setdefault(config_hex, _Entry(f"blobs/sha256/{config_hex}", created,
                                            data=image.config_bytes))
        layer_descs = []
        for diff_id in image.diff_ids:
            layer = layers.get(diff_id)
            hex_ = diff_id[7:]
            blobs.setdefault(hex_, _Entry(f"blobs/sha256/{hex_}", created, diff_id=diff_id,
                                          size=layer.tar_size))
            layer_descs.append({"mediaType": MEDIA_LAYER, "digest": diff_id,
                                "size": layer.tar_size})
        oci_manifest = encode_json({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": image.image_id,
                       "size": len(image.config_bytes)},
            "layers": layer_descs,
        })
        manifest_hex = hashlib.sha256(oci_manifest).hexdigest()
        blobs.setdefault(manifest_hex, _Entry(f"blobs/sha256/{manifest_hex}", 0,
                                              data=oci_manifest))
        descriptor = {"mediaType": MEDIA_MANIFEST, "digest": "sha256:" + manifest_hex,
                      "size": len(oci_manifest)}

        repo_tags: list[str] = []
        for tag in image.repo_tags:
            ref = reference.parse_tagged(tag)
            familiar = ref.familiar()
            if familiar in repo_tags:
                continue
            repo_tags.append(familiar)
            repositories.setdefault(ref.familiar_name, {})[ref.tag] = image.diff_ids[-1][7:]
            index.append({**descriptor, "annotations": {
                ANNOTATION_IMAGE_NAME: str(ref), ANNOTATION_REF_NAME: ref.tag}})
        if not repo_tags:
            index.append(dict(descriptor))
        manifest.append({
            "Config": f"blobs/sha256/{config_hex}",
            "RepoTags": repo_tags or None,
            "Layers": [f"blobs/sha256/{d[7:]}" for d in image.diff_ids],
        })

    files = [
        _Entry(INDEX_FILE, 0, data=encode_json({
            "schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": index})),
        _Entry(MANIFEST_FILE, 0, data=encode_json(manifest) + b"\n"),
        _Entry(LAYOUT_FILE, 0, data=LAYOUT_CONTENT),
    ]
    if repositories:
        repos = {name: dict(sorted(tags.items())) for name, tags in sorted(repositories.items())}
        files.append(_Entry(REPOSITORIES_FILE, 0, data=encode_json(repos) + b"\n"))

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_dir(tar, "blobs/")
        _add_dir(tar, "blobs/sha256/")
        for hex_ in sorted(blobs):
            entry = blobs[hex_]
            if entry.data is not None:
                _add_bytes(tar, entry.name, entry.data, entry.mtime)
            else:
                info = _file_info(entry.name, entry.size, entry.mtime)
                with layers.open_tar(entry.diff_id) as src:
                    tar.addfile(info, src)
        for entry in files:
            _add_bytes(tar, entry.name, entry.data or b"", entry.mtime)


def _created_seconds(config_bytes: bytes) -> int:
    try:
        created = json.loads(config_bytes).get("created")
        return max(0, parse_rfc3339(created) // 1_000_000_000) if created else 0
    except (ValueError, AttributeError, InvalidParameter):
        return 0


def _file_info(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = mtime
    info.uname = info.gname = ""
    return info


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = 0
    info.uname = info.gname = ""
    tar.addfile(info)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    tar.addfile(_file_info(name, len(data), mtime), io.BytesIO(data))


# -----------------------------------------------------------------------------------------
# load


@dataclass
class _Spool:
    """The archive unpacked under ``root``: regular files on disk, links in memory."""

    root: Path
    symlinks: dict[tuple[str, ...], str] = field(default_factory=dict)
    hardlinks: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)

    def resolve(self, name: str) -> Path:
        """The spooled file ``name`` denotes, following the archive's symlinks inside its
        own scope (moby's safePath: FollowSymlinkInScope)."""
        parts = _scoped(name.split("/"))
        for _ in range(256):
            for i in range(1, len(parts) + 1):
                link = self.symlinks.get(tuple(parts[:i]))
                if link is not None:
                    base = [] if link.startswith("/") else parts[: i - 1]
                    parts = _scoped(base + link.split("/") + parts[i:])
                    break
            else:
                target = self.hardlinks.get(tuple(parts))
                if target is None:
                    path = self.root.joinpath(*parts) if parts else self.root
                    if not path.is_file():
                        raise InvalidParameter(f"invalid archive: {name} not found")
                    return path
                parts = list(target)
        raise InvalidParameter(f"invalid archive: too many links resolving {name}")

    def exists(self, name: str) -> bool:
        try:
            self.resolve(name)
        except InvalidParameter:
            return False
        return True


def _scoped(parts: list[str]) -> list[str]:
    out: list[str] = []
    for p in parts:
        if p in ("", "."):
            continue
        if p == "..":
            if out:
                out.pop()
            continue
        out.append(p)
    return out


def _unpack(source: BinaryIO, spool: _Spool) -> None:
    try:
        with tarfile.open(fileobj=source, mode="r|*") as tar:
            for member in tar:
                tar.members.clear()
                parts = member_parts(member.name)
                if not parts:
                    continue
                if member.issym():
                    spool.symlinks[parts] = member.linkname
                    continue
                if member.islnk():
                    spool.hardlinks[parts] = tuple(_scoped(member.linkname.split("/")))
                    continue
                path = spool.root.joinpath(*parts)
                try:
                    if member.isdir():
                        path.mkdir(parents=True, exist_ok=True)
                    elif member.isreg():
                        path.parent.mkdir(parents=True, exist_ok=True)
                        src = tar.extractfile(member)
                        with open(path, "wb") as out:
                            while src is not None and (chunk := src.read(CHUNK)):
                                out.write(chunk)
                except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
                    raise InvalidParameter(f"invalid archive: {member.name}: {exc.strerror}") \
                        from None
    except (tarfile.TarError, EOFError) as exc:
        raise InvalidParameter(f"invalid archive: {exc}") from None


def read_archive(
    source: BinaryIO | str | os.PathLike,
    layers: LayerStore,
    is_referenced: Callable[[str], bool] | None = None,
) -> list[LoadedImage]:
    """Load a ``docker save`` tar: put its layers in ``layers`` and return its images.

    The engine records the images (and tags) afterwards. On error, layers this call
    added are removed again unless ``is_referenced(diff_id)`` is true (a concurrent
    import may have started using one), and InvalidParameter is raised.
    """
    added: list[str] = []
    try:
        with layers.work_dir("load-") as work:
            spool = _Spool(work / "archive")
            spool.root.mkdir()
            if isinstance(source, (str, os.PathLike)):
                with open(source, "rb") as f:
                    _unpack(f, spool)
            else:
                _unpack(source, spool)
            if spool.exists(MANIFEST_FILE):
                return _load_docker(spool, layers, added)
            if spool.exists(INDEX_FILE):
                return _load_oci(spool, layers, added)
            raise InvalidParameter(f"invalid archive: does not contain a {MANIFEST_FILE}")
    except BaseException:
        for diff_id in reversed(added):
            if is_referenced is None or not is_referenced(diff_id):
                layers.remove(diff_id)
        raise


def _load_docker(spool: _Spool, layers: LayerStore, added: list[str]) -> list[LoadedImage]:
    try:
        manifest = json.loads(spool.resolve(MANIFEST_FILE).read_bytes())
    except ValueError as exc:
        raise InvalidParameter(f"invalid archive: failed to decode {MANIFEST_FILE}: {exc}") \
            from None
    if manifest is None:
        raise InvalidParameter("invalid manifest, manifest cannot be null (but can be [])")
    if not isinstance(manifest, list) or not all(isinstance(m, dict) for m in manifest):
        raise InvalidParameter(f"invalid archive: failed to decode {MANIFEST_FILE}")
    loaded = []
    for item in manifest:
        config_name = item.get("Config")
        layer_names = item.get("Layers") or []
        repo_tags = item.get("RepoTags") or []
        if not (isinstance(config_name, str) and _strings(layer_names) and _strings(repo_tags)):
            raise InvalidParameter(f"invalid archive: bad entry in {MANIFEST_FILE}")
        config_bytes = spool.resolve(config_name).read_bytes()
        image_id = _check_config_digest(config_name, config_bytes)
        diff_ids = _config_diff_ids(config_bytes, len(layer_names))
        for i, (name, diff_id) in enumerate(zip(layer_names, diff_ids, strict=True)):
            _load_layer(spool.resolve(name), i, diff_id, layers, added)
        tags = tuple(_familiar_tag(t) for t in repo_tags)
        loaded.append(LoadedImage(image_id, config_bytes, tags, tuple(diff_ids)))
    return loaded


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def _check_config_digest(name: str, config_bytes: bytes) -> str:
    image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    stem = posixpath.basename(name)
    if stem.endswith(".json"):
        stem = stem[: -len(".json")]
    if _HEX64.fullmatch(stem) and stem != image_id[7:]:
        raise InvalidParameter(
            f"invalid archive: config {name} does not match its digest {image_id}")
    return image_id


def _config_diff_ids(config_bytes: bytes, n_layers: int) -> tuple[str, ...]:
    image = parse_config(config_bytes)
    if image.os != "linux":
        raise InvalidParameter(f"cannot load {image.os} image on linux")
    if n_layers != len(image.diff_ids):
        raise InvalidParameter(
            f"invalid manifest, layers length mismatch: expected {n_layers}, "
            f"got {len(image.diff_ids)}")
    return image.diff_ids


def _load_layer(path: Path, i: int, diff_id: str, layers: LayerStore, added: list[str]) -> None:
    if layers.has(diff_id):
        return
    with open(path, "rb") as f:
        layer, new = layers.add_new(f)
    if new:
        added.append(layer.diff_id)
    if layer.diff_id != diff_id:
        raise InvalidParameter(
            f'invalid diffID for layer {i}: expected "{diff_id}", got "{layer.diff_id}"')


def _familiar_tag(tag: str) -> str:
    return reference.parse_tagged(tag).familiar()


# -- OCI-only layout ------------------------------------------------------------------------


def _read_blob(spool: _Spool, digest: str, limit: int = 16 << 20) -> bytes:
    if not isinstance(digest, str) or not digest.startswith("sha256:") \
            or not _HEX64.fullmatch(digest[7:]):
        raise InvalidParameter(f"invalid archive: unsupported digest {digest!r}")
    path = spool.resolve(f"blobs/sha256/{digest[7:]}")
    if path.stat().st_size > limit:
        raise InvalidParameter(f"invalid archive: blob {digest} is too large")
    data = path.read_bytes()
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise InvalidParameter(f"invalid archive: blob {digest} does not match its digest")
    return data


def _json(data: bytes, what: str) -> dict:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise InvalidParameter(f"invalid archive: failed to decode {what}: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidParameter(f"invalid archive: {what} is not an object")
    return value


def _platform_ok(desc: dict) -> bool:
    platform = desc.get("platform")
    if not isinstance(platform, dict):
        return True
    return platform.get("os") in (None, "linux") and platform.get("architecture") in (None, "amd64")


def _load_oci(spool: _Spool, layers: LayerStore, added: list[str]) -> list[LoadedImage]:
    index = _json(spool.resolve(INDEX_FILE).read_bytes(), INDEX_FILE)
    by_manifest: dict[str, list[str]] = {}
    order: list[str] = []
    todo = [(d, 0) for d in index.get("manifests") or []]
    while todo:
        desc, depth = todo.pop(0)
        if not isinstance(desc, dict):
            raise InvalidParameter(f"invalid archive: bad descriptor in {INDEX_FILE}")
        media = desc.get("mediaType")
        if media in (MEDIA_INDEX, DOCKER_MEDIA_LIST):
            if depth < 4:
                nested = _json(_read_blob(spool, desc.get("digest")), "image index")
                todo += [(d, depth + 1) for d in nested.get("manifests") or []
                         if isinstance(d, dict) and _platform_ok(d)]
            continue
        if media not in (MEDIA_MANIFEST, DOCKER_MEDIA_MANIFEST) or not _platform_ok(desc):
            continue
        digest = desc.get("digest")
        if digest not in by_manifest:
            by_manifest[digest] = []
            order.append(digest)
        tag = _oci_tag(desc.get("annotations") or {})
        if tag is not None and tag not in by_manifest[digest]:
            by_manifest[digest].append(tag)
    loaded = []
    for digest in order:
        manifest = _json(_read_blob(spool, digest), "image manifest")
        config_desc = manifest.get("config") or {}
        config_bytes = _read_blob(spool, config_desc.get("digest"))
        image_id = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        layer_descs = manifest.get("layers") or []
        diff_ids = _config_diff_ids(config_bytes, len(layer_descs))
        for i, (desc, diff_id) in enumerate(zip(layer_descs, diff_ids, strict=True)):
            ldigest = desc.get("digest") if isinstance(desc, dict) else None
            if not isinstance(ldigest, str) or not ldigest.startswith("sha256:"):
                raise InvalidParameter(f"invalid archive: bad layer descriptor {desc!r}")
            _load_layer(spool.resolve(f"blobs/sha256/{ldigest[7:]}"), i, diff_id, layers, added)
        loaded.append(LoadedImage(image_id, config_bytes, tuple(by_manifest[digest]),
                                  tuple(diff_ids)))
    return loaded


def _oci_tag(annotations: dict) -> str | None:
    name = annotations.get(ANNOTATION_IMAGE_NAME)
    if isinstance(name, str) and name:
        return _familiar_tag(name)
    ref_name = annotations.get(ANNOTATION_REF_NAME)
    if isinstance(ref_name, str) and ("/" in ref_name or ":" in ref_name):
        try:
            return _familiar_tag(ref_name)
        except InvalidParameter:
            return None
    return None
