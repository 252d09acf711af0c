"""CI smoke test of the zipapp: `python3 appliance.pyz serve` runs `docker run --rm busybox echo ok`."""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.busybox import build_rootfs, rootfs_tar_bytes  # noqa: E402
from tests.support.node import destroy_node, start_node  # noqa: E402


def main(pyz: str) -> int:
    with tempfile.TemporaryDirectory(prefix="pyz-") as tmp:
        tar = Path(tmp) / "busybox.tar"
        tar.write_bytes(rootfs_tar_bytes(build_rootfs(Path(tmp) / "rootfs")))
        node = start_node(Path(tmp) / "node", program=("python3", str(Path(pyz).resolve())))
        try:
            node.docker("import", str(tar), "busybox")
            out = node.out("run", "--rm", "busybox", "echo", "ok")
            assert out == "ok", out
            print("zipapp smoke: docker run --rm busybox echo ok -> ok")
        finally:
            destroy_node(node)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
