"""Docker's default seccomp profile, converted to OCI `linux.seccomp` for one capability set.

seccomp-default.json is moby's profiles/seccomp/default.json, vendored unchanged (Apache-2.0,
see SECCOMP-NOTICE). Its rules are conditional on the container's capabilities and the
architecture; convert() resolves those conditions the way moby's profiles/seccomp
setupSeccomp does, so e.g. mount(2) is allowed only when CAP_SYS_ADMIN is granted.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from importlib import resources

# Go architecture names (what Docker's profile uses in includes/excludes) -> libseccomp names.
_SCMP_ARCH = {
    "amd64": "SCMP_ARCH_X86_64",
    "386": "SCMP_ARCH_X86",
    "arm64": "SCMP_ARCH_AARCH64",
    "arm": "SCMP_ARCH_ARM",
    "s390x": "SCMP_ARCH_S390X",
    "ppc64le": "SCMP_ARCH_PPC64LE",
    "riscv64": "SCMP_ARCH_RISCV64",
}

# The profile names x86 "x86" in some rules and Go's "386" elsewhere; moby treats them alike.
_ARCH_ALIASES = {"386": {"386", "x86"}, "amd64": {"amd64"}, "arm64": {"arm64"}}


def _kernel_at_least(kernel: tuple[int, int] | None, minimum: str) -> bool:
    if kernel is None:
        return True  # callers that do not say are assumed to run a current kernel
    major, minor = (int(x) for x in minimum.split(".")[:2])
    return kernel >= (major, minor)


def _applies(rule: dict, caps: frozenset[str], arch: str, kernel: tuple[int, int] | None) -> bool:
    arch_names = _ARCH_ALIASES.get(arch, {arch})
    inc = rule.get("includes") or {}
    exc = rule.get("excludes") or {}
    if inc.get("arches") and not arch_names.intersection(inc["arches"]):
        return False
    if inc.get("caps") and not set(inc["caps"]).issubset(caps):
        return False
    if inc.get("minKernel") and not _kernel_at_least(kernel, inc["minKernel"]):
        return False
    if exc.get("arches") and arch_names.intersection(exc["arches"]):
        return False
    return not (exc.get("caps") and caps.intersection(exc["caps"]))


def _architectures(profile: dict, arch: str) -> list[str]:
    native = _SCMP_ARCH.get(arch)
    if native is None:
        raise ValueError(f"unsupported architecture {arch!r}")
    for entry in profile.get("archMap") or ():
        if entry["architecture"] == native:
            return [native, *(entry.get("subArchitectures") or ())]
    return list(profile.get("architectures") or [native])


def convert(profile: dict, caps: Iterable[str], arch: str = "amd64",
            kernel: tuple[int, int] | None = None) -> dict:
    """A Docker-format seccomp profile -> OCI linux.seccomp for a container with caps on arch.

    A rule is kept unless includes.arches misses arch, includes.caps is not a subset of caps,
    includes.minKernel is newer than kernel (None: assume new enough), excludes.arches has
    arch, or excludes.caps meets caps. Kept rules keep names, action, args and errnoRet.
    """
    granted = frozenset(caps)
    out: dict = {"defaultAction": profile["defaultAction"]}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    out["architectures"] = _architectures(profile, arch)
    syscalls = []
    for rule in profile.get("syscalls") or ():
        if not _applies(rule, granted, arch, kernel):
            continue
        names = list(rule.get("names") or ([rule["name"]] if rule.get("name") else []))
        entry: dict = {"names": names, "action": rule["action"]}
        if rule.get("args"):
            entry["args"] = [dict(a) for a in rule["args"]]
        if "errnoRet" in rule:
            entry["errnoRet"] = rule["errnoRet"]
        syscalls.append(entry)
    out["syscalls"] = syscalls
    return out


@functools.lru_cache(maxsize=1)
def docker_default_profile() -> dict:
    """moby's default.json as a dict (shared: do not mutate)."""
    text = resources.files("appliance.runtime").joinpath("seccomp-default.json").read_text()
    return json.loads(text)


@functools.lru_cache(maxsize=32)
def _default_for(caps: frozenset[str], arch: str) -> dict:
    return convert(docker_default_profile(), caps, arch)


def default_seccomp(caps: Iterable[str], arch: str = "amd64") -> dict:
    """Docker's default profile as OCI linux.seccomp for caps; cached per capability set,
    so the returned dict is shared: do not mutate it."""
    return _default_for(frozenset(caps), arch)
