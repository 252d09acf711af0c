"""CI smoke test of the zipapp: `python3 appliance.pyz serve` runs `docker run --rm busybox echo ok`."""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.busybox import build_rootfs, rootfs_tar_bytes  # noqa: E402
from tests.support.node import destroy_node, node_data_root, start_node  # noqa: E402


def main(pyz: str) -> int:
    with tempfile.TemporaryDirectory(prefix="pyz-") as tmp:
        tar = Path(tmp) / "busybox.tar"
        tar.write_bytes(rootfs_tar_bytes(build_rootfs(Path(tmp) / "rootfs")))
        with node_data_root() as root:
            node = start_node(root, program=("python3", str(Path(pyz).resolve())))
            _smoke(node, tar)
    return 0


def _smoke(node, tar) -> None:
    try:
        node.docker("import", str(tar), "busybox")
        out = node.out("run", "--rm", "busybox", "echo", "ok")
        assert out == "ok", out
        print("zipapp smoke: docker run --rm busybox echo ok -> ok")
    finally:
        destroy_node(node)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
