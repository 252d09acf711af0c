"""Turn -v / --mount / --tmpfs / image VOLUMEs into resolved mount points (pure apart from volumes)."""

from __future__ import annotations

import os
import posixpath

from ..errors import InvalidParameter
from ..store.records import HostConfig, MountPoint
from .naming import check_volume_name

_BIND_MODES = {"ro", "rw", "z", "Z", "nocopy", "rprivate", "private", "rshared", "shared", "rslave",
               "slave", "consistent", "cached", "delegated"}


def _check_target(target: str, kind: str) -> str:
    if not target:
        raise InvalidParameter(f'invalid mount config for type "{kind}": field Target must not be empty')
    if not target.startswith("/"):
        raise InvalidParameter(
            f"invalid mount config for type \"{kind}\": invalid mount path: '{target}' mount path must be absolute")
    if posixpath.normpath(target) == "/":
        raise InvalidParameter("invalid specification: destination can't be '/'")
    return posixpath.normpath(target)


def parse_bind(spec: str) -> MountPoint:
    """One `-v SRC:DST[:MODE]` (or `-v DST` for an anonymous volume)."""
    parts = spec.split(":")
    if len(parts) == 1:
        return MountPoint(type="volume", destination=_check_target(parts[0], "volume"))
    if len(parts) > 3 or not parts[0] or not parts[1]:
        raise InvalidParameter(f"invalid volume specification: '{spec}'")
    src, dst = parts[0], parts[1]
    modes = parts[2].split(",") if len(parts) == 3 else []
    if any(m not in _BIND_MODES for m in modes):
        raise InvalidParameter(f"invalid mode: {parts[2]}")
    rw = "ro" not in modes
    if src.startswith("/"):
        return MountPoint(type="bind", source=posixpath.normpath(src), destination=_check_target(dst, "bind"),
                          rw=rw, mode=",".join(modes))
    return MountPoint(type="volume", name=check_volume_name(src), destination=_check_target(dst, "volume"),
                      rw=rw, mode=",".join(modes) or "z")


def resolve(host: HostConfig, image_volumes: list[str], config_volumes: list[str]) -> list[MountPoint]:
    """All mount points of a container; volumes without a name are anonymous (name filled later)."""
    mounts: list[MountPoint] = [parse_bind(b) for b in host.binds]
    for m in host.mounts:
        if m.type == "bind":
            if not m.source:
                raise InvalidParameter('invalid mount config for type "bind": field Source must not be empty')
            if not os.path.exists(m.source):
                raise InvalidParameter(
                    f'invalid mount config for type "bind": bind source path does not exist: {m.source}')
            mounts.append(MountPoint(type="bind", source=m.source, destination=_check_target(m.target, "bind"),
                                     rw=not m.read_only))
        elif m.type == "volume":
            name = check_volume_name(m.source) if m.source else ""
            mounts.append(MountPoint(type="volume", name=name, destination=_check_target(m.target, "volume"),
                                     rw=not m.read_only, mode="z"))
        elif m.type == "tmpfs":
            opts = []
            if m.tmpfs_size:
                opts.append(f"size={m.tmpfs_size}")
            if m.tmpfs_mode:
                opts.append(f"mode={m.tmpfs_mode:o}")
            mounts.append(MountPoint(type="tmpfs", destination=_check_target(m.target, "tmpfs"),
                                     options=",".join(opts)))
        else:
            raise InvalidParameter(f"mount type unknown: {m.type!r}")
    for target, options in host.tmpfs.items():
        mounts.append(MountPoint(type="tmpfs", destination=_check_target(target, "tmpfs"), options=options))
    seen: set[str] = set()
    for m in mounts:
        if m.destination in seen:
            raise InvalidParameter(f"Duplicate mount point: {m.destination}")
        seen.add(m.destination)
    for target in [*image_volumes, *config_volumes]:
        target = _check_target(target, "volume")
        if target not in seen:
            seen.add(target)
            mounts.append(MountPoint(type="volume", destination=target, mode=""))
    return mounts
