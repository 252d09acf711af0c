"""runtime/sealed.py: the OCI runtime runs from a sealed memfd copy."""

import fcntl
import os
import subprocess

import pytest

from appliance.runtime.sealed import SEALS, sealed_copy

F_GET_SEALS = 1034


def test_sealed_copy_runs_and_cannot_be_written():
    path = sealed_copy("/bin/echo")
    assert path is not None and path.startswith(f"/proc/{os.getpid()}/fd/")
    assert subprocess.run([path, "sealed"], capture_output=True, check=True).stdout == b"sealed\n"
    fd = os.open(path, os.O_RDONLY)
    try:
        assert fcntl.fcntl(fd, F_GET_SEALS) == SEALS  # exactly what crun's is_self_cloned() wants
    finally:
        os.close(fd)
    fd = os.open(path, os.O_WRONLY)
    try:
        with pytest.raises(PermissionError):
            os.write(fd, b"overwritten")
    finally:
        os.close(fd)


def test_crun_from_the_sealed_copy_does_not_clone_itself(tmp_path):
    """crun clones itself (a bind mount on a /tmp/crun.XXXXXX file, or a memfd) unless it
    already runs from a sealed memfd; strace shows whether it did."""
    crun = "/usr/bin/crun"
    if not os.path.exists(crun) or not os.path.exists("/usr/bin/strace"):
        pytest.skip("needs crun and strace")
    path = sealed_copy(crun)
    assert path is not None

    def execs(argv0):
        # `exec` of a container that does not exist: crun clones itself before it looks.
        trace = subprocess.run(["strace", "-f", "-e", "trace=execve,execveat", argv0, "--root", str(tmp_path),
                                "exec", "no-such-container", "true"], capture_output=True, text=True).stderr
        return [line for line in trace.splitlines() if line.startswith("execve") and ") = 0" in line]

    assert len(execs(crun)) == 2   # itself, then its clone
    assert len(execs(path)) == 1
