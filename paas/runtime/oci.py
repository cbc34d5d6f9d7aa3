"""OCI runtime-spec documents (config.json) for dynos and builds, and their root filesystems."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paas import cgroups

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STACK_DIRS = ("/usr", "/bin", "/lib", "/lib64", "/lib32", "/libx32", "/sbin")
CERTS_DIR = Path("/etc/ssl/certs")
RO_BIND = ["rbind", "ro", "nosuid", "nodev"]
RW_BIND = ["rbind", "rw", "nosuid", "nodev"]

BLOCKED_SYSCALLS = [
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module",
    "delete_module", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick",
    "get_kernel_syms", "init_module", "io_uring_enter", "io_uring_register", "io_uring_setup",
    "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie",
    "mount", "mount_setattr", "move_mount", "name_to_handle_at", "nfsservctl", "open_by_handle_at",
    "open_tree", "perf_event_open", "pivot_root", "process_vm_readv", "process_vm_writev",
    "ptrace", "query_module", "quotactl", "reboot", "request_key", "setns", "settimeofday",
    "stime", "swapoff", "swapon", "syslog", "umount", "umount2", "unshare", "uselib",
    "userfaultfd", "vhangup", "vm86", "vm86old",
]  # fmt: skip
MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
]  # fmt: skip
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
CLONE_NEWUSER = 0x10000000
EPERM = 1
ENOSYS = 38


@dataclass
class ContainerConfig:
    """Everything that differs between a dyno and a build container."""

    hostname: str
    uid: int
    args: list[str]
    env: dict[str, str]
    app_source: Path
    memory_mb: int
    pids_limit: int
    cgroups_path: str
    netns_path: str | None = None
    cpu_shares: int = 1024
    terminal: bool = False
    # The bundle's root filesystem, relative to the bundle (a dyno's is on its disk).
    root_path: str = "rootfs"
    tmp_mb: int = 256
    extra_mounts: list[dict[str, Any]] = field(default_factory=list)


def bind(source: Path | str, destination: str, *, readonly: bool = True) -> dict[str, Any]:
    return {
        "destination": destination,
        "type": "bind",
        "source": str(source),
        "options": list(RO_BIND if readonly else RW_BIND),
    }


def write_rootfs(rootfs: Path, etc_files: dict[str, str]) -> None:
    """A tiny root: generated /etc files, symlinks mirroring the host's merged-/usr links,
    and empty mount points; everything else comes from mounts."""
    (rootfs / "etc").mkdir(parents=True, exist_ok=True)
    for name, content in etc_files.items():
        path = rootfs / "etc" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(0o644)
    for name in ("app", "tmp", "proc", "dev", "sys", "usr"):
        (rootfs / name).mkdir(exist_ok=True)
    # runc gives a tmpfs the mode of the directory it is mounted on.
    (rootfs / "tmp").chmod(0o1777)
    for top in STACK_DIRS:
        host = Path(top)
        target = rootfs / top.lstrip("/")
        if host.is_symlink():
            target.symlink_to(os.readlink(host))
        elif host.is_dir():
            target.mkdir(exist_ok=True)
    rootfs.chmod(0o755)


def stack_mounts() -> list[dict[str, Any]]:
    mounts = [
        bind(top, top) for top in STACK_DIRS if not Path(top).is_symlink() and Path(top).is_dir()
    ]
    if CERTS_DIR.is_dir():
        mounts.append(bind(CERTS_DIR, str(CERTS_DIR)))
    return mounts


def base_mounts(tmp_mb: int = 256) -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/tmp",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777", f"size={tmp_mb * 1024}k"],
        },
    ]


def seccomp_profile() -> dict[str, Any]:
    arches = {
        "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    }.get(platform.machine(), [])
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": arches,
        "syscalls": [
            {"names": BLOCKED_SYSCALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
            # glibc falls back to clone() on ENOSYS; clone3's flags cannot be filtered.
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": [
                    {
                        "index": 0,
                        "value": CLONE_NEWUSER,
                        "valueTwo": CLONE_NEWUSER,
                        "op": "SCMP_CMP_MASKED_EQ",
                    }
                ],
            },
        ],
    }


def etc_files(uid: int, hostname: str, hosts: str) -> dict[str, str]:
    return {
        "passwd": (
            "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
            f"app:x:{uid}:{uid}:app:/app:/bin/sh\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        ),
        "group": f"root:x:0:\napp:x:{uid}:\nnogroup:x:65534:\n",
        "hosts": hosts,
        "hostname": f"{hostname}\n",
        "nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n",
    }


def memory_resources(memory_mb: int) -> dict[str, int]:
    limit = memory_mb * 1024 * 1024
    resources = {"limit": limit}
    if cgroups.on_host().swap_accounted():  # memory+swap at the limit: no swap of its own
        resources["swap"] = limit
    return resources


def config_json(cfg: ContainerConfig) -> dict[str, Any]:
    namespaces: list[dict[str, str]] = [
        {"type": "pid"},
        {"type": "ipc"},
        {"type": "uts"},
        {"type": "mount"},
    ]
    if cfg.netns_path:
        namespaces.append({"type": "network", "path": cfg.netns_path})
    env = {"PATH": DEFAULT_PATH, "HOME": "/app", "LANG": "C.UTF-8", **cfg.env}
    caps: dict[str, list[str]] = {
        name: [] for name in ("bounding", "effective", "inheritable", "permitted", "ambient")
    }
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": cfg.terminal,
            "user": {"uid": cfg.uid, "gid": cfg.uid, "additionalGids": [cfg.uid]},
            "args": cfg.args,
            "env": [f"{key}={value}" for key, value in env.items()],
            "cwd": "/app",
            "capabilities": caps,
            "noNewPrivileges": True,
        },
        "root": {"path": cfg.root_path, "readonly": True},
        "hostname": cfg.hostname,
        "mounts": [
            *base_mounts(cfg.tmp_mb),
            *stack_mounts(),
            bind(cfg.app_source, "/app", readonly=False),
            *cfg.extra_mounts,
        ],
        "linux": {
            "cgroupsPath": cfg.cgroups_path,
            "resources": {
                "devices": [{"allow": False, "access": "rwm"}],
                "memory": memory_resources(cfg.memory_mb),
                "pids": {"limit": cfg.pids_limit},
                "cpu": {"shares": cfg.cpu_shares},
            },
            "namespaces": namespaces,
            "seccomp": seccomp_profile(),
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }
