"""Container paths with Go's path/filepath semantics, and Go's os.FileMode.

Pure. dockerd computes every cp path with ``filepath.Clean``, ``Split``, ``Base`` and
``archive.PreserveTrailingDotOrSeparator``; the CLI decides what to do from the same
functions on its side, so the appliance must agree with them exactly (``/dir/.`` and
``/dir/`` mean different things to ``docker cp``).
"""

from __future__ import annotations

import stat
from datetime import UTC, datetime

# Go's io/fs FileMode type bits (os.ModeDir, ...): what X-Docker-Container-Path-Stat carries.
MODE_DIR = 1 << 31
MODE_APPEND = 1 << 30
MODE_EXCLUSIVE = 1 << 29
MODE_TEMPORARY = 1 << 28
MODE_SYMLINK = 1 << 27
MODE_DEVICE = 1 << 26
MODE_NAMED_PIPE = 1 << 25
MODE_SOCKET = 1 << 24
MODE_SETUID = 1 << 23
MODE_SETGID = 1 << 22
MODE_CHAR_DEVICE = 1 << 21
MODE_STICKY = 1 << 20
MODE_IRREGULAR = 1 << 19


def clean(path: str) -> str:
    """filepath.Clean: one slash, no ``.``, inner ``..`` folded, ``/..`` is ``/``; "" is ``.``."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(comp)
    joined = "/".join(out)
    if rooted:
        return "/" + joined
    return joined or "."


def join(*elems: str) -> str:
    """filepath.Join: the non-empty elements joined by "/" and cleaned ("" if none)."""
    parts = [e for e in elems if e]
    return clean("/".join(parts)) if parts else ""


def split(path: str) -> tuple[str, str]:
    """filepath.Split: (everything up to and including the last "/", the rest)."""
    i = path.rfind("/")
    return path[: i + 1], path[i + 1:]


def base(path: str) -> str:
    """filepath.Base: the last element, trailing slashes ignored; "/" for only slashes."""
    if path == "":
        return "."
    path = path.rstrip("/")
    if path == "":
        return "/"
    return path[path.rfind("/") + 1:]


def dirname(path: str) -> str:
    """filepath.Dir: all but the last element, cleaned."""
    return clean(split(path)[0]) if "/" in path else "."


def preserve_trailing_dot_or_separator(cleaned: str, original: str) -> str:
    """archive.PreserveTrailingDotOrSeparator: keep the ``/.`` or ``/`` the user wrote."""
    if base(cleaned) != "." and base(original) == ".":
        if not cleaned.endswith("/"):
            cleaned += "/"
        cleaned += "."
    if not cleaned.endswith("/") and original.endswith("/"):
        cleaned += "/"
    return cleaned


def container_abs(path: str) -> str:
    """The absolute container path dockerd works with: Join("/", path), trailing dot/slash kept."""
    return preserve_trailing_dot_or_separator(join("/", path), path)


def is_within(path: str, root: str) -> bool:
    """Whether cleaned absolute ``path`` is ``root`` or below it."""
    return root == "/" or path == root or path.startswith(root + "/")


def components(path: str) -> list[str]:
    """The names of a clean absolute path ("/" has none)."""
    return [c for c in path.split("/") if c]


def go_file_mode(st_mode: int) -> int:
    """A POSIX st_mode as Go's os.FileMode (fillFileStatFromSys)."""
    mode = st_mode & 0o777
    kind = stat.S_IFMT(st_mode)
    if kind == stat.S_IFBLK:
        mode |= MODE_DEVICE
    elif kind == stat.S_IFCHR:
        mode |= MODE_DEVICE | MODE_CHAR_DEVICE
    elif kind == stat.S_IFDIR:
        mode |= MODE_DIR
    elif kind == stat.S_IFIFO:
        mode |= MODE_NAMED_PIPE
    elif kind == stat.S_IFLNK:
        mode |= MODE_SYMLINK
    elif kind == stat.S_IFSOCK:
        mode |= MODE_SOCKET
    if st_mode & stat.S_ISGID:
        mode |= MODE_SETGID
    if st_mode & stat.S_ISUID:
        mode |= MODE_SETUID
    if st_mode & stat.S_ISVTX:
        mode |= MODE_STICKY
    return mode


def format_mtime(mtime_ns: int) -> str:
    """A modification time as Go's time.Time marshals it (RFC 3339 with nanoseconds, UTC)."""
    seconds, ns = divmod(mtime_ns, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{ns:09d}".rstrip("0")
    return f"{text}.{frac}Z" if frac else f"{text}Z"
