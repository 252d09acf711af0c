"""Container filesystems from the outside: docker cp, export, diff and commit.

``scope`` keeps every path inside a container's root, ``tarstream`` and ``extract`` write
and read dockerd-shaped tars, ``changes`` reads the overlay upper dir, ``commit`` builds
the committed image's config, and ``service`` ties them to the container's lifecycle lock.
"""

from .idmap import IdShift
from .service import FilesystemService, PathStat

__all__ = ["FilesystemService", "IdShift", "PathStat"]
