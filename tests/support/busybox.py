"""Build a busybox rootfs from Debian's busybox-static, as a docker-importable folder or tar."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

BUSYBOX = "/bin/busybox"

_ETC = {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
    "app:x:1000:1000:app:/home/app:/bin/sh\n",
    "etc/group": "root:x:0:\napp:x:1000:\nnogroup:x:65534:\n",
    "etc/nsswitch.conf": "hosts: files\n",
    "etc/hosts": "",
    "etc/resolv.conf": "",
}


def build_rootfs(dest: Path) -> Path:
    """Write a minimal busybox rootfs into dest (created) and return it."""
    dest.mkdir(parents=True, exist_ok=True)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root",
              "var/www", "run", "home/app"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, dest / "bin/busybox")
    listing = subprocess.run([BUSYBOX, "--list-full"], check=True, capture_output=True, text=True)
    for rel in listing.stdout.split():
        link = dest / rel
        if not link.exists() and not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/bin/busybox")
    os.chmod(dest / "tmp", 0o1777)
    for rel, text in _ETC.items():
        (dest / rel).write_text(text)
    os.chown(dest / "home/app", 1000, 1000)
    return dest


def rootfs_tar_bytes(rootfs: Path) -> bytes:
    """The rootfs as an uncompressed tar, the way `tar -C rootfs -c .` writes it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(rootfs, arcname=".")
    return buf.getvalue()
