"""docker run / create / start / stop / kill / rm / wait / rename / prune / ps / inspect / logs."""

import json
import time

import pytest


def _names(node, *args):
    return node.out("ps", *args, "--format", "{{.Names}}").split()


def test_run_prints_stdout_and_stderr_apart_and_propagates_exit_code(node):
    res = node.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 7", check=False)
    assert res.returncode == 7
    assert res.stdout == b"out\n"
    assert res.stderr == b"err\n"


def test_run_interactive_stdin_reaches_the_container_and_eof_ends_it(node):
    data = "".join(f"line {i}\n" for i in range(2000))
    res = node.docker("run", "-i", "--rm", "busybox", "sh", "-c", "wc -l; echo done", input=data)
    assert res.stdout.decode().split() == ["2000", "done"]


def test_unknown_command_is_127_with_dockers_message(node):
    res = node.docker("run", "--rm", "busybox", "no-such-binary", check=False)
    assert res.returncode == 127
    assert b'exec: "no-such-binary": executable file not found in $PATH' in res.stderr


def test_non_executable_command_is_126(node):
    res = node.docker("run", "--rm", "busybox", "/etc/passwd", check=False)
    assert res.returncode == 126, res.stderr
    assert b"permission denied" in res.stderr


def test_sigkill_exit_is_137(node):
    cid = node.out("run", "-d", "busybox", "sleep", "300")
    node.docker("kill", cid)
    assert node.out("wait", cid) == "137"
    state = json.loads(node.out("inspect", cid))[0]["State"]
    assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 137, False)
    node.docker("rm", cid)


def test_rm_flag_removes_the_container(node):
    node.docker("run", "--rm", "--name", "gone", "busybox", "true")
    assert "gone" not in _names(node, "-a")


def test_create_then_start_attach(node):
    cid = node.out("create", "--name", "later", "busybox", "echo", "from-create")
    assert node.out("inspect", "-f", "{{.State.Status}}", cid) == "created"
    assert node.out("start", "-a", "later") == "from-create"
    assert node.out("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", cid) == "exited 0"
    node.docker("rm", "later")


