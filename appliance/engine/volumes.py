"""Local volumes: a directory per volume under the node's data root, owned by container root.

Semantics follow dockerd's VolumesService and local driver: a volume created without a name is
anonymous (label ``com.docker.volume.anonymous``), which is what ``prune`` removes by default;
driver options are checked the way the local driver checks them and kept on the record.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import time
from pathlib import Path

import trio

from ..errors import Conflict, InvalidParameter, NotFound
from ..store import Store
from ..store.records import VolumeRecord
from .events import EventLog
from .filters import labels_match, value_matches
from .naming import check_volume_name, new_id

ANONYMOUS_LABEL = "com.docker.volume.anonymous"

# volume/local: the options the local driver knows, and which need which.
_VALID_OPTS = ("type", "o", "device", "size")
_MANDATORY_OPTS = {"device": ("type",), "type": ("device",), "o": ("device", "type")}

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class VolumeService:
    def __init__(self, store: Store, events: EventLog, root: Path, node: str, tenant: str, owner_uid: int):
        self._store, self._events, self._root = store, events, root
        self._node, self._tenant, self._owner = node, tenant, owner_uid
        root.mkdir(parents=True, exist_ok=True)

    def create(self, name: str | None, labels: dict[str, str] | None = None,
               options: dict[str, str] | None = None, anonymous: bool = False) -> VolumeRecord:
        """Idempotent for an existing name, as dockerd's local driver is. No name: anonymous."""
        if name:
            if len(name) == 1:
                raise InvalidParameter(f"create {name}: volume name is too short, names should be at least "
                                       "two alphanumeric characters")
            name = check_volume_name(name)
        else:
            name, anonymous = new_id(), True
        labels = dict(labels or {})
        if anonymous:
            labels.setdefault(ANONYMOUS_LABEL, "")
        options = dict(options or {})
        _check_options(name, options)
        with self._store.read() as txn:
            existing = txn.volumes.get(name)
        if existing:
            return existing
        data = self._root / name / "_data"
        data.mkdir(parents=True, exist_ok=True)
        # Container root is the user-namespace base uid: it must own a fresh volume to write it.
        os.chown(data, self._owner, self._owner)
        os.chmod(data, 0o755)
        rec = VolumeRecord(name=name, node=self._node, tenant=self._tenant, created=time.time_ns(),
                           mountpoint=str(data), labels=labels, options=options, anonymous=anonymous)
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

    def labels(self, rec: VolumeRecord) -> dict[str, str]:
        """The volume's labels; anonymous ones carry dockerd's anonymous label."""
        if rec.anonymous and ANONYMOUS_LABEL not in rec.labels:
            return {**rec.labels, ANONYMOUS_LABEL: ""}
        return dict(rec.labels)

    def users(self, name: str) -> list[str]:
        with self._store.read() as txn:
            return [c.id for c in txn.containers.values() if any(m.name == name for m in c.mounts)]

    def filter(self, filters: dict[str, list[str]]) -> list[VolumeRecord]:
        """GET /volumes filters: name (regexp search), driver, label, dangling."""
        dangling = None
        if filters.get("dangling"):
            dangling = _parse_bool(filters["dangling"], "dangling")
        out = []
        for rec in sorted(self.list(), key=lambda r: r.name):
            if filters.get("name") and not any(value_matches(n, rec.name) for n in filters["name"]):
                continue
            if filters.get("driver") and rec.driver not in filters["driver"]:
                continue
            if not labels_match(self.labels(rec), filters):
                continue
            if dangling is not None and dangling == bool(self.users(rec.name)):
                continue
            out.append(rec)
        return out

    def remove(self, name: str, force: bool = False) -> None:
        """force only forgives a missing volume (dockerd's PurgeOnError); in use is still 409."""
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

    def prune(self, filters: dict[str, list[str]]) -> tuple[list[str], int]:
        """Unused volumes without driver options; anonymous ones only unless all=true (dockerd 23+)."""
        filters = {k: list(v) for k, v in filters.items()}
        if not (filters.get("all") and _parse_bool(filters["all"], "all")):
            filters.setdefault("label", []).append(ANONYMOUS_LABEL)
        removed, reclaimed = [], 0
        for rec in sorted(self.list(), key=lambda r: r.name):
            if rec.options or not labels_match(self.labels(rec), filters) or self.users(rec.name):
                continue
            size = _du(Path(rec.mountpoint))
            self.remove(rec.name)
            removed.append(rec.name)
            reclaimed += size
        self._events.publish("volume", "prune", "", {"reclaimed": str(reclaimed)})
        return removed, reclaimed

    def _get_or_none(self, name: str) -> VolumeRecord | None:
        with self._store.read() as txn:
            return txn.volumes.get(name)

    # ---- copy-up --------------------------------------------------------------------------------

    async def populate(self, name: str, rootfs: Path, destination: str) -> bool:
        """dockerd's copy-up: an empty volume gets what the image has at its mount point.

        Call at container start, once the rootfs is assembled and before the container runs,
        for each volume mount without `nocopy`. Owners, modes and times are kept (they are
        already the container's shifted ids); symlinks are copied, never followed. Returns
        whether anything was copied.
        """
        data = Path(self.get(name).mountpoint)
        return await trio.to_thread.run_sync(_populate, data, Path(rootfs), destination)


def _check_options(name: str, options: dict[str, str]) -> None:
    """The local driver's validateOpts, wrapped as dockerd wraps it ("create NAME: ...")."""
    for key in options:
        if key not in _VALID_OPTS:
            raise InvalidParameter(f'create {name}: invalid option: "{key}"')
    if "size" in options and options["size"].strip() not in ("0", "0b", "0B"):
        raise InvalidParameter(f"create {name}: quota size requested but no quota support")
    for key, needs in _MANDATORY_OPTS.items():
        if key in options:
            for need in needs:
                if need not in options:
                    raise InvalidParameter(f'create {name}: missing required option: "{need}"')


def _parse_bool(values: list[str], key: str) -> bool:
    value = values[-1].lower()
    if value in ("1", "t", "true"):
        return True
    if value in ("0", "f", "false"):
        return False
    raise InvalidParameter(f"invalid filter '{key}={values[-1]}'")


def _du(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


# ---- copy-up helpers (sync; run in a worker thread) ---------------------------------------------


def _resolve_in_scope(root: Path, path: str) -> Path | None:
    """``path`` inside ``root`` with symlinks followed but never out of root (moby's
    FollowSymlinkInScope); None if it does not exist or a link loop is found."""
    todo = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = root.joinpath(*done, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 255:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        done.append(part)
    return root.joinpath(*done)


def _populate(data: Path, rootfs: Path, destination: str) -> bool:
    src = _resolve_in_scope(rootfs, destination)
    if src is None or not src.is_dir() or src.is_symlink():
        return False
    dst_fd = os.open(data, _O_DIR)
    try:
        if os.listdir(dst_fd):
            return False  # dockerd copies into empty volumes only
        _copy_dir(src, dst_fd)
        _copy_attrs(dst_fd, os.lstat(src))
    finally:
        os.close(dst_fd)
    return True


def _copy_dir(src: Path, dst_fd: int) -> None:
    with os.scandir(src) as entries:
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            name = entry.name
            try:
                if stat.S_ISDIR(st.st_mode):
                    os.mkdir(name, 0o700, dir_fd=dst_fd)
                    fd = os.open(name, _O_DIR, dir_fd=dst_fd)
                    try:
                        _copy_dir(Path(entry.path), fd)
                        _copy_attrs(fd, st)
                    finally:
                        os.close(fd)
                elif stat.S_ISREG(st.st_mode):
                    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 0o600, dir_fd=dst_fd)
                    try:
                        with open(entry.path, "rb", buffering=0) as f:
                            while chunk := f.read(1 << 20):
                                view = memoryview(chunk)
                                while view:
                                    view = view[os.write(fd, view):]
                        _copy_attrs(fd, st)
                    finally:
                        os.close(fd)
                elif stat.S_ISLNK(st.st_mode):
                    os.symlink(os.readlink(entry.path), name, dir_fd=dst_fd)
                    os.chown(name, st.st_uid, st.st_gid, dir_fd=dst_fd, follow_symlinks=False)
                    os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_fd, follow_symlinks=False)
                elif stat.S_ISFIFO(st.st_mode):
                    os.mkfifo(name, 0o600, dir_fd=dst_fd)
                    os.chown(name, st.st_uid, st.st_gid, dir_fd=dst_fd, follow_symlinks=False)
                    os.chmod(name, stat.S_IMODE(st.st_mode), dir_fd=dst_fd)
                # sockets and device nodes are not copied
            except FileExistsError:
                continue  # the volume gained this entry meanwhile: theirs wins
            except OSError as exc:
                if exc.errno not in (errno.ENOENT,):  # vanished from the source: skip it
                    raise


def _copy_attrs(fd: int, st: os.stat_result) -> None:
    """Owner first (chown clears set-id bits), then mode and times."""
    os.fchown(fd, st.st_uid, st.st_gid)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
