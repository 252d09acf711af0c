"""The container filesystem operations: cp (stat, archive, extract), export, diff, commit.

Each runs inside ``ContainerService.mounted_rootfs``: the container's lifecycle lock is
held (it cannot start, stop or be removed meanwhile) and a stopped container's overlay is
mounted for the duration, so a running container is read and written through the very
mount it uses (writes land in its upper dir). File work runs in worker threads on a
RootScope, which keeps every path inside the container (see scope.py). A streamed archive
keeps the lock until the client has read it all, as dockerd does.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import trio

from ...errors import ApplianceError, Conflict, InvalidParameter, NotFound
from ...images import config as image_config
from ...runtime.users import resolve_user
from ...store.records import ContainerRecord
from . import commit as commit_config
from . import paths
from .changes import Change, upper_changes
from .extract import ExtractOptions, extract
from .idmap import IdShift
from .scope import Mount, RootScope
from .tarstream import END_OF_ARCHIVE, TarWriter, batched

log = logging.getLogger(__name__)

_O_READ_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class PathStat:
    """dockerd's ContainerPathStat (X-Docker-Container-Path-Stat); mode is a Go FileMode."""

    name: str
    size: int
    mode: int
    mtime_ns: int
    link_target: str


class FilesystemService:
    """``id_shift``: container root's host id and the range size (the runtime's IdMap;
    ``IdShift(0)`` without user namespaces). Without it, the owner of the container's upper
    dir is taken, which prepare_rootfs sets at every mount; see ``_ids``."""

    def __init__(self, containers, images, events, *, id_shift: IdShift | None = None, networks=None):
        self._containers, self._images, self._events = containers, images, events
        self._id_shift = id_shift
        self._networks = networks  # its /etc/hosts, hostname, resolv.conf are file bind mounts

    # ---- docker cp -------------------------------------------------------------------

    async def stat(self, ref: str, path: str) -> PathStat:
        """HEAD /containers/{ref}/archive: the entry at ``path`` (a final symlink not followed)."""
        async with self._containers.mounted_rootfs(ref) as (rec, rootfs):
            return await trio.to_thread.run_sync(self._stat_sync, ref, rec, rootfs, path)

    def _stat_sync(self, ref: str, rec: ContainerRecord, rootfs: Path, path: str) -> PathStat:
        with self._scope(rec, rootfs) as scope:
            return _stat_entry(scope, ref, path)[0]

    async def archive(self, ref: str, path: str) -> tuple[PathStat, AsyncIterator[bytes]]:
        """GET /containers/{ref}/archive: the entry's stat, and its tar to stream.

        Errors (no container, no such path) are raised here, before any byte is sent. The
        stream takes the container (lock and, if stopped, mount) only when it is first
        iterated and gives it back when exhausted or closed, so the lock is always released
        by the task that took it; an unread response holds nothing."""
        st = await self.stat(ref, path)
        return st, self._archive_stream(ref, path)

    async def _archive_stream(self, ref: str, path: str) -> AsyncIterator[bytes]:
        async with self._containers.mounted_rootfs(ref) as (rec, rootfs):
            scope = await trio.to_thread.run_sync(self._scope, rec, rootfs)
            try:
                pieces = await trio.to_thread.run_sync(self._archive_sync, ref, rec, scope, path)
                self._publish(rec, "archive-path")
                async with contextlib.aclosing(_in_threads(batched(pieces))) as chunks:
                    async for chunk in chunks:
                        yield chunk
            finally:
                scope.close()

    def _archive_sync(self, ref: str, rec: ContainerRecord, scope: RootScope, path: str) -> Iterator[bytes]:
        st, entry, abs_path = _stat_entry(scope, ref, path)
        writer = TarWriter(self._ids(rec.id), mount_fd=scope.mount_fd, file_mount=scope.file_mount)
        rebase = paths.base(abs_path)  # entries start with the name asked for, not the resolved one

        def pieces() -> Iterator[bytes]:
            if st.mode & paths.MODE_DIR:
                prefix = "" if rebase == "/" else rebase
                pfd = scope.open_dir(entry)
                try:
                    fd = os.open(".", _O_READ_DIR, dir_fd=pfd)
                finally:
                    os.close(pfd)
                try:
                    yield from writer.tree(fd, root_name=prefix + "/", prefix=prefix + "/", canonical=entry)
                finally:
                    os.close(fd)
            else:
                pfd, name = scope.open_parent(entry)
                try:
                    yield from writer.entry(pfd, name, os.lstat(name, dir_fd=pfd), rebase)
                finally:
                    os.close(pfd)
            yield END_OF_ARCHIVE

        return pieces()

    async def extract(self, ref: str, path: str, body: AsyncIterator[bytes], *,
                      no_overwrite_dir_non_dir: bool, copy_uid_gid: bool) -> None:
        """PUT /containers/{ref}/archive: unpack the tar in ``body`` into directory ``path``.

        The body is spooled first (the image store's spool dir, emptied at startup), so the
        container is locked only while the tar is checked and unpacked."""
        self._containers.get(ref)
        spool = await self._images.spool(body)
        try:
            async with self._containers.mounted_rootfs(ref) as (rec, rootfs):
                await trio.to_thread.run_sync(self._extract_sync, ref, rec, rootfs, path, spool,
                                              no_overwrite_dir_non_dir, copy_uid_gid)
                self._publish(rec, "extract-to-dir")
        finally:
            spool.unlink(missing_ok=True)

    def _extract_sync(self, ref: str, rec: ContainerRecord, rootfs: Path, path: str, spool: Path,
                      no_overwrite: bool, copy_uid_gid: bool) -> None:
        with self._scope(rec, rootfs) as scope:
            abs_path = paths.container_abs(path)
            try:
                dest = scope.resolve(abs_path)  # the final element too: a symlink to a directory works
                st = scope.lstat(dest)
            except OSError as exc:
                raise _lookup_error(exc, ref, path) from None
            if not paths.go_file_mode(st.st_mode) & paths.MODE_DIR:
                raise InvalidParameter("extraction point is not a directory")
            mount = scope.mount_of(dest)
            if mount is not None and not mount[1]:
                raise InvalidParameter("mounted volume is marked read-only")
            if mount is None and rec.host_config.readonly_rootfs:
                raise InvalidParameter("container rootfs is marked read-only")
            chown = None
            if copy_uid_gid and rec.config.user:
                uid, gid, _ = resolve_user(rec.config.user, _text(scope.read_file("/etc/passwd")),
                                           _text(scope.read_file("/etc/group")))
                chown = (uid, gid)
            opts = ExtractOptions(ids=self._ids(rec.id), no_overwrite_dir_non_dir=no_overwrite, chown=chown,
                                  readonly_rootfs=rec.host_config.readonly_rootfs)
            extract(scope, dest, spool, opts)

    # ---- docker export, diff, commit -------------------------------------------------

    async def export(self, ref: str) -> AsyncIterator[bytes]:
        """GET /containers/{ref}/export: the whole flattened filesystem (volumes excluded).

        Checked now; the returned stream takes the container when first iterated."""
        rec = self._containers.get(ref)
        _check_exportable(rec)
        return self._export_stream(ref)

    async def _export_stream(self, ref: str) -> AsyncIterator[bytes]:
        async with self._containers.mounted_rootfs(ref) as (rec, rootfs):
            _check_exportable(rec)
            fd = await trio.to_thread.run_sync(os.open, rootfs, _O_READ_DIR | os.O_NOFOLLOW)
            try:
                self._publish(rec, "export")
                writer = TarWriter(self._ids(rec.id))

                def pieces() -> Iterator[bytes]:
                    yield from writer.tree(fd, root_name=None, prefix="")
                    yield END_OF_ARCHIVE

                async with contextlib.aclosing(_in_threads(batched(pieces()))) as chunks:
                    async for chunk in chunks:
                        yield chunk
            finally:
                os.close(fd)

    async def changes(self, ref: str) -> list[Change]:
        """GET /containers/{ref}/changes: A/C/D from the container's upper dir."""
        async with self._containers.mounted_rootfs(ref) as (rec, _):
            lowers = self._images.lower_dirs(self._images.get_by_id(rec.image_id))
            upper = self._containers.upper_dir(rec.id)
            return await trio.to_thread.run_sync(upper_changes, upper, lowers)

    async def commit(self, ref: str, *, repo: str, tag: str, author: str, comment: str,
                     changes: list[str], config: dict | None, pause: bool) -> str:
        """POST /commit: a new image from the container's writable layer.

        With ``pause`` a running container is frozen while its layer is read and thawed after,
        as dockerd does (a failed pause is ignored, as dockerd ignores it). The layer is read
        under the container's lock, so it cannot start, stop or go away meanwhile."""
        target = self._images.import_target(repo, tag)  # dockerd checks the name first
        rec = self._containers.get(ref)
        if rec.state.status == "removing":
            raise Conflict(f"You cannot commit container {rec.id} which is being removed")
        if rec.state.status == "dead":
            raise Conflict(f"You cannot commit container {rec.id} which is Dead")
        own = commit_config.container_config(rec.config)
        new = image_config.apply_changes(config if config is not None else own, changes)
        new = commit_config.merge(new, own)
        paused = False
        if pause and rec.state.status == "running" and hasattr(self._containers, "pause"):
            try:
                await self._containers.pause(rec.id)
                paused = True
            except ApplianceError as exc:
                log.info("commit of %s goes on without pausing it: %s", rec.id, exc.message)
        try:
            image_id = await self._commit_locked(rec.id, new, own, author, comment, target)
        finally:
            if paused:
                with trio.CancelScope(shield=True):
                    try:
                        await self._containers.unpause(rec.id)
                    except ApplianceError as exc:
                        log.warning("could not unpause %s after commit: %s", rec.id, exc.message)
        return image_id

    async def _commit_locked(self, cid: str, new: dict, own: dict, author: str, comment: str, target) -> str:
        async with self._containers.mounted_rootfs(cid) as (rec, _):
            ids = self._ids(rec.id)
            upper = self._containers.upper_dir(rec.id)

            def write_layer(f) -> None:
                fd = os.open(upper, _O_READ_DIR | os.O_NOFOLLOW)
                try:
                    for piece in batched(TarWriter(ids, whiteouts=True).tree(fd, root_name=None, prefix="")):
                        f.write(piece)
                    f.write(END_OF_ARCHIVE)
                finally:
                    os.close(fd)

            image_id = await self._images.commit(
                parent_id=rec.image_id, write_layer=write_layer, config=new, container_config=own,
                container_id=rec.id, author=author, comment=comment, target=target)
        self._publish(rec, "commit", comment=comment, imageID=image_id,
                      imageRef=target.familiar() if target is not None else "")
        return image_id

    # ---- helpers ---------------------------------------------------------------------

    def _scope(self, rec: ContainerRecord, rootfs: Path) -> RootScope:
        mounts = [Mount(m.destination, Path(m.source), m.rw) for m in rec.mounts
                  if m.type in ("volume", "bind") and m.source]
        if self._networks is not None:  # what the container sees there, not the empty mount target
            taken = {m.destination for m in mounts}
            mounts += [Mount(dest, Path(src), True) for dest, src in self._networks.config_files(rec.id).items()
                       if dest not in taken]
        return RootScope(rootfs, mounts)

    def _ids(self, cid: str) -> IdShift:
        """The id shift given at construction; else the owner of the container's writable
        layer root, which prepare_rootfs chowns to container root at every mount (0 without a
        user namespace). A running container that chowns its own "/" misleads the fallback
        (ids then shift too far: files show as nobody inside; never a host id below its
        range), which is why the composition root should pass the shift."""
        if self._id_shift is not None:
            return self._id_shift
        return IdShift(os.stat(self._containers.upper_dir(cid)).st_uid)

    def _publish(self, rec: ContainerRecord, action: str, **extra: str) -> None:
        attrs = {**rec.config.labels, "image": rec.config.image, "name": rec.name, **extra}
        self._events.publish("container", action, rec.id, attrs)


