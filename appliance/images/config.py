"""Docker image config JSON: build it for ``docker import``, read it back, derive history.

Pure. The bytes are what dockerd's ImportImage would write (Go encoding/json: top-level
keys sorted by image.Image.MarshalJSON, container.Config in struct order, HTML-escaped
strings), so the image id is "sha256:" + sha256(bytes) exactly as dockerd computes it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from appliance.errors import InvalidParameter
from appliance.images.changes import (
    apply_changes,
    empty_container_config,
    normalize_container_config,
)

__all__ = [
    "HistoryEntry",
    "ImageConfig",
    "apply_changes",
    "empty_container_config",
    "encode_json",
    "format_rfc3339nano",
    "history",
    "image_id",
    "import_config",
    "parse_config",
    "parse_rfc3339",
]

_DIFF_ID = re.compile(r"sha256:[a-f0-9]{64}")


def encode_json(value: object) -> bytes:
    """JSON as Go's encoding/json writes it: compact, UTF-8, <>& and U+2028/9 escaped.

    Dict order is kept: callers build dicts in Go's field order (maps pre-sorted).
    """
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text.encode("utf-8")


def image_id(config_bytes: bytes) -> str:
    """The content-addressable image id of a config blob."""
    return "sha256:" + hashlib.sha256(config_bytes).hexdigest()


def format_rfc3339nano(unix_ns: int) -> str:
    """Go's time.RFC3339Nano for a UTC instant: trailing zeros of the fraction dropped."""
    seconds, ns = divmod(unix_ns, 1_000_000_000)
    base = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{ns:09d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})"
)


def parse_rfc3339(text: str) -> int:
    """RFC 3339 (with any fraction) -> unix nanoseconds. InvalidParameter if malformed."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise InvalidParameter(f"invalid created time {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac = (m.group(7) or "")[:9].ljust(9, "0")
    tz = m.group(8)
    try:
        dt = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError:
        raise InvalidParameter(f"invalid created time {text!r}") from None
    offset = 0
    if tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        offset = sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    seconds = int(dt.timestamp()) - offset
    return seconds * 1_000_000_000 + int(frac)


def import_config(
    *,
    diff_id: str,
    created_ns: int,
    config: dict | None = None,
    comment: str = "Imported from -",
    architecture: str = "amd64",
    os: str = "linux",
    variant: str = "",
    docker_version: str = "",
) -> bytes:
    """The config blob dockerd's ImportImage writes for one layer.

    ``config`` is the container config (e.g. from ``apply_changes(empty_container_config(),
    changes)``); ``comment`` is the ``message`` form value, which dockerd defaults to
    "Imported from <fromSrc>". ``created_ns`` is the caller's clock, unix nanoseconds.
    """
    if not _DIFF_ID.fullmatch(diff_id):
        raise InvalidParameter(f"invalid diff id {diff_id!r}")
    created = format_rfc3339nano(created_ns)
    entry: dict = {"created": created}
    if comment:
        entry["comment"] = comment
    top: dict = {
        "architecture": architecture,
        "comment": comment,
        "config": normalize_container_config(config if config is not None else {}),
        "container_config": empty_container_config(),
        "created": created,
        "docker_version": docker_version,
        "history": [entry],
        "os": os,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "variant": variant,
    }
    for key in ("architecture", "comment", "docker_version", "variant", "os"):
        if top[key] == "":
            del top[key]
    return encode_json({k: top[k] for k in sorted(top)})


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The fields of an image config the engine needs; ``raw`` is the whole parsed JSON."""

    raw: dict
    diff_ids: tuple[str, ...]
    os: str
    architecture: str
    variant: str
    created_ns: int | None
    config: dict | None
    history: tuple[dict, ...]
    comment: str
    author: str
    docker_version: str

    @property
    def created_unix(self) -> int:
        """Seconds, as ``docker images`` shows Created (0 when absent)."""
        return (self.created_ns or 0) // 1_000_000_000


def parse_config(config_bytes: bytes) -> ImageConfig:
    """Validate and read an image config blob (from an archive or the engine's records)."""
    try:
        raw = json.loads(config_bytes)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidParameter(f"invalid image JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidParameter("invalid image JSON: not an object")
    rootfs = raw.get("rootfs")
    if rootfs is None:
        raise InvalidParameter("invalid image JSON, no RootFS key")
    if not isinstance(rootfs, dict):
        raise InvalidParameter("invalid image JSON: rootfs is not an object")
    if rootfs.get("type") != "layers":
        kind = rootfs.get("type")
        raise InvalidParameter(f"invalid image JSON: unsupported rootfs type {kind!r}")
    diff_ids = rootfs.get("diff_ids") or []
    if not isinstance(diff_ids, list) or not all(
        isinstance(d, str) and _DIFF_ID.fullmatch(d) for d in diff_ids
    ):
        raise InvalidParameter("invalid image JSON: bad rootfs.diff_ids")
    created = raw.get("created")
    created_ns = parse_rfc3339(created) if isinstance(created, str) and created else None
    history = raw.get("history") or []
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise InvalidParameter("invalid image JSON: bad history")
    config = raw.get("config")
    if config is not None and not isinstance(config, dict):
        raise InvalidParameter("invalid image JSON: config is not an object")

    def text(key: str) -> str:
        value = raw.get(key)
        return value if isinstance(value, str) else ""

    return ImageConfig(
        raw=raw,
        diff_ids=tuple(diff_ids),
        os=text("os") or "linux",
        architecture=text("architecture"),
        variant=text("variant"),
        created_ns=created_ns,
        config=config,
        history=tuple(history),
        comment=text("comment"),
        author=text("author"),
        docker_version=text("docker_version"),
    )


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One row of ``GET /images/{name}/history`` (the engine adds Id and Tags)."""

    created: int
    created_by: str
    size: int
    comment: str
    empty_layer: bool


def history(image: ImageConfig, layer_sizes: Sequence[int]) -> list[HistoryEntry]:
    """History rows newest first, as dockerd's ImageHistory orders them.

    ``layer_sizes[i]`` is the size of ``image.diff_ids[i]``; each non-empty history entry
    takes the next layer's size. Entries beyond the layers get size 0 (dockerd errors).
    """
    rows: list[HistoryEntry] = []
    layer = 0
    for h in image.history:
        empty = bool(h.get("empty_layer"))
        size = 0
        if not empty:
            if layer < len(layer_sizes):
                size = layer_sizes[layer]
            layer += 1
        created = 0
        if isinstance(h.get("created"), str) and h["created"]:
            try:
                created = parse_rfc3339(h["created"]) // 1_000_000_000
            except InvalidParameter:
                created = 0
        rows.append(HistoryEntry(
            created=created,
            created_by=h.get("created_by") or "",
            size=size,
            comment=h.get("comment") or "",
            empty_layer=empty,
        ))
    rows.reverse()
    return rows
