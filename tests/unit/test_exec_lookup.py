"""engine/process.py executable_in: which execs may take the direct `crun exec` path."""

import os

from appliance.engine.process import command_line, executable_in


def _root(tmp_path):
    root = tmp_path / "root"
    for d in ("bin", "usr/bin", "etc", "opt"):
        (root / d).mkdir(parents=True)
    (root / "bin/busybox").write_bytes(b"\x7fELF")
    (root / "bin/busybox").chmod(0o755)
    os.symlink("busybox", root / "bin/sh")
    os.symlink("/bin/busybox", root / "usr/bin/env")
    (root / "etc/data").write_text("x")
    (root / "etc/data").chmod(0o644)
    os.symlink("/etc", root / "usr/bin/etcdir")
    # A link that points out of the root must be resolved inside it (where nothing is).
    os.symlink("../../../../../../usr/bin/python3", root / "opt/escape")
    return root


def test_found_through_path_and_symlinks(tmp_path):
    root = _root(tmp_path)
    env = ["PATH=/usr/bin:/bin"]
    assert executable_in(root, "sh", env)
    assert executable_in(root, "env", env)
    assert executable_in(root, "/bin/sh", [])
    assert executable_in(root, "busybox", [])  # no PATH: dockerd's default one


def test_not_found_is_false(tmp_path):
    root = _root(tmp_path)
    env = ["PATH=/usr/bin:/bin"]
    assert not executable_in(root, "missing", env)
    assert not executable_in(root, "/etc/data", env)       # not executable
    assert not executable_in(root, "etcdir", env)          # a directory
    assert not executable_in(root, "/opt/escape", env)     # the host's python3 is not the container's
    assert not executable_in(root, "./sh", env)            # relative: left to crun
    assert not executable_in(root, "sh", ["PATH=relative:"])
    assert not executable_in(root, "sh", ["PATH=/usr/bin"])  # the later PATH wins... (below)
    assert executable_in(root, "sh", ["PATH=/usr/bin", "PATH=/bin"])


def test_command_line_is_dockerds_wording():
    assert command_line(["true"]) == "true "
    assert command_line(["sh", "-c", "exit 2"]) == "sh -c exit 2"
