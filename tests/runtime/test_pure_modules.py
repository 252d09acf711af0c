"""The runtime's pure modules stay pure, and small pure helpers of the I/O modules."""

import ast
import os
from pathlib import Path

import pytest

import appliance.runtime as runtime_pkg
from appliance.errors import SystemError_
from appliance.runtime import cgroups
from appliance.runtime.rootfs import overlay_options

PURE = ("spec", "seccomp", "users", "argv", "conmon_proto", "timestamps", "mountinfo")
FORBIDDEN = {"trio", "subprocess", "ctypes", "socket"}


@pytest.mark.parametrize("module", PURE)
def test_pure_modules_import_no_io_libraries(module):
    tree = ast.parse((Path(runtime_pkg.__file__).parent / f"{module}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN


def test_overlay_options_order_and_escaping():
    data = overlay_options([Path("/l/top"), Path("/l/a:b,c")], Path("/c/upper"), Path("/c/work"))
    assert data == "lowerdir=/l/top:/l/a\\:b\\,c,upperdir=/c/upper,workdir=/c/work"


def test_overlay_options_limits():
    with pytest.raises(SystemError_):
        overlay_options([], Path("/u"), Path("/w"))
    with pytest.raises(SystemError_, match="too many image layers"):
        overlay_options([Path("/layers/" + "x" * 100)] * 64, Path("/u"), Path("/w"))


def test_cgroup_remove_refuses_the_root():
    with pytest.raises(ValueError):
        cgroups.remove("/")


def test_unsearchable_ancestor(tmp_path):
    from appliance.runtime.rootfs import unsearchable_ancestor

    me, my_gid = os.getuid(), os.getgid()
    blocked = tmp_path / "a"
    (blocked / "b").mkdir(parents=True)
    assert unsearchable_ancestor(blocked / "b", me, my_gid) is None
    blocked.chmod(0o600)  # not even its owner may traverse it
    try:
        assert unsearchable_ancestor(blocked / "b", me, my_gid) == blocked
    finally:
        blocked.chmod(0o755)
