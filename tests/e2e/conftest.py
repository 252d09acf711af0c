import shutil
from pathlib import Path

import pytest

from tests.support.busybox import build_rootfs, rootfs_tar_bytes
from tests.support.node import DOCKER, destroy_node, node_data_root, start_node

pytestmark = pytest.mark.e2e


def pytest_collection_modifyitems(items):
    for item in items:
        if "e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("busybox")
    rootfs = build_rootfs(root / "rootfs")
    tar = root / "busybox.tar"
    tar.write_bytes(rootfs_tar_bytes(rootfs))
    shutil.rmtree(rootfs)
    return tar


@pytest.fixture(scope="module")
def node(busybox_tar):
    """One real node per test module, with `busybox` imported."""
    if not Path(DOCKER).exists():
        pytest.skip(f"docker CLI not found at {DOCKER}")
    with node_data_root() as root:
        n = start_node(root)
        try:
            n.docker("import", str(busybox_tar), "busybox")
            yield n
        finally:
            destroy_node(n)
