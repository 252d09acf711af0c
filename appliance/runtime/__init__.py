"""Running containers on this node: crun through OCI bundles, conmon as each one's monitor.

Pure (no I/O, no trio):
    spec          ContainerSpec/ExecSpec and the OCI config.json builder (Docker's defaults)
    seccomp       Docker's default profile -> OCI linux.seccomp per capability set
    users         Docker's --user resolution against /etc/passwd and /etc/group
    argv          where a container's files live; conmon and crun command lines
    conmon_proto  conmon's sync pipe, attach packets, ctl messages, crun error types
    timestamps    RFC 3339 with nanoseconds <-> ns integers
    mountinfo     /proc/<pid>/mountinfo parser
I/O:
    mountns       the node's pinned private mount namespace (process start-up, sync)
    syscalls      mount/umount2/setns through ctypes
    rootfs        per-container overlay mounts
    cgroups       v1 usage figures and removal of container cgroups
    logfile       k8s-file log parser, Docker `logs` selection, trio follower
    attach        conmon attach-socket client (trio)
    execs         `docker exec` sessions through conmon (trio)
    monitor       Runtime: the driver the engine calls (trio)

Nothing is imported here, so importing a pure module never pulls in trio.
"""
