"""Converting Docker's seccomp profile format to OCI, per capability set and arch."""

from appliance.runtime.seccomp import convert, default_seccomp, docker_default_profile
from appliance.runtime.spec import DEFAULT_CAPABILITIES


def names(oci: dict, action: str = "SCMP_ACT_ALLOW") -> set[str]:
    return {n for r in oci["syscalls"] if r["action"] == action and "args" not in r for n in r["names"]}


PROFILE = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
    "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
        {"names": ["set_tls"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["both"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_A", "CAP_B"]}},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
         "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390x"]}},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
    ],
}


def test_architectures_from_arch_map():
    assert convert(PROFILE, [])["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert convert(PROFILE, [], arch="arm64")["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]


def test_defaults_are_copied():
    oci = convert(PROFILE, [])
    assert oci["defaultAction"] == "SCMP_ACT_ERRNO" and oci["defaultErrnoRet"] == 1
    assert "archMap" not in oci


def test_arch_includes():
    assert "arch_prctl" in names(convert(PROFILE, []))
    assert "set_tls" not in names(convert(PROFILE, []))
    assert "set_tls" in names(convert(PROFILE, [], arch="arm64"))


def test_caps_includes_need_every_cap():
    assert "mount" not in names(convert(PROFILE, ["CAP_CHOWN"]))
    assert "mount" in names(convert(PROFILE, ["CAP_SYS_ADMIN"]))
    assert "both" not in names(convert(PROFILE, ["CAP_A"]))
    assert "both" in names(convert(PROFILE, ["CAP_A", "CAP_B"]))


def test_caps_excludes_and_args_and_errno_kept():
    without = convert(PROFILE, [])
    clone = [r for r in without["syscalls"] if r["names"] == ["clone"]]
    assert clone == [{"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]}]
    assert {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38} in without["syscalls"]
    with_admin = convert(PROFILE, ["CAP_SYS_ADMIN"])
    assert not [r for r in with_admin["syscalls"] if r["names"] in (["clone"], ["clone3"])]
    assert not [r for r in convert(PROFILE, [], arch="s390x")["syscalls"] if r["names"] == ["clone"]]


def test_min_kernel():
    assert "ptrace" in names(convert(PROFILE, []))
    assert "ptrace" in names(convert(PROFILE, [], kernel=(6, 1)))
    assert "ptrace" not in names(convert(PROFILE, [], kernel=(4, 4)))


def test_vendored_profile_for_docker_default_caps():
    oci = default_seccomp(DEFAULT_CAPABILITIES)
    allowed = names(oci)
    # gated on CAP_SYS_ADMIN in moby's profile, so refused by default
    for call in ("mount", "umount2", "unshare", "setns", "bpf", "perf_event_open", "sethostname"):
        assert call not in allowed
    # CAP_SYS_CHROOT is a default capability, so chroot is allowed
    assert {"chroot", "read", "arch_prctl", "modify_ldt"} <= allowed
    assert "clone" not in allowed  # only with the namespace-flag mask
    assert {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38} in oci["syscalls"]
    assert oci["defaultAction"] == "SCMP_ACT_ERRNO"
    assert len(oci["syscalls"]) == 13


def test_vendored_profile_is_moby_default_json():
    profile = docker_default_profile()
    assert len(profile["syscalls"]) == 31
    assert len(profile["syscalls"][0]["names"]) == 349


def test_default_seccomp_is_cached_per_cap_set():
    assert default_seccomp(DEFAULT_CAPABILITIES) is default_seccomp(list(reversed(DEFAULT_CAPABILITIES)))
    assert "mount" in names(default_seccomp([*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"]))
