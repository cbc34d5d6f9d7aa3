"""Platform settings, read from the environment (the platform is twelve-factor too).

Every time limit Heroku has is a setting here, so tests can run them in seconds.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path


class SettingError(ValueError):
    """A setting whose value cannot be used: its name, the value, what is wrong, and a good one."""

    def __init__(self, name: str, value: str, problem: str, example: str) -> None:
        self.name, self.value, self.problem, self.example = name, value, problem, example
        super().__init__(f"{name}={value!r}: {problem} (for example {name}={example})")


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _int(name: str, default: int) -> int:
    """A whole number, 0 or more."""
    raw = os.environ.get(name, str(default)).strip()
    if not raw.isdigit():
        raise SettingError(name, raw, "must be a whole number, 0 or more", str(default))
    return int(raw)


def _port(name: str, default: int, zero_is_off: bool = False) -> int:
    """A TCP port, 1 to 65535 (or 0, where that turns the service off)."""
    raw = os.environ.get(name, str(default)).strip()
    lowest = 0 if zero_is_off else 1
    if not raw.isdigit() or not lowest <= int(raw) < 65536:
        problem = "must be a TCP port, 1 to 65535" + (", or 0 (off)" if zero_is_off else "")
        raise SettingError(name, raw, problem, str(default))
    return int(raw)


def _float(name: str, default: float) -> float:
    """A number, 0 or more."""
    raw = os.environ.get(name, str(default)).strip()
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise SettingError(name, raw, "must be a number, 0 or more", f"{default:g}")
    return value


def _seconds(name: str, default: float) -> float:
    """A duration in seconds, more than 0."""
    raw = os.environ.get(name, str(default)).strip()
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise SettingError(name, raw, "must be a number of seconds above 0", f"{default:g}")
    return value


def _disk_mb(name: str, default: int) -> int:
    """A build disk size in MB: 0 (no limit: plain directories) or at least 16."""
    raw = os.environ.get(name, str(default)).strip()
    if not raw.isdigit() or 0 < int(raw) < 16:
        raise SettingError(name, raw, "must be a whole number of megabytes, 0 (no limit) or "
                           "at least 16", str(default))
    return int(raw)


def _acme_url(name: str) -> str:
    raw = os.environ.get(name, "").strip()
    if raw and not raw.startswith(("https://", "http://")):
        raise SettingError(name, raw, "must be the URL of an ACME directory",
                           "https://acme-v02.api.letsencrypt.org/directory")
    return raw


def _acme_bundle(name: str) -> str:
    raw = os.environ.get(name, "").strip()
    if raw and not Path(raw).is_file():
        raise SettingError(name, raw, "must be a PEM file of CA certificates",
                           "/etc/paas/acme-ca.pem")
    return raw


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=lambda: Path(_env("PAAS_HOME", "/var/lib/paas")))
    # Where this host's agent keeps its dynos and runc state; empty: PAAS_HOME. Two agents on
    # one machine (two nodes, as the tests run them) need one each.
    runtime_home_override: str = field(default_factory=lambda: _env("PAAS_RUNTIME_HOME", ""))
    # This agent's node: its name, and the sum of its dynos' memory limits it accepts (0: four
    # times the host's memory, paas/runtime/agent/node.py).
    node_name: str = field(default_factory=lambda: _env("PAAS_NODE_NAME", socket.gethostname()))
    node_memory_mb: int = field(default_factory=lambda: _int("PAAS_NODE_MEMORY_MB", 0))
    # A node not heard from for this long is lost: its dynos are assigned to other nodes.
    node_grace: float = field(default_factory=lambda: _seconds("PAAS_NODE_GRACE", 30))
    api_host: str = field(default_factory=lambda: _env("PAAS_API_HOST", "127.0.0.1"))
    api_port: int = field(default_factory=lambda: _port("PAAS_API_PORT", 8400))
    api_url_override: str = field(default_factory=lambda: _env("PAAS_API_URL", ""))
    router_port: int = field(default_factory=lambda: _port("PAAS_ROUTER_PORT", 80))
    router_control_port: int = field(
        default_factory=lambda: _port("PAAS_ROUTER_CONTROL_PORT", 8401)
    )
    router_tls_port: int = field(default_factory=lambda: _port("PAAS_ROUTER_TLS_PORT", 443))
    # Heroku's router: 30 s for the app's first response byte (H12), then 503.
    router_timeout: float = field(default_factory=lambda: _float("PAAS_ROUTER_TIMEOUT", 30))
    router_connect_timeout: float = field(
        default_factory=lambda: _float("PAAS_ROUTER_CONNECT_TIMEOUT", 5)
    )
    router_max_body_mb: int = field(default_factory=lambda: _int("PAAS_ROUTER_MAX_BODY_MB", 100))
    domain: str = field(default_factory=lambda: _env("PAAS_DOMAIN", "localhost"))
    database_url_override: str = field(default_factory=lambda: _env("PAAS_DATABASE_URL", ""))
    redis_url_override: str = field(default_factory=lambda: _env("PAAS_REDIS_URL", ""))
    # The dyno network: one /24 per app is carved out of this /16.
    dyno_subnet: str = field(default_factory=lambda: _env("PAAS_DYNO_SUBNET", "10.213.0.0/16"))
    dyno_port: int = field(default_factory=lambda: _port("PAAS_DYNO_PORT", 5000))
    # Internal destinations builds may reach through their egress proxy all the same, such as
    # a package mirror on the LAN: "10.1.2.3:3141, 192.168.7.0/24" (paas/runtime/egress.py).
    egress_allow: str = field(default_factory=lambda: _env("PAAS_EGRESS_ALLOW", ""))
    # TCP ports of services on the host that dynos may reach at their gateway (the first
    # address of their app's network), such as a database: "5432, 6380". None by default.
    dyno_host_ports: str = field(default_factory=lambda: _env("PAAS_DYNO_HOST_PORTS", ""))
    build_timeout: float = field(default_factory=lambda: _float("PAAS_BUILD_TIMEOUT", 900))
    build_memory_mb: int = field(default_factory=lambda: _int("PAAS_BUILD_MEMORY_MB", 2048))
    # Each build's workspace (/app) is a loop-mounted ext4 image of this many MB, and each
    # app's build cache (where the layers are built: /app/.layers) one of its own that is kept
    # between builds. Sparse: only what a build writes takes host disk. 0: no limit.
    build_disk_mb: int = field(default_factory=lambda: _disk_mb("PAAS_BUILD_DISK_MB", 2048))
    build_cache_mb: int = field(default_factory=lambda: _disk_mb("PAAS_BUILD_CACHE_MB", 4096))
    # A build worker refreshes its build's lease this often; a lease not refreshed for three
    # intervals means the worker is gone, and the API's reaper fails the build.
    build_heartbeat: float = field(default_factory=lambda: _float("PAAS_BUILD_HEARTBEAT", 5))
    boot_timeout: float = field(default_factory=lambda: _float("PAAS_BOOT_TIMEOUT", 60))
    # A pending release not live this long after PAAS_BOOT_TIMEOUT fails (paas/reaper.py).
    release_margin: float = field(default_factory=lambda: _float("PAAS_RELEASE_MARGIN", 60))
    # A release phase (the `release:` one-off) running longer fails its release and is stopped.
    release_phase_timeout: float = field(
        default_factory=lambda: _seconds("PAAS_RELEASE_PHASE_TIMEOUT", 900))
    # A build that no worker took within this long fails (paas/reaper.py).
    build_queue_timeout: float = field(
        default_factory=lambda: _float("PAAS_BUILD_QUEUE_TIMEOUT", 1800))
    stop_grace: float = field(default_factory=lambda: _float("PAAS_STOP_GRACE", 30))
    agent_interval: float = field(default_factory=lambda: _float("PAAS_AGENT_INTERVAL", 1.0))
    restart_backoff: float = field(default_factory=lambda: _float("PAAS_RESTART_BACKOFF", 1.0))
    restart_backoff_cap: float = field(
        default_factory=lambda: _float("PAAS_RESTART_BACKOFF_CAP", 1200)
    )
    dyno_memory_mb: int = field(default_factory=lambda: _int("PAAS_DYNO_MEMORY_MB", 512))
    dyno_pids: int = field(default_factory=lambda: _int("PAAS_DYNO_PIDS", 256))
    log_lines: int = field(default_factory=lambda: _int("PAAS_LOG_LINES", 1500))
    # A dyno's output file on disk: once this much of it is shipped, its head is cut off.
    dyno_log_max_bytes: int = field(
        default_factory=lambda: _int("PAAS_DYNO_LOG_MAX_BYTES", 8 * 1024 * 1024)
    )
    # ...and at most this much of it not yet shipped (the agent stopped, a flood): the rest is
    # dropped, counted in an `Error L10 (Log truncated)` line.
    dyno_log_unshipped_max_bytes: int = field(
        default_factory=lambda: _int("PAAS_DYNO_LOG_UNSHIPPED_MAX_BYTES", 8 * 1024 * 1024)
    )
    max_push_bytes: int = field(
        default_factory=lambda: _int("PAAS_MAX_PUSH_BYTES", 512 * 1024 * 1024)
    )
    # A pushed tree unpacked: its total size, its largest file and its number of files
    # (paas/sourcetree.py; refused by the receiver, and again by the worker as it unpacks).
    max_source_mb: int = field(default_factory=lambda: _int("PAAS_MAX_SOURCE_MB", 1024))
    max_source_file_mb: int = field(
        default_factory=lambda: _int("PAAS_MAX_SOURCE_FILE_MB", 256)
    )
    max_source_files: int = field(default_factory=lambda: _int("PAAS_MAX_SOURCE_FILES", 100000))
    # The memory cgroup limit of each of the platform's own services (paas/service_cgroups.py);
    # 0: no limit. A service over its limit is OOM-killed and `paas up` restarts it.
    api_memory_mb: int = field(default_factory=lambda: _int("PAAS_API_MEMORY_MB", 1536))
    worker_memory_mb: int = field(default_factory=lambda: _int("PAAS_WORKER_MEMORY_MB", 1536))
    agent_memory_mb: int = field(default_factory=lambda: _int("PAAS_AGENT_MEMORY_MB", 512))
    router_memory_mb: int = field(default_factory=lambda: _int("PAAS_ROUTER_MEMORY_MB", 512))
    redis_memory_mb: int = field(default_factory=lambda: _int("PAAS_REDIS_MEMORY_MB", 1024))
    # The roles of the `node` service (paas/roles.py: agent, router, worker) that `paas up`
    # runs as processes of their own instead, each in its own memory cgroup (comma-separated).
    roles_apart: tuple[str, ...] = field(default_factory=lambda: tuple(
        role for role in _env("PAAS_ROLES_APART", "").replace(",", " ").split()))
    # Set by `paas up` for its services: the memory cgroup (its own) that what they start in
    # a session of their own joins before it allocates (the agent's dyno monitors); empty:
    # where the starter is.
    detached_cgroup: str = field(default_factory=lambda: _env("PAAS_DETACHED_CGROUP", ""))
    # git over SSH, served by the API process; host empty: the API's host
    ssh_host: str = field(default_factory=lambda: _env("PAAS_SSH_HOST", ""))
    ssh_port: int = field(default_factory=lambda: _port("PAAS_SSH_PORT", 2222, zero_is_off=True))
    # The dashboard's signed session cookie is refused after this many seconds.
    session_max_age: float = field(default_factory=lambda: _float("PAAS_SESSION_MAX_AGE", 43200))
    # The scheduler of cron and platform jobs (paas/clock.py) looks this often for due work;
    # it runs in the API process unless PAAS_CLOCK_IN_API=0 (then run `python -m paas.clock`).
    clock_tick: float = field(default_factory=lambda: _seconds("PAAS_CLOCK_TICK", 1.0))
    clock_in_api: int = field(default_factory=lambda: _int("PAAS_CLOCK_IN_API", 1))

    # Postgres backups (paas/addons/backups.py): the store's size in MB (0: the disk's free
    # space is the limit), how many scheduled backups of an add-on are kept, how long a
    # destroyed add-on's last backup is kept, and the longest capture + verification.
    backup_store_mb: int = field(default_factory=lambda: _int("PAAS_BACKUP_STORE_MB", 0))
    backup_keep_scheduled: int = field(
        default_factory=lambda: _int("PAAS_BACKUP_KEEP_SCHEDULED", 7))
    backup_retention_days: float = field(
        default_factory=lambda: _float("PAAS_BACKUP_RETENTION_DAYS", 7))
    backup_timeout: float = field(default_factory=lambda: _seconds("PAAS_BACKUP_TIMEOUT", 3600))

    # Automatic HTTPS (paas/autocerts.py): the ACME CA's directory URL; empty: off.
    acme_directory: str = field(default_factory=lambda: _acme_url("PAAS_ACME_DIRECTORY"))
    acme_email: str = field(default_factory=lambda: _env("PAAS_ACME_EMAIL", "").strip())
    # A PEM bundle the ACME client trusts for the CA's own HTTPS (a private or test CA);
    # empty: the system's.
    acme_ca_bundle: str = field(default_factory=lambda: _acme_bundle("PAAS_ACME_CA_BUNDLE"))
    # A failed order is tried again after this, doubled each failure up to a day.
    acme_retry: float = field(default_factory=lambda: _seconds("PAAS_ACME_RETRY", 300))
    # The orderer's platform job runs this often.
    acme_interval: float = field(default_factory=lambda: _seconds("PAAS_ACME_INTERVAL", 10))
    # New certificates per registered domain per 7 days (Let's Encrypt's limit: 50).
    acme_weekly_limit: int = field(default_factory=lambda: _int("PAAS_ACME_WEEKLY_LIMIT", 50))

    @property
    def api_url(self) -> str:
        return self.api_url_override or f"http://127.0.0.1:{self.api_port}"

    @property
    def database_url(self) -> str:
        return self.database_url_override or f"sqlite:///{self.home / 'paas.db'}"

    @property
    def redis_socket(self) -> Path:
        return self.home / "redis" / "redis.sock"

    @property
    def redis_url(self) -> str:
        return self.redis_url_override or f"unix://{self.redis_socket}"

    @property
    def admin_token_path(self) -> Path:
        return self.home / "admin-token"

    @property
    def service_token_path(self) -> Path:
        return self.home / "service-token"

    @property
    def repos_dir(self) -> Path:
        return self.home / "repos"

    @property
    def layers_dir(self) -> Path:
        return self.home / "layers"

    @property
    def builds_dir(self) -> Path:
        return self.home / "builds"

    @property
    def backups_dir(self) -> Path:
        return self.home / "backups"

    @property
    def backup_scratch_dir(self) -> Path:
        return self.home / "backup-scratch"

    @property
    def runtime_home(self) -> Path:
        return Path(self.runtime_home_override) if self.runtime_home_override else self.home

    @property
    def dynos_dir(self) -> Path:
        return self.runtime_home / "dynos"

    @property
    def router_dir(self) -> Path:
        return self.home / "router"

    @property
    def acme_dir(self) -> Path:
        """The ACME account (its key, 0600): root only, never under a dyno's or build's reach."""
        return self.home / "acme"

    @property
    def runc_root(self) -> Path:
        return self.runtime_home / "runc"

    @property
    def install_id(self) -> str:
        """Four hex digits naming this installation in host-global namespaces
        (network interfaces, netns names, cgroups), so two PAAS_HOMEs (or two agents' runtime
        homes) never collide."""
        return install_id_of(self.runtime_home)


def install_id_of(runtime_home: Path) -> str:
    return hashlib.sha256(str(runtime_home.resolve()).encode()).hexdigest()[:4]


def load() -> Settings:
    return Settings()
