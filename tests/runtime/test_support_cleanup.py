"""tests/support/node.py node_data_root: a node that pinned its mount namespace and then died
before it was ready (bench/ puts it one level down, ROOT/node) leaves no mount behind."""

import subprocess
import sys

from tests.support.node import REPO, node_data_root


def test_a_pin_one_level_down_is_released():
    with node_data_root() as root:
        data = root / "node"
        data.mkdir()
        subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                        "from appliance.runtime.mountns import enter_private_mount_namespace; "
                        "enter_private_mount_namespace(Path(sys.argv[1]))", str(data)],
                       cwd=REPO, check=True)
        assert str(data / "ns") in open("/proc/self/mountinfo").read()
    assert str(root) not in open("/proc/self/mountinfo").read()
    assert not root.exists()