def _stat_entry(scope: RootScope, ref: str, path: str) -> tuple[PathStat, str, str]:
    """dockerd's ResolvePath + StatPath: (stat, canonical entry path, absolute path asked)."""
    abs_path = paths.container_abs(path)
    head, tail = paths.split(abs_path)
    try:
        parent = scope.resolve(head)
        entry = parent if tail in ("", ".") else paths.join(parent, tail)
        st = scope.lstat(entry)
        if tail in ("", ".") and not paths.go_file_mode(st.st_mode) & paths.MODE_DIR:
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        link_target = ""
        if paths.go_file_mode(st.st_mode) & paths.MODE_SYMLINK:
            link_target = scope.resolve(abs_path)
    except OSError as exc:
        raise _lookup_error(exc, ref, path) from None
    stat = PathStat(name=paths.base(abs_path), size=st.st_size, mode=paths.go_file_mode(st.st_mode),
                    mtime_ns=st.st_mtime_ns, link_target=link_target)
    return stat, entry, abs_path


def _lookup_error(exc: OSError, ref: str, path: str) -> Exception:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return NotFound(f"Could not find the file {path} in container {ref}")
    if exc.errno == errno.ELOOP:
        return InvalidParameter(exc.strerror if exc.strerror and "EvalSymlinks" in exc.strerror
                                else f"EvalSymlinks: too many links in {path}")
    return InvalidParameter(f"{path}: {os.strerror(exc.errno) if exc.errno else exc}")


def _text(data: bytes | None) -> str | None:
    return data.decode("utf-8", "replace") if data is not None else None


def _check_exportable(rec: ContainerRecord) -> None:
    if rec.state.status == "removing":
        raise Conflict(f"You cannot export container {rec.id} which is being removed")
    if rec.state.status == "dead":
        raise Conflict(f"You cannot export container {rec.id} which is Dead")


async def _in_threads(pieces: Iterator[bytes]) -> AsyncIterator[bytes]:
    """A sync generator's items, each produced in a worker thread; closed at the end."""
    try:
        while True:
            chunk = await trio.to_thread.run_sync(next, pieces, None)
            if chunk is None:
                return
            yield chunk
    finally:
        pieces.close()
