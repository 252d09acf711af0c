"""The image config ``docker commit`` writes: dockerd's NewChildImage over the parent's.

Pure. ``container_config`` is the container's Docker Config (the JSON inspect shows), the
commit's new config is that (or the request body's) with ``--change`` applied and then
completed from the container's (dockerd's ``merge``). The child keeps the parent's layers
and history and adds one layer (unless the diff is empty) and one history row.
"""

from __future__ import annotations

import copy

from ...images import config as image_config
from ...images.changes import normalize_container_config
from ...store.records import ContainerConfig

#: diff_id of a layer tar with no entries (two zero blocks): dockerd's layer.EmptyLayer
EMPTY_LAYER_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


def container_config(c: ContainerConfig) -> dict:
    """A container's Config as dockerd keeps it (and commits it), in Go's field order."""
    out = {"Hostname": c.hostname, "Domainname": c.domainname, "User": c.user,
           "AttachStdin": c.attach_stdin, "AttachStdout": c.attach_stdout, "AttachStderr": c.attach_stderr,
           "ExposedPorts": {p: {} for p in c.exposed_ports} or None,
           "Tty": c.tty, "OpenStdin": c.open_stdin, "StdinOnce": c.stdin_once,
           "Env": list(c.env) or None, "Cmd": list(c.cmd) if c.cmd is not None else None,
           "Image": c.image, "Volumes": {v: {} for v in c.volumes} or None, "WorkingDir": c.working_dir,
           "Entrypoint": list(c.entrypoint) if c.entrypoint is not None else None, "OnBuild": None,
           "Labels": dict(c.labels) or None, "StopSignal": c.stop_signal or None,
           "StopTimeout": c.stop_timeout}
    return normalize_container_config(out)


def merge(user: dict, image: dict) -> dict:
    """dockerd's merge(userConf, imageConf): fill what the commit config leaves unset."""
    out = copy.deepcopy(user)
    if not out.get("User"):
        out["User"] = image.get("User") or ""
    if not out.get("ExposedPorts"):
        out["ExposedPorts"] = image.get("ExposedPorts")
    elif image.get("ExposedPorts"):
        for port in image["ExposedPorts"]:
            out["ExposedPorts"].setdefault(port, {})
    if not out.get("Env"):
        out["Env"] = image.get("Env")
    else:
        keys = {e.split("=", 1)[0] for e in out["Env"]}
        out["Env"] = out["Env"] + [e for e in image.get("Env") or [] if e.split("=", 1)[0] not in keys]
    labels = dict(out.get("Labels") or {})
    for k, v in (image.get("Labels") or {}).items():
        labels.setdefault(k, v)
    out["Labels"] = labels
    if not out.get("Entrypoint"):
        if not out.get("Cmd"):
            out["Cmd"] = image.get("Cmd")
            if "ArgsEscaped" in image:
                out["ArgsEscaped"] = image.get("ArgsEscaped")
        if out.get("Entrypoint") is None:
            out["Entrypoint"] = image.get("Entrypoint")
    if image.get("Healthcheck") and not out.get("Healthcheck"):
        out["Healthcheck"] = image["Healthcheck"]
    if not out.get("WorkingDir"):
        out["WorkingDir"] = image.get("WorkingDir") or ""
    if not out.get("Volumes"):
        out["Volumes"] = image.get("Volumes")
    else:
        out["Volumes"] = {**out["Volumes"], **(image.get("Volumes") or {})}
    if not out.get("StopSignal"):
        out["StopSignal"] = image.get("StopSignal")
    return normalize_container_config(out)


def child_config(parent: dict, *, config: dict, container_config: dict, container_id: str,
                 author: str, comment: str, diff_id: str, created_ns: int,
                 docker_version: str = "") -> bytes:
    """The config blob of the committed image (keys sorted, as image.Image marshals)."""
    created = image_config.format_rfc3339nano(created_ns)
    empty = diff_id == EMPTY_LAYER_DIFF_ID
    rootfs = copy.deepcopy(parent.get("rootfs") or {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = list(rootfs.get("diff_ids") or [])
    if not empty:
        rootfs["diff_ids"].append(diff_id)
    entry: dict = {"created": created}
    if author:
        entry["author"] = author
    created_by = " ".join(container_config.get("Cmd") or [])
    if created_by:
        entry["created_by"] = created_by
    if comment:
        entry["comment"] = comment
    if empty:
        entry["empty_layer"] = True
    top: dict = {
        "architecture": parent.get("architecture") or "amd64",
        "author": author,
        "comment": comment,
        "config": config,
        "container": container_id,
        "container_config": container_config,
        "created": created,
        "docker_version": docker_version,
        "history": [*(parent.get("history") or []), entry],
        "os": parent.get("os") or "linux",
        "rootfs": {"type": rootfs.get("type", "layers"), "diff_ids": rootfs["diff_ids"]},
        "variant": parent.get("variant") or "",
    }
    for key in ("os.version", "os.features"):
        if parent.get(key):
            top[key] = parent[key]
    for key in ("author", "comment", "docker_version", "variant"):
        if top[key] == "":
            del top[key]
    return image_config.encode_json({k: top[k] for k in sorted(top)})

