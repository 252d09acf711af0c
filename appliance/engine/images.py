"""Images: records and tags in the store, layers in the LayerStore; import, tag, rmi, save, load.

Heavy file work (extracting a layer, writing an archive) runs in a worker thread; every store
transaction stays on the trio thread and is short. One lock serialises the operations that add
or drop layers, so a failed load never removes a layer a concurrent import just started using.

Deleting an image that a stopped container still uses (``rmi -f``) hides it the way dockerd
does (gone from ``images``, ``inspect`` and name or id lookups) but keeps its record and layers
until no container needs them: a marker file ``retired/<hex>`` says the image is deleted. Each
image mutation and startup drop the retired images nobody uses any more.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

import trio

from ..errors import Conflict, InvalidParameter, NotFound
from ..images import archive, reference
from ..images import config as image_config
from ..images.changes import parse_go_duration
from ..images.layers import LayerStore
from ..store import Store
from ..store.records import ImageRecord
from .events import EventLog
from .filters import has_label
from .filesystem.commit import EMPTY_LAYER_DIFF_ID
from .filesystem.commit import child_config as child_image_config

_CHUNK = 1 << 16
_HEX64 = re.compile(r"[a-f0-9]{64}")


class ImageService:
    def __init__(self, store: Store, events: EventLog, layers: LayerStore, node: str, tenant: str,
                 spool_dir: Path, retired_dir: Path | None = None):
        self._store, self._events, self._layers = store, events, layers
        self._node, self._tenant = node, tenant
        self._spool_dir = spool_dir
        self._retired_dir = retired_dir or spool_dir.parent / "retired"
        self._lock = trio.Lock()
        self._containers = None
        self._freed = 0  # bytes of layers removed so far (prune reports its share)
        spool_dir.mkdir(parents=True, exist_ok=True)
        self._retired_dir.mkdir(parents=True, exist_ok=True)
        for leftover in spool_dir.iterdir():  # spools of requests a killed node never finished
            leftover.unlink()
        self._retired = {"sha256:" + p.name for p in self._retired_dir.iterdir() if _HEX64.fullmatch(p.name)}
        layers.recover()

    def set_container_index(self, containers) -> None:
        """rmi must know which containers use an image; containers are built after images."""
        self._containers = containers
        self._collect_retired()

    # ---- lookups ------------------------------------------------------------------------------

    def _ids(self) -> list[str]:
        with self._store.read() as txn:
            return [r.id for r in txn.images.values() if r.id not in self._retired]

    def _lookup_tag(self, ref: reference.Reference) -> str | None:
        with self._store.read() as txn:
            return txn.tags.get(str(ref))

    def resolve(self, term: str) -> ImageRecord:
        image_id = reference.resolve_image(term, self._lookup_tag, self._ids)
        return self.get_by_id(image_id)

    def get_by_id(self, image_id: str) -> ImageRecord:
        """Any stored image, deleted-but-still-used ones included (a container's own image)."""
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

    def _tag_keys(self, image_id: str) -> list[str]:
        with self._store.read() as txn:
            return sorted(k for k, v in txn.tags.items() if v == image_id)

    def tags_of(self, image_id: str) -> list[str]:
        return sorted(reference.familiar_repo_tag(k) for k in self._tag_keys(image_id))

    def list_images(self) -> list[ImageRecord]:
        with self._store.read() as txn:
            recs = [r for r in txn.images.values() if r.id not in self._retired]
        return sorted(recs, key=lambda r: r.created, reverse=True)

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

    def _labels(self, image_id: str) -> dict[str, str]:
        try:
            return dict(self.runtime_config(self.get_by_id(image_id)).get("Labels") or {})
        except NotFound:
            return {}

    def _publish(self, image_id: str, action: str, name: str) -> None:
        """dockerd's LogImageEvent: the image's labels plus `name`."""
        self._events.publish("image", action, image_id, {**self._labels(image_id), "name": name})

    # ---- Docker-shaped views (plain dicts of the image's own JSON vocabulary) ----------------

    def summary(self, rec: ImageRecord, tags: list[str] | None = None) -> dict:
        cfg = self.parsed(rec)
        tags = self.tags_of(rec.id) if tags is None else tags
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

    def list_summaries(self, filters: dict[str, list[str]], show_all: bool) -> list[dict]:
        """GET /images/json as dockerd's ImageService.Images filters it.

        With a `reference` filter, each image lists only its matching tags, and untagged
        images are left out.
        """
        dangling = _bool_filter(filters, "dangling", None)
        before = self._created_of(filters["before"][-1]) if filters.get("before") else None
        since = self._created_of(filters["since"][-1]) if filters.get("since") else None
        until = _timestamp_ns(filters["until"][-1]) if filters.get("until") else None
        out = []
        for rec in self.list_images():
            cfg = self.parsed(rec)
            created = cfg.created_ns or 0
            if before is not None and not created < before:
                continue
            if since is not None and not created > since:
                continue
            if until is not None and not created <= until:
                continue
            labels = (cfg.config or {}).get("Labels") or {}
            if filters.get("label") and not all(has_label(labels, f) for f in filters["label"]):
                continue
            if filters.get("label!") and any(has_label(labels, f) for f in filters["label!"]):
                continue
            tags = self.tags_of(rec.id)
            if filters.get("reference"):
                tags = [t for t in tags if any(_familiar_match(p, t) for p in filters["reference"])]
            if not tags:
                if dangling is False or filters.get("reference"):
                    continue
            elif dangling:
                continue
            out.append(self.summary(rec, tags))
        return out

    def _created_of(self, term: str) -> int:
        return self.parsed(self.resolve(term)).created_ns or 0

    # ---- import, tag, remove ------------------------------------------------------------------

    def import_target(self, repo: str, tag: str) -> reference.Reference | None:
        return reference.repo_tag_reference(repo, tag)

    def import_changes(self, changes: list[str]) -> dict:
        """The container config `--change` lines make (InvalidParameter for a bad line)."""
        return image_config.apply_changes(image_config.empty_container_config(), changes)

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

    async def import_image(self, spool: Path, target: reference.Reference | None, container_config: dict,
                           message: str) -> str:
        try:
            async with self._lock:
                self._collect_retired()
                layer = await trio.to_thread.run_sync(self._add_layer, spool)
                config_bytes = image_config.import_config(
                    diff_id=layer.diff_id, created_ns=time.time_ns(), config=container_config,
                    comment=message or "Imported from -")
                image_id = self._record(config_bytes)
                if target is not None:
                    self._set_tag(target, image_id, publish=True)
        finally:
            spool.unlink(missing_ok=True)
        self._publish(image_id, "import", image_id)
        return image_id

    async def commit(self, *, parent_id: str, write_layer: Callable[[BinaryIO], None], config: dict,
                     container_config: dict, container_id: str, author: str, comment: str,
                     target: reference.Reference | None) -> str:
        """docker commit: the parent image plus one layer, the tar ``write_layer`` writes.

        The parent's layers are shared, not copied; an empty diff adds no layer, only a
        history row (dockerd's NewChildImage). Called with the container locked."""
        parent = self.get_by_id(parent_id)
        async with self._lock:
            self._collect_retired()
            fd, name = tempfile.mkstemp(prefix="commit-", dir=self._spool_dir)
            spool = Path(name)

            def build():
                with os.fdopen(fd, "w+b") as f:
                    write_layer(f)
                    f.flush()
                    f.seek(0)
                    return self._layers.add_new(f)

            try:
                layer, added = await trio.to_thread.run_sync(build)
            finally:
                spool.unlink(missing_ok=True)
            config_bytes = child_image_config(
                self.parsed(parent).raw, config=config, container_config=container_config,
                container_id=container_id, author=author, comment=comment, diff_id=layer.diff_id,
                created_ns=time.time_ns())
            image_id = image_config.image_id(config_bytes)
            with self._store.write() as txn:
                if txn.images.get(image_id) is None:
                    txn.images.put(image_id, ImageRecord(id=image_id, node=self._node, tenant=self._tenant,
                                                         config_json=config_bytes, created=time.time_ns(),
                                                         parent=parent.id))
            self._unretire(image_id)
            if added and layer.diff_id == EMPTY_LAYER_DIFF_ID:
                self._drop_unused_layers([layer.diff_id])
            if target is not None:
                self._set_tag(target, image_id, publish=True)
        return image_id

    def _add_layer(self, spool: Path):
        with open(spool, "rb") as f:
            return self._layers.add(f)

    def _record(self, config_bytes: bytes) -> str:
        image_id = image_config.image_id(config_bytes)
        with self._store.write() as txn:
            if txn.images.get(image_id) is None:
                txn.images.put(image_id, ImageRecord(id=image_id, node=self._node, tenant=self._tenant,
                                                     config_json=config_bytes, created=time.time_ns()))
        self._unretire(image_id)
        return image_id

    def _set_tag(self, ref: reference.Reference, image_id: str, publish: bool) -> str | None:
        """Point ref at image_id; returns the image it pointed at before (None if new)."""
        with self._store.write() as txn:
            previous = txn.tags.get(str(ref))
            txn.tags.put(str(ref), image_id)
        if publish:
            self._publish(image_id, "tag", ref.familiar())
        return previous

    def tag(self, term: str, repo: str, tag: str) -> None:
        target = reference.tag_target(repo, tag)  # dockerd checks the new name before the image
        rec = self.resolve(term)
        self._set_tag(target, rec.id, publish=True)

    async def remove(self, term: str, force: bool, prune: bool) -> list[dict]:
        async with self._lock:
            out = self._remove(term, force)
            self._collect_retired()
            return out

    async def prune(self, filters: dict[str, list[str]]) -> tuple[list[dict], int]:
        """dockerd's ImagesPrune: dangling images (all unused ones with dangling=false) that no
        container uses; conflicts skip an image quietly. Returns (deleted records, bytes freed)."""
        dangling_only = _bool_filter(filters, "dangling", True)
        until = _timestamp_ns(filters["until"][-1]) if filters.get("until") else None
        out: list[dict] = []
        reclaimed = 0
        async with self._lock:
            self._collect_retired()
            for rec in self.list_images():
                cfg = self.parsed(rec)
                labels = (cfg.config or {}).get("Labels") or {}
                if until is not None and (cfg.created_ns or 0) > until:
                    continue
                if not all(has_label(labels, f) for f in filters.get("label", [])):
                    continue
                if any(has_label(labels, f) for f in filters.get("label!", [])):
                    continue
                keys = self._tag_keys(rec.id)
                if keys and dangling_only:
                    continue
                freed = self._freed
                for term in [reference.familiar_repo_tag(k) for k in keys] or [rec.id[7:]]:
                    try:
                        out += self._remove(term, force=False)
                    except (Conflict, NotFound):
                        continue
                reclaimed += self._freed - freed
        self._events.publish("image", "prune", "", {"reclaimed": str(reclaimed)})
        return out, reclaimed

    def _users(self, image_id: str) -> list:
        if self._containers is None:
            return []
        return [c for c in self._containers.list() if c.image_id == image_id]

    def _remove(self, term: str, force: bool) -> list[dict]:
        """dockerd's ImageDelete (daemon/images/image_delete.go), for tag references."""
        rec = self.resolve(term)
        image_id = rec.id
        short = reference.short_id(image_id)
        out: list[dict] = []
        if not _is_id_prefix(image_id, term):
            # A name: remove that reference; delete the image only if it was the last one.
            users = self._users(image_id)
            if not force and len(self._tag_keys(image_id)) == 1 and users:
                raise Conflict(f'conflict: unable to remove repository reference "{term}" (must force) - '
                               f"container {users[0].id[:12]} is using its referenced image {short}")
            key = str(reference.parse_normalized_named(term).with_default_tag())
            self._untag(key, image_id, out)
            if self._tag_keys(image_id):
                return out
            self._delete(image_id, out, force, quiet=True)
            return out
        if len(self._tag_keys(image_id)) == 1:  # by id, one tag: untag it first if nothing objects
            conflict = self._conflict(image_id, soft=not force, references=False)
            if conflict is not None:
                raise conflict
            for key in self._tag_keys(image_id):
                self._untag(key, image_id, out)
        self._delete(image_id, out, force, quiet=False)
        return out

    def _conflict(self, image_id: str, soft: bool, references: bool) -> _DeleteConflict | None:
        """checkImageDeleteConflict: running users always; tags and stopped users when soft."""
        users = self._users(image_id)
        running = [c for c in users if c.state.status == "running"]
        if running:
            return _DeleteConflict(image_id, hard=True, used=True,
                                   reason=f"image is being used by running container {running[0].id[:12]}")
        if soft and references and self._tag_keys(image_id):
            return _DeleteConflict(image_id, hard=False, used=False,
                                   reason="image is referenced in multiple repositories")
        if soft and users:
            return _DeleteConflict(image_id, hard=False, used=True,
                                   reason=f"image is being used by stopped container {users[0].id[:12]}")
        return None

    def _delete(self, image_id: str, out: list[dict], force: bool, quiet: bool) -> None:
        """imageDeleteHelper: delete unless a conflict objects; quiet ones end silently."""
        conflict = self._conflict(image_id, soft=not force, references=True)
        if conflict is not None:
            if quiet and (self._tag_keys(image_id) or conflict.used):
                return
            raise conflict
        for key in self._tag_keys(image_id):
            self._untag(key, image_id, out)
        labels = self._labels(image_id)
        if self._users(image_id):
            self._retire(image_id)  # forced: a stopped container still runs from these layers
        else:
            rec = self.get_by_id(image_id)
            with self._store.write() as txn:
                txn.images.delete(image_id)
            self._drop_unused_layers(self.parsed(rec).diff_ids)
        out.append({"Deleted": image_id})
        self._events.publish("image", "delete", image_id, {**labels, "name": image_id})

    def _lookup_name(self, term: str) -> str | None:
        try:
            ref = reference.parse_normalized_named(term).with_default_tag()
        except InvalidParameter:
            return None
        return self._lookup_tag(ref)

    def _untag(self, key: str, image_id: str, out: list[dict]) -> None:
        with self._store.write() as txn:
            txn.tags.delete(key)
        out.append({"Untagged": reference.familiar_repo_tag(key)})
        self._publish(image_id, "untag", image_id)

    def _drop_unused_layers(self, diff_ids) -> None:
        with self._store.read() as txn:
            used = {d for r in txn.images.values() for d in image_config.parse_config(r.config_json).diff_ids}
        for diff_id in diff_ids:
            if diff_id not in used and self._layers.has(diff_id):
                self._freed += self._layers.size(diff_id)
                self._layers.remove(diff_id)

    # ---- deleted images that containers still use ---------------------------------------------

    def _retire(self, image_id: str) -> None:
        (self._retired_dir / image_id[7:]).touch()
        self._retired.add(image_id)

    def _unretire(self, image_id: str) -> None:
        if image_id in self._retired:
            (self._retired_dir / image_id[7:]).unlink(missing_ok=True)
            self._retired.discard(image_id)

    def _collect_retired(self) -> None:
        """Drop deleted images no container uses any more (their records, markers and layers)."""
        if self._containers is None:
            return
        for image_id in sorted(self._retired):
            if self._users(image_id):
                continue
            with self._store.write() as txn:
                rec = txn.images.get(image_id)
                if rec is not None:
                    txn.images.delete(image_id)
            self._retired.discard(image_id)
            (self._retired_dir / image_id[7:]).unlink(missing_ok=True)
            if rec is not None:
                self._drop_unused_layers(self.parsed(rec).diff_ids)

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
            self._publish(image.image_id, "save", image.image_id)
        return _stream_file(path)

    async def load(self, spool: Path) -> list[str]:
        """dockerd's tarexport Load: all layers first, then the images and their tags."""
        try:
            async with self._lock:
                self._collect_retired()
                loaded = await trio.to_thread.run_sync(archive.read_archive, spool, self._layers)
                lines: list[str] = []
                id_lines: list[str] = []
                tagged = 0
                for image in loaded:
                    targets = [reference.parse_tagged(t).with_default_tag() for t in image.repo_tags]
                    image_id = self._record(image.config_bytes)
                    id_lines.append(f"Loaded image ID: {image_id}")
                    tagged = 0
                    for target in targets:
                        previous = self._set_tag(target, image_id, publish=False)
                        if previous is not None and previous != image_id:
                            lines.append(f"The image {target.familiar()} already exists, renaming the old one "
                                         f"with ID {previous} to empty string")
                        lines.append(f"Loaded image: {target.familiar()}")
                        tagged += 1
                    self._publish(image_id, "load", image_id)
                if not tagged:  # dockerd's quirk: decided by the last image of the archive
                    lines += id_lines
        finally:
            spool.unlink(missing_ok=True)
        return lines


class _DeleteConflict(Conflict):
    """dockerd's imageDeleteConflict: hard ones cannot be forced; used = a container uses the image."""

    def __init__(self, image_id: str, hard: bool, used: bool, reason: str):
        how = "cannot be forced" if hard else "must be forced"
        super().__init__(f"conflict: unable to delete {reference.short_id(image_id)} ({how}) - {reason}")
        self.hard, self.used = hard, used


async def _stream_file(path: Path) -> AsyncIterator[bytes]:
    try:
        async with await trio.open_file(path, "rb") as f:
            while chunk := await f.read(_CHUNK):
                yield chunk
    finally:
        path.unlink(missing_ok=True)


def _is_id_prefix(image_id: str, term: str) -> bool:
    """dockerd's isImageIDPrefix: term starts "sha256:<hex>" or the bare hex."""
    return image_id.startswith(term) or image_id.split(":", 1)[-1].startswith(term)


def _bool_filter(filters: dict[str, list[str]], key: str, default: bool | None) -> bool | None:
    """filters.Args.GetBoolOrDefault."""
    if not filters.get(key):
        return default
    value = filters[key][-1].lower()
    if value not in ("true", "false", "1", "0"):
        raise InvalidParameter(f"invalid filter '{key}={filters[key][-1]}'")
    return value in ("true", "1")


def _familiar_match(pattern: str, tag: str) -> bool:
    """distribution/reference FamiliarMatch: the pattern against "name:tag", then "name".

    Go's path.Match: `*` and `?` never match "/".
    """
    regex = _path_match_regex(pattern)
    name = tag.rsplit(":", 1)[0] if ":" in tag.rsplit("/", 1)[-1] else tag
    return regex.fullmatch(tag) is not None or regex.fullmatch(name) is not None


def _path_match_regex(pattern: str) -> re.Pattern:
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise InvalidParameter("syntax error in pattern")
            out.append("[" + pattern[i + 1:end].replace("\\", "\\\\") + "]")
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out))


def _timestamp_ns(value: str) -> int:
    """A filter time as dockerd's GetTimestamp reads it: unix seconds, RFC 3339 or a duration ago."""
    try:
        return int(float(value) * 1_000_000_000)
    except ValueError:
        pass
    try:
        return image_config.parse_rfc3339(value)
    except InvalidParameter:
        pass
    try:
        return time.time_ns() - parse_go_duration(value)
    except InvalidParameter:
        raise InvalidParameter(f"invalid filter 'until={value}'") from None
