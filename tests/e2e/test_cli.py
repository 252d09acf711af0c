"""The node's command line: dockerd's -H forms, python -m appliance, the console script."""

import re
import subprocess
import sys

from tests.support.node import DOCKER, REPO, destroy_node, node_data_root, start_node


def test_tcp_and_unix_listeners_serve_the_same_node(busybox_tar):
    with node_data_root() as root:
        node = start_node(root, extra_args=("-H", "tcp://127.0.0.1:0"))
        try:
            node.docker("import", str(busybox_tar), "busybox")
            match = re.search(r"tcp://127\.0\.0\.1:(\d+)", node.log_path.read_text())
            assert match, node.log_tail()
            tcp = f"tcp://127.0.0.1:{match.group(1)}"
            enter = ["nsenter", f"--net=/run/netns/{node.netns}"]  # the node listens in its own namespace
            res = subprocess.run([*enter, DOCKER, "-H", tcp, "run", "--rm", "busybox", "echo", "over-tcp"],
                                 capture_output=True, timeout=60, env=node.env())
            assert res.returncode == 0, res.stderr
            assert res.stdout == b"over-tcp\n"
            name = subprocess.run([*enter, DOCKER, "-H", tcp, "info", "--format", "{{.Name}}"], capture_output=True,
                                  timeout=30, env=node.env()).stdout.decode().strip()
            assert name == node.name
        finally:
            destroy_node(node)


def test_module_and_help_speak_dockerds_words():
    out = subprocess.run([sys.executable, "-m", "appliance", "serve", "--help"], capture_output=True,
                         text=True, cwd=REPO, timeout=30).stdout
    for flag in ("--data-root", "-H", "--node-name"):
        assert flag in out
    with node_data_root() as root:
        bad = subprocess.run([sys.executable, "-m", "appliance", "serve", "--data-root", str(root), "-H", "udp://x"],
                             capture_output=True, text=True, cwd=REPO, timeout=30)
        assert bad.returncode != 0
        assert "udp://x" in bad.stderr
        assert not (root / "ns" / "mnt").exists(), "a bad -H must be refused before anything is set up"
