"""Tar archives built in memory for tests."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable


def tar_of(entries: Iterable[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A PAX tar from (TarInfo, data-or-None) pairs; the size is set from the data."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()