def test_config_flags_reach_the_process(node, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("A=1\n# comment\nB=two\n")
    out = node.out("run", "--rm", "--env-file", str(env_file), "-e", "C=3", "-w", "/work/dir", "-u", "1000:1000",
                   "--hostname", "myhost", "busybox", "sh", "-c", 'echo "$A $B $C"; pwd; id -u; id -g; hostname')
    assert out.splitlines() == ["1 two 3", "/work/dir", "1000", "1000", "myhost"]


def test_user_by_name_resolves_from_the_image_passwd(node):
    assert node.out("run", "--rm", "-u", "app", "busybox", "id", "-u") == "1000"
    res = node.docker("run", "--rm", "-u", "nobody-here", "busybox", "true", check=False)
    assert res.returncode != 0
    assert b"unable to find user nobody-here" in res.stderr


def test_entrypoint_replaces_image_command(node):
    assert node.out("run", "--rm", "--entrypoint", "echo", "busybox", "a", "b") == "a b"


def test_read_only_root_and_tmpfs(node):
    res = node.docker("run", "--rm", "--read-only", "--tmpfs", "/scratch", "busybox", "sh", "-c",
                      "touch /x 2>/dev/null && echo root-writable; touch /scratch/y && echo tmpfs-writable")
    assert res.stdout.decode().split() == ["tmpfs-writable"]


def test_bind_mounts_ro_and_rw(node, tmp_path):
    (tmp_path / "f").write_text("host-data\n")
    tmp_path.chmod(0o777)
    out = node.out("run", "--rm", "-v", f"{tmp_path}:/b:ro", "busybox", "sh", "-c",
                   "cat /b/f; touch /b/new 2>/dev/null || echo denied")
    assert out.splitlines() == ["host-data", "denied"]
    node.docker("run", "--rm", "--mount", f"type=bind,src={tmp_path},dst=/b", "busybox", "sh", "-c",
                "echo from-container > /b/out")
    assert (tmp_path / "out").read_text() == "from-container\n"


def test_labels_and_inspect_shape(node):
    cid = node.out("create", "--label", "tier=db", "-m", "64m", "--cpus", "0.5", "--pids-limit", "50",
                   "-v", "/anon", "busybox", "sleep", "1")
    info = json.loads(node.out("inspect", cid))[0]
    assert info["Config"]["Labels"] == {"tier": "db"}
    assert info["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert info["HostConfig"]["NanoCpus"] == 500_000_000
    assert info["HostConfig"]["PidsLimit"] == 50
    assert info["Path"] == "sleep" and info["Args"] == ["1"]
    assert info["Name"].startswith("/")
    (mount,) = info["Mounts"]
    assert mount["Type"] == "volume" and mount["Destination"] == "/anon" and len(mount["Name"]) == 64
    for key in ("Status", "Running", "Pid", "ExitCode", "OOMKilled", "StartedAt", "FinishedAt"):
        assert key in info["State"]
    node.docker("rm", "-v", cid)
    assert mount["Name"] not in node.out("volume", "ls", "-q").split()


def test_ps_filters_and_formats(node):
    node.docker("run", "-d", "--name", "ps-run", "--label", "app=web", "busybox", "sleep", "300")
    node.docker("run", "--name", "ps-exit3", "busybox", "sh", "-c", "exit 3", check=False)
    node.docker("create", "--name", "ps-created", "busybox", "true")
    try:
        assert "ps-run" in _names(node)
        assert "ps-exit3" not in _names(node)
        assert {"ps-run", "ps-exit3", "ps-created"} <= set(_names(node, "-a"))
        assert _names(node, "-a", "--filter", "status=exited", "--filter", "name=ps-") == ["ps-exit3"]
        assert _names(node, "-a", "--filter", "exited=3") == ["ps-exit3"]
        assert _names(node, "--filter", "label=app=web") == ["ps-run"]
        assert _names(node, "-a", "--filter", "status=created", "--filter", "name=ps-") == ["ps-created"]
        assert _names(node, "-n", "1") == ["ps-created"]
        cid = node.out("inspect", "-f", "{{.Id}}", "ps-run")
        assert node.out("ps", "-q", "--filter", f"id={cid[:10]}") == cid[:12]
        assert "ps-run" in _names(node, "--filter", "ancestor=busybox")
        status = node.out("ps", "-a", "--filter", "name=ps-exit3", "--format", "{{.Status}}")
        assert status.startswith("Exited (3) ")
        bad = node.docker("ps", "--filter", "status=sleepy", check=False)
        assert bad.returncode == 1 and b"invalid filter" in bad.stderr
    finally:
        node.docker("rm", "-f", "ps-run", "ps-exit3", "ps-created")


def test_logs_tail_timestamps_since_until_and_follow(node):
    node.docker("run", "-d", "--name", "logger", "busybox", "sh", "-c",
                "echo one; echo two >&2; sleep 1.2; echo three")
    follow = node.docker("logs", "-f", "logger", timeout=20)
    assert follow.stdout.decode().split() == ["one", "three"]
    assert follow.stderr.decode().split() == ["two"]
    assert node.out("logs", "--tail", "1", "logger") == "three"
    stamped = node.out("logs", "-t", "--tail", "1", "logger")
    stamp, text = stamped.split(" ", 1)
    assert text == "three" and stamp.endswith("Z") and len(stamp.split(".")[1]) == 10
    assert node.docker("logs", "--since", f"{time.time() + 1:.3f}", "logger").stdout == b""
    started = json.loads(node.out("inspect", "logger"))[0]["State"]["StartedAt"]
    res = node.docker("logs", "--until", started, "logger")
    assert res.stdout == b"" and res.stderr == b""
    node.docker("rm", "logger")


def test_stop_sends_term_then_kill_after_timeout(node):
    node.docker("run", "-d", "--name", "trapper", "busybox", "sh", "-c",
                "trap 'echo got-term; exit 0' TERM; while true; do sleep 0.1; done")
    node.docker("stop", "-t", "5", "trapper")
    assert node.out("inspect", "-f", "{{.State.ExitCode}}", "trapper") == "0"
    assert "got-term" in node.out("logs", "trapper")
    # PID 1 without a TERM handler ignores TERM: stop must fall back to KILL after -t.
    node.docker("run", "-d", "--name", "stubborn", "busybox", "sleep", "300")
    t0 = time.monotonic()
    node.docker("stop", "-t", "1", "stubborn")
    assert time.monotonic() - t0 < 8
    assert node.out("inspect", "-f", "{{.State.ExitCode}}", "stubborn") == "137"
    node.docker("rm", "trapper", "stubborn")


def test_kill_with_signal_restart_rename_wait(node):
    node.docker("run", "-d", "--name", "sig", "busybox", "sh", "-c",
                "trap 'echo hup' HUP; while true; do sleep 0.1; done")
    node.docker("kill", "-s", "HUP", "sig")
    deadline = time.monotonic() + 5
    while "hup" not in node.out("logs", "sig") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "hup" in node.out("logs", "sig")
    first_pid = node.out("inspect", "-f", "{{.State.Pid}}", "sig")
    node.docker("restart", "-t", "1", "sig")
    assert node.out("inspect", "-f", "{{.State.Status}}", "sig") == "running"
    assert node.out("inspect", "-f", "{{.State.Pid}}", "sig") != first_pid
    node.docker("rename", "sig", "sig2")
    assert "sig2" in _names(node) and "sig" not in _names(node)
    node.docker("kill", "sig2")
    assert node.out("wait", "sig2") == "137"
    node.docker("rm", "sig2")


def test_restart_keeps_the_writable_layer(node):
    node.docker("run", "--name", "keeper", "busybox", "sh", "-c", "echo kept >> /state")
    node.docker("start", "-a", "keeper")
    assert node.out("start", "-a", "keeper") == ""
    node.docker("run", "--rm", "busybox", "test", "!", "-e", "/state")  # the image is untouched
    cid = node.out("inspect", "-f", "{{.Id}}", "keeper")
    image = node.out("commit", cid)  # the writable layer becomes an image's top layer
    assert node.out("run", "--rm", image, "cat", "/state") == "kept\nkept\nkept"  # one line per run
    node.docker("rmi", image)
    node.docker("rm", "keeper")


def test_rm_running_needs_force_and_prune_removes_stopped(node):
    node.docker("run", "-d", "--name", "busy", "busybox", "sleep", "300")
    res = node.docker("rm", "busy", check=False)
    assert res.returncode == 1
    assert b"container is running: stop the container before removing or force remove" in res.stderr
    node.docker("rm", "-f", "busy")
    node.docker("run", "--name", "stopped1", "busybox", "true")
    node.docker("run", "-d", "--name", "alive", "busybox", "sleep", "300")
    out = node.out("container", "prune", "-f")
    assert "Deleted Containers" in out
    assert _names(node, "-a", "--filter", "name=stopped1") == []
    assert _names(node, "--filter", "name=alive") == ["alive"]
    node.docker("rm", "-f", "alive")


def test_name_conflict_and_invalid_names(node):
    node.docker("create", "--name", "dup", "busybox", "true")
    res = node.docker("create", "--name", "dup", "busybox", "true", check=False)
    assert res.returncode != 0
    assert b'Conflict. The container name "/dup" is already in use' in res.stderr
    res = node.docker("create", "--name", "bad name!", "busybox", "true", check=False)
    assert b"Invalid container name (bad name!)" in res.stderr
    node.docker("rm", "dup")


def test_missing_objects_are_404s(node):
    for args in (("inspect", "--type", "container", "nope"), ("start", "nope"), ("stop", "nope"),
                 ("rm", "nope"), ("logs", "nope"), ("wait", "nope"), ("kill", "nope")):
        res = node.docker(*args, check=False)
        assert res.returncode != 0, args
        assert b"No such container: nope" in res.stderr, (args, res.stderr)
    res = node.docker("run", "--rm", "not-an-image", "true", check=False)
    assert res.returncode != 0
    assert b"not-an-image" in res.stderr


@pytest.mark.parametrize("flag, message", [
    (("-m", "1k"), b"Minimum memory limit allowed is 6MB"),
    (("--cpus", "64"), b"Range of CPUs is from 0.01 to"),
    (("--memory-swap", "10m", "-m", "20m"), b"Minimum memoryswap limit should be larger than memory limit"),
])
def test_absurd_limits_are_rejected_before_anything_is_made(node, flag, message):
    before = node.out("ps", "-aq")
    res = node.docker("create", *flag, "busybox", "true", check=False)
    assert res.returncode != 0
    assert message in res.stderr, res.stderr
    assert node.out("ps", "-aq") == before


def test_running_and_exited_counts_match_info(node):
    node.docker("run", "-d", "--name", "counted", "busybox", "sleep", "300")
    info = json.loads(node.out("info", "--format", "{{json .}}"))
    running = len(node.out("ps", "-q").split())
    assert info["ContainersRunning"] == running
    assert info["Containers"] == len(node.out("ps", "-aq").split())
    node.docker("rm", "-f", "counted")
