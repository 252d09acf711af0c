"""Images: records and tags in the store, layers in the LayerStore; import, tag, rmi, save, load.

Heavy file work (extracting a layer, writing an archive) runs in a worker thread; every store
transaction stays on the trio thread and is short. One lock serialises the operations that add
or drop layers, so a failed load never removes a layer a concurrent import just started using.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from ..errors import Conflict, InvalidParameter, NotFound
from ..images import archive, config as image_config, reference
from ..images.layers import LayerStore
from ..store import Store
from ..store.records import ImageRecord
from .events import EventLog

_CHUNK = 1 << 16


class ImageService:
    def __init__(self, store: Store, events: EventLog, layers: LayerStore, node: str, tenant: str,
                 spool_dir: Path):
        self._store, self._events, self._layers = store, events, layers
        self._node, self._tenant = node, tenant
        self._spool_dir = spool_dir
        self._lock = trio.Lock()
        self._containers = None
        spool_dir.mkdir(parents=True, exist_ok=True)
        for leftover in spool_dir.iterdir():  # spools of requests a killed node never finished
            leftover.unlink()
        layers.recover()

    def set_container_index(self, containers) -> None:
        """rmi must know which containers use an image; containers are built after images."""
        self._containers = containers

    # ---- lookups ------------------------------------------------------------------------------

    def _ids(self) -> list[str]:
        with self._store.read() as txn:
            return [r.id for r in txn.images.values()]

    def _lookup_tag(self, ref: reference.Reference) -> str | None:
        with self._store.read() as txn:
            return txn.tags.get(str(ref))

    def resolve(self, term: str) -> ImageRecord:
        image_id = reference.resolve_image(term, self._lookup_tag, self._ids)
        return self.get_by_id(image_id)

    def get_by_id(self, image_id: str) -> ImageRecord:
        with self._store.read() as txn:
            rec = txn.images.get(image_id)
        if rec is None:
            raise NotFound(f"No such image: {image_id}")
        return rec

    def parsed(self, rec: ImageRecord) -> image_config.ImageConfig:
        return image_config.parse_config(rec.config_json)

    def runtime_config(self, rec: ImageRecord) -> dict:
        return self.parsed(rec).config or {}

    def lower_dirs(self, rec: ImageRecord) -> list[Path]:
        """Overlay lowerdirs, top-most layer first."""
        return [self._layers.path(d) for d in reversed(self.parsed(rec).diff_ids)]

    def tags_of(self, image_id: str) -> list[str]:
        with self._store.read() as txn:
            return sorted(reference.familiar_repo_tag(k) for k, v in txn.tags.items() if v == image_id)

    def list_images(self) -> list[ImageRecord]:
        with self._store.read() as txn:
            return sorted(txn.images.values(), key=lambda r: r.created, reverse=True)

    def is_ancestor(self, term: str, image_name: str, image_id: str) -> bool:
        """ps --filter ancestor: the image by name or id (single-layer images have no parents here)."""
        if term == image_name:
            return True
        try:
            return self.resolve(term).id == image_id
        except (NotFound, InvalidParameter):
            return False

    def _size(self, rec: ImageRecord) -> int:
        return sum(self._layers.size(d) for d in self.parsed(rec).diff_ids if self._layers.has(d))

    # ---- Docker-shaped views (plain dicts of the image's own JSON vocabulary) ----------------

    def summary(self, rec: ImageRecord) -> dict:
        cfg = self.parsed(rec)
        tags = self.tags_of(rec.id)
        return {"Id": rec.id, "ParentId": rec.parent, "RepoTags": tags, "RepoDigests": [],
                "Created": cfg.created_unix, "Size": self._size(rec), "SharedSize": -1,
                "Labels": (cfg.config or {}).get("Labels") or {}, "Containers": -1}

    def inspect(self, term: str) -> dict:
        rec = self.resolve(term)
        cfg = self.parsed(rec)
        raw = cfg.raw
        return {"Id": rec.id, "RepoTags": self.tags_of(rec.id), "RepoDigests": [], "Parent": rec.parent,
                "Comment": cfg.comment, "Created": raw.get("created", ""),
                "DockerVersion": cfg.docker_version, "Author": cfg.author, "Config": cfg.config,
                "Architecture": cfg.architecture, "Os": cfg.os, "Size": self._size(rec),
                "GraphDriver": {"Name": "overlay", "Data": None},
                "RootFS": {"Type": "layers", "Layers": list(cfg.diff_ids)},
                "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"}}

    def history(self, term: str) -> list[dict]:
        rec = self.resolve(term)
        cfg = self.parsed(rec)
        rows = image_config.history(cfg, [self._layers.size(d) for d in cfg.diff_ids])
        tags = self.tags_of(rec.id)
        out = []
        for i, row in enumerate(rows):
            out.append({"Id": rec.id if i == 0 else "<missing>", "Created": row.created,
                        "CreatedBy": row.created_by, "Tags": tags if i == 0 else None, "Size": row.size,
                        "Comment": row.comment})
        return out

    def filter_images(self, filters: dict[str, list[str]], show_all: bool) -> list[ImageRecord]:
        out = []
        for rec in self.list_images():
            tags = self.tags_of(rec.id)
            labels = (self.parsed(rec).config or {}).get("Labels") or {}
            if filters.get("dangling"):
                dangling = filters["dangling"][-1].lower() in ("1", "true")
                if dangling != (not tags):
                    continue
            if filters.get("reference") and not any(_ref_match(r, tags) for r in filters["reference"]):
                continue
            if filters.get("label") and not all(_label_has(labels, l) for l in filters["label"]):
                continue
            if filters.get("before") and not rec.created < self.resolve(filters["before"][-1]).created:
                continue
            if filters.get("since") and not rec.created > self.resolve(filters["since"][-1]).created:
                continue
            out.append(rec)
        return out

    # ---- import, tag, remove ------------------------------------------------------------------

    def import_target(self, repo: str, tag: str) -> reference.Reference | None:
        return reference.repo_tag_reference(repo, tag)

    async def spool(self, body: AsyncIterator[bytes]) -> Path:
        """Write a request body to a file on the layer store's filesystem."""
        fd, name = tempfile.mkstemp(prefix="body-", dir=self._spool_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in body:
                    f.write(chunk)
        except BaseException:
            os.unlink(name)
            raise
        return Path(name)

    async def import_image(self, spool: Path, target: reference.Reference | None, changes: list[str],
                           message: str) -> str:
        try:
            container_config = image_config.apply_changes(image_config.empty_container_config(), changes)
            async with self._lock:
                layer = await trio.to_thread.run_sync(self._add_layer, spool)
                config_bytes = image_config.import_config(
                    diff_id=layer.diff_id, created_ns=time.time_ns(), config=container_config,
                    comment=message or "Imported from -")
                image_id = self._record(config_bytes, [target] if target else [])
        finally:
            spool.unlink(missing_ok=True)
        self._events.publish("image", "import", image_id, {"name": str(target or image_id)})
        return image_id

    def _add_layer(self, spool: Path):
        with open(spool, "rb") as f:
            return self._layers.add(f)

    def _record(self, config_bytes: bytes, targets: list[reference.Reference]) -> str:
        image_id = image_config.image_id(config_bytes)
        with self._store.write() as txn:
            if txn.images.get(image_id) is None:
                txn.images.put(image_id, ImageRecord(id=image_id, node=self._node, tenant=self._tenant,
                                                     config_json=config_bytes, created=time.time_ns()))
            for ref in targets:
                txn.tags.put(str(ref), image_id)
        for ref in targets:
            self._events.publish("image", "tag", image_id, {"name": ref.familiar()})
        return image_id

    def tag(self, term: str, repo: str, tag: str) -> None:
        rec = self.resolve(term)
        target = reference.tag_target(repo, tag)
        with self._store.write() as txn:
            txn.tags.put(str(target), rec.id)
        self._events.publish("image", "tag", rec.id, {"name": target.familiar()})

    async def remove(self, term: str, force: bool, prune: bool) -> list[dict]:
        async with self._lock:
            return self._remove(term, force)

    def _users(self, image_id: str) -> list:
        if self._containers is None:
            return []
        return [c for c in self._containers.list() if c.image_id == image_id]

    def _remove(self, term: str, force: bool) -> list[dict]:
        rec = self.resolve(term)
        short = reference.short_id(rec.id)
        by_name = not (rec.id.startswith(term) or rec.id.startswith("sha256:" + term))  # dockerd's rule
        with self._store.read() as txn:
            tag_keys = [k for k, v in txn.tags.items() if v == rec.id]
        users = self._users(rec.id)
        running = [c for c in users if c.state.status == "running"]
        out: list[dict] = []
        if by_name:
            key = str(reference.parse_normalized_named(term).with_default_tag())
            if len(tag_keys) > 1 or (users and not force):
                if len(tag_keys) <= 1:
                    raise Conflict(f'conflict: unable to remove repository reference "{term}" (must force) - '
                                   f"container {users[0].id[:12]} is using its referenced image {short}")
                self._untag(key, rec.id, out)
                return out
            tag_keys = [key]
        else:
            if running:
                raise Conflict(f"conflict: unable to delete {short} (cannot be forced) - image is being used "
                               f"by running container {running[0].id[:12]}")
            if len(tag_keys) > 1 and not force:
                raise Conflict(f"conflict: unable to delete {short} (must be forced) - image is referenced in "
                               "multiple repositories")
            if users and not force:
                raise Conflict(f"conflict: unable to delete {short} (must be forced) - image is being used "
                               f"by stopped container {users[0].id[:12]}")
        for key in tag_keys:
            self._untag(key, rec.id, out)
        if users:
            return out  # forced: untagged, kept while a container still needs its layers
        with self._store.write() as txn:
            txn.images.delete(rec.id)
        out.append({"Deleted": rec.id})
        self._events.publish("image", "delete", rec.id, {"name": rec.id})
        self._drop_unused_layers(self.parsed(rec).diff_ids)
        return out

    def _lookup_name(self, term: str) -> str | None:
        try:
            ref = reference.parse_normalized_named(term).with_default_tag()
        except InvalidParameter:
            return None
        return self._lookup_tag(ref)

    def _untag(self, key: str, image_id: str, out: list[dict]) -> None:
        with self._store.write() as txn:
            txn.tags.delete(key)
        name = reference.familiar_repo_tag(key)
        out.append({"Untagged": name})
        self._events.publish("image", "untag", image_id, {"name": name})

    def _drop_unused_layers(self, diff_ids) -> None:
        with self._store.read() as txn:
            used = {d for r in txn.images.values() for d in image_config.parse_config(r.config_json).diff_ids}
        for diff_id in diff_ids:
            if diff_id not in used:
                self._layers.remove(diff_id)

    # ---- save and load ------------------------------------------------------------------------

    async def save(self, terms: list[str]) -> AsyncIterator[bytes]:
        """Resolve every name now (a JSON 404 for a missing one); the returned iterator streams the tar."""
        wanted: dict[str, archive.ArchiveImage] = {}
        for term in terms:
            rec = self.resolve(term)
            tags = []
            if self._lookup_name(term) == rec.id and not reference.full_id(term):
                tags = [reference.familiar_repo_tag(str(reference.parse_normalized_named(term)
                                                        .with_default_tag()))]
            prev = wanted.get(rec.id)
            wanted[rec.id] = archive.ArchiveImage(
                image_id=rec.id, config_bytes=rec.config_json,
                repo_tags=sorted({*(prev.repo_tags if prev else []), *tags}),
                diff_ids=list(self.parsed(rec).diff_ids))
        fd, name = tempfile.mkstemp(prefix="save-", dir=self._spool_dir)
        os.close(fd)
        path = Path(name)
        images = list(wanted.values())

        def write() -> None:
            with open(path, "wb") as f:
                archive.write_archive(f, images, self._layers)

        try:
            await trio.to_thread.run_sync(write)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        for image in images:
            self._events.publish("image", "save", image.image_id, {"name": image.image_id})
        return _stream_file(path)

    async def load(self, spool: Path) -> list[str]:
        try:
            async with self._lock:
                loaded = await trio.to_thread.run_sync(archive.read_archive, spool, self._layers)
                lines = []
                for image in loaded:
                    targets = [reference.parse_tagged(t).with_default_tag() for t in image.repo_tags]
                    self._record(image.config_bytes, targets)
                    self._events.publish("image", "load", image.image_id, {"name": image.image_id})
                    lines += [f"Loaded image: {t.familiar()}" for t in targets] or \
                             [f"Loaded image ID: {image.image_id}"]
        finally:
            spool.unlink(missing_ok=True)
        return lines


async def _stream_file(path: Path) -> AsyncIterator[bytes]:
    try:
        async with await trio.open_file(path, "rb") as f:
            while chunk := await f.read(_CHUNK):
                yield chunk
    finally:
        path.unlink(missing_ok=True)


def _label_has(labels: dict, item: str) -> bool:
    key, eq, value = item.partition("=")
    return key in labels and (not eq or labels[key] == value)


def _ref_match(pattern: str, tags: list[str]) -> bool:
    import fnmatch

    for tag in tags:
        name = tag.rsplit(":", 1)[0]
        if fnmatch.fnmatchcase(tag, pattern) or fnmatch.fnmatchcase(name, pattern):
            return True
    return False
