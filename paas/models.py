"""SQLAlchemy models: the platform's state. The API process is their only writer."""

from __future__ import annotations

import contextlib
import enum
import os
import time
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    false,
    true,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

from paas import database


class Base(DeclarativeBase):
    pass


def now() -> float:
    return time.time()


class BuildStatus(enum.StrEnum):
    """pending → building → succeeded | failed; pending → failed (never picked up)."""

    PENDING = "pending"
    BUILDING = "building"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


BUILD_TRANSITIONS: dict[BuildStatus, set[BuildStatus]] = {
    BuildStatus.PENDING: {BuildStatus.BUILDING, BuildStatus.FAILED},
    BuildStatus.BUILDING: {BuildStatus.SUCCEEDED, BuildStatus.FAILED},
    BuildStatus.SUCCEEDED: set(),
    BuildStatus.FAILED: set(),
}


class ReleaseStatus(enum.StrEnum):
    """pending (its dynos are starting) → succeeded (went live) | failed (never healthy)."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


RELEASE_TRANSITIONS: dict[ReleaseStatus, set[ReleaseStatus]] = {
    ReleaseStatus.PENDING: {ReleaseStatus.SUCCEEDED, ReleaseStatus.FAILED},
    ReleaseStatus.SUCCEEDED: set(),
    ReleaseStatus.FAILED: set(),
}


class OneOffState(enum.StrEnum):
    """A one-off dyno (`paas run`, a release phase): requested → running → exited;
    requested → exited (it could not start); requested | running → stopping → exited."""

    REQUESTED = "requested"
    RUNNING = "running"
    STOPPING = "stopping"
    EXITED = "exited"


ONEOFF_TRANSITIONS: dict[OneOffState, set[OneOffState]] = {
    OneOffState.REQUESTED: {OneOffState.RUNNING, OneOffState.STOPPING, OneOffState.EXITED},
    OneOffState.RUNNING: {OneOffState.STOPPING, OneOffState.EXITED},
    OneOffState.STOPPING: {OneOffState.EXITED},
    OneOffState.EXITED: set(),
}


class CronRunState(enum.StrEnum):
    """A run of an app's cron job: running (its one-off dyno cron.N is live) → finished
    (exit code and duration known); skipped (the job's last run was still going when this
    one was due) is final from the start."""

    RUNNING = "running"
    FINISHED = "finished"
    SKIPPED = "skipped"


CRON_RUN_TRANSITIONS: dict[CronRunState, set[CronRunState]] = {
    CronRunState.RUNNING: {CronRunState.FINISHED},
    CronRunState.FINISHED: set(),
    CronRunState.SKIPPED: set(),
}


class JobRunState(enum.StrEnum):
    """A run of a platform job: (requested, by `admin:jobs:run` →) running → succeeded |
    failed (it raised, or its scheduler process died during it)."""

    REQUESTED = "requested"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


JOB_RUN_TRANSITIONS: dict[JobRunState, set[JobRunState]] = {
    JobRunState.REQUESTED: {JobRunState.RUNNING},
    JobRunState.RUNNING: {JobRunState.SUCCEEDED, JobRunState.FAILED},
    JobRunState.SUCCEEDED: set(),
    JobRunState.FAILED: set(),
}


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    is_admin: Mapped[bool] = mapped_column(default=False)
    is_service: Mapped[bool] = mapped_column(default=False)
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[float] = mapped_column(default=now)


class Token(Base):
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[float] = mapped_column(default=now)
    user: Mapped[User] = relationship()


class SshKey(Base):
    """A user's SSH public key: it lets git push and fetch over SSH as that user."""

    __tablename__ = "ssh_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    fingerprint: Mapped[str] = mapped_column(String(100), unique=True)  # "SHA256:..."
    public_key: Mapped[str] = mapped_column(Text)  # "ssh-ed25519 AAAA..." without comment
    comment: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[float] = mapped_column(default=now)
    user: Mapped[User] = relationship()


class App(Base):
    __tablename__ = "apps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(30), unique=True)
    # The app's slot: picks its /24 on the dyno network and its uid.
    slot: Mapped[int] = mapped_column(Integer, unique=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    current_release_id: Mapped[int | None] = mapped_column(
        ForeignKey("releases.id", use_alter=True), default=None
    )
    pending_release_id: Mapped[int | None] = mapped_column(
        ForeignKey("releases.id", use_alter=True), default=None
    )
    created_at: Mapped[float] = mapped_column(default=now)
    # `paas maintenance:on`: the router answers 503 H80 instead of routing to the dynos.
    maintenance: Mapped[bool] = mapped_column(default=False)
    # SIGTERM → this many seconds → SIGKILL; None: the platform's PAAS_STOP_GRACE.
    stop_grace: Mapped[float | None] = mapped_column(default=None)
    # Automatic HTTPS (paas/autocerts.py): certificates ordered from the ACME CA when on.
    acme_enabled: Mapped[bool] = mapped_column(default=True, server_default=true())
    # `paas https:redirect on`: HTTP → HTTPS (308) for hostnames with a certificate, and
    # Strict-Transport-Security with this max-age when above 0.
    https_redirect: Mapped[bool] = mapped_column(default=False, server_default=false())
    hsts_max_age: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    @property
    def uid(self) -> int:
        return 20000 + self.slot


class Build(Base):
    __tablename__ = "builds"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    ref: Mapped[str] = mapped_column(String(255))
    old_commit: Mapped[str] = mapped_column(String(40))
    commit: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16), default=BuildStatus.PENDING)
    error: Mapped[str] = mapped_column(Text, default="")
    slug: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[float] = mapped_column(default=now)
    started_at: Mapped[float | None] = mapped_column(default=None)
    finished_at: Mapped[float | None] = mapped_column(default=None)
    created_by: Mapped[str] = mapped_column(String(254), default="")
    app: Mapped[App] = relationship()


class Release(Base):
    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("app_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    # At most one release per build: a retried build task cannot release twice.
    build_id: Mapped[str | None] = mapped_column(ForeignKey("builds.id"), unique=True)
    commit: Mapped[str] = mapped_column(String(40), default="")
    slug: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    config: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    description: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[str] = mapped_column(String(16), default=ReleaseStatus.PENDING)
    error: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(254), default="")
    created_at: Mapped[float] = mapped_column(default=now)
    app: Mapped[App] = relationship(foreign_keys=[app_id])


class ConfigVar(Base):
    __tablename__ = "config_vars"
    __table_args__ = (UniqueConstraint("app_id", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text)


class Collaborator(Base):
    """A user other than the owner who may see and change an app."""

    __tablename__ = "collaborators"
    __table_args__ = (UniqueConstraint("app_id", "user_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[float] = mapped_column(default=now)
    user: Mapped[User] = relationship()


class Formation(Base):
    __tablename__ = "formation"
    __table_args__ = (UniqueConstraint("app_id", "type"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(63))
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    size: Mapped[str] = mapped_column(String(32), default="basic")
    # `ps:restart`: "*" (every dyno of the type) or a dyno index -> when it was asked for.
    restart_marks: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)


class Node(Base):
    """A host running a scheduler backend (an agent): it registers itself, then its every
    request for its desired state is a heartbeat."""

    __tablename__ = "nodes"
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    memory_mb: Mapped[int] = mapped_column(Integer)  # what its dynos may use in all
    backend: Mapped[str] = mapped_column(String(32), default="runc")
    dyno_subnet: Mapped[str] = mapped_column(String(43), default="")
    registered_at: Mapped[float] = mapped_column(default=now)
    heartbeat_at: Mapped[float] = mapped_column(default=now)


class Assignment(Base):
    """Which node runs a desired dyno: a formation dyno's key (app, type, index: the same
    across releases, so a deploy's web.1 lands where the last one ran) or a live one-off
    (oneoff, index = its number). node None: it fits on no node, `reason` says why."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("app_id", "type", "index", "oneoff"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(63))
    index: Mapped[int] = mapped_column(Integer)
    oneoff: Mapped[bool] = mapped_column(default=False)
    node: Mapped[str | None] = mapped_column(String(63), default=None)
    memory_mb: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(Text, default="")


class Dyno(Base):
    """A dyno as its node last reported it."""

    __tablename__ = "dynos"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    release_version: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(63))
    index: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    ip: Mapped[str] = mapped_column(String(45), default="")
    port: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[float] = mapped_column(default=now)
    exit_code: Mapped[int | None] = mapped_column(default=None)
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    output_tail: Mapped[str] = mapped_column(Text, default="")
    memory_mb: Mapped[float] = mapped_column(default=0.0)
    cpu_percent: Mapped[float | None] = mapped_column(default=None)  # of one core
    # Why the platform stopped or failed it (R10, a failed health check, R15), if it did.
    reason: Mapped[str] = mapped_column(Text, default="")
    # The node that reports it; None: reported before nodes existed (the next report of any
    # node replaces those rows).
    node: Mapped[str | None] = mapped_column(String(63), default=None)


class OneOff(Base):
    """A one-off dyno: `paas run` (type "run") or a release phase (type "release")."""

    __tablename__ = "oneoffs"
    __table_args__ = (UniqueConstraint("app_id", "type", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    release_id: Mapped[int] = mapped_column(ForeignKey("releases.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16), default="run")
    number: Mapped[int] = mapped_column(Integer)
    command: Mapped[str] = mapped_column(Text)
    attach: Mapped[bool] = mapped_column(default=False)
    tty: Mapped[bool] = mapped_column(default=False)  # attached with a terminal
    size: Mapped[str] = mapped_column(String(32), default="basic")
    env: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16), default=OneOffState.REQUESTED)
    exit_code: Mapped[int | None] = mapped_column(default=None)
    output_tail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(default=now)
    finished_at: Mapped[float | None] = mapped_column(default=None)
    release: Mapped[Release] = relationship()


class Domain(Base):
    """A custom hostname (or `*.example.com` wildcard) routed to one app."""

    __tablename__ = "domains"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    hostname: Mapped[str] = mapped_column(String(253), unique=True)
    created_at: Mapped[float] = mapped_column(default=now)


class Certificate(Base):
    """A TLS certificate and its key, served by SNI for the hostnames it covers."""

    __tablename__ = "certificates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63), unique=True)
    cert_pem: Mapped[str] = mapped_column(Text)
    key_pem: Mapped[str] = mapped_column(Text)
    hostnames: Mapped[list[str]] = mapped_column(JSON, default=list)
    expires_at: Mapped[float] = mapped_column(default=0.0)
    created_at: Mapped[float] = mapped_column(default=now)
    app: Mapped[App] = relationship()


class CronJob(Base):
    """One of app.json's `cron` jobs of the app's current release (`paas/cron.py:sync`).
    `key` is the job's id: a digest of its schedule, zone and command, so an unchanged job
    keeps its id and its runs across deploys."""

    __tablename__ = "cron_jobs"
    __table_args__ = (UniqueConstraint("app_id", "key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(16))
    command: Mapped[str] = mapped_column(Text)
    schedule: Mapped[str] = mapped_column(String(200))
    tz: Mapped[str] = mapped_column(String(64), default="UTC")
    position: Mapped[int] = mapped_column(Integer, default=0)  # its place in app.json
    # No due time before this one counts (a new job does not run for the day it missed).
    created_at: Mapped[float] = mapped_column(default=now)


class CronRun(Base):
    """A due time of a cron job, claimed once: the unique (job, due_at) row is the claim, so
    no two schedulers (nor one restarted) run a due time twice. A run asked for by
    `cron:run` has trigger "manual" and its request time as due_at."""

    __tablename__ = "cron_runs"
    __table_args__ = (UniqueConstraint("job_id", "due_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("cron_jobs.id", ondelete="CASCADE"))
    due_at: Mapped[float] = mapped_column()
    trigger: Mapped[str] = mapped_column(String(16), default="schedule")
    state: Mapped[str] = mapped_column(String(16), default=CronRunState.RUNNING)
    oneoff_id: Mapped[int | None] = mapped_column(
        ForeignKey("oneoffs.id", ondelete="SET NULL"), default=None)
    dyno: Mapped[str] = mapped_column(String(32), default="")  # cron.N
    exit_code: Mapped[int | None] = mapped_column(default=None)
    started_at: Mapped[float] = mapped_column(default=now)
    finished_at: Mapped[float | None] = mapped_column(default=None)
    note: Mapped[str] = mapped_column(Text, default="")  # why it was skipped
    job: Mapped[CronJob] = relationship()


class PlatformJobRun(Base):
    """A due time of a platform job (`paas/platform_jobs.py`), claimed once by the unique
    (name, due_at) row; `runner` is the scheduler process that runs it (host:pid)."""

    __tablename__ = "platform_job_runs"
    __table_args__ = (UniqueConstraint("name", "due_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(63))
    due_at: Mapped[float] = mapped_column()
    trigger: Mapped[str] = mapped_column(String(16), default="schedule")
    state: Mapped[str] = mapped_column(String(16), default=JobRunState.RUNNING)
    runner: Mapped[str] = mapped_column(String(128), default="")
    started_at: Mapped[float] = mapped_column(default=now)
    finished_at: Mapped[float | None] = mapped_column(default=None)
    summary: Mapped[str] = mapped_column(Text, default="")
class AddonState(enum.StrEnum):
    """An add-on (paas/addons/addons.py): creating (its server not yet up once) → available;
    available → restarting (a new plan or credentials: its server is replaced, stop first)
    → available; available | restarting | creating → crashed (its server exited; its node
    starts it again) → available; any → destroyed (its server stopped, its data deleted)."""

    CREATING = "creating"
    AVAILABLE = "available"
    RESTARTING = "restarting"
    CRASHED = "crashed"
    DESTROYED = "destroyed"


ADDON_TRANSITIONS: dict[AddonState, set[AddonState]] = {
    AddonState.CREATING: {AddonState.AVAILABLE, AddonState.CRASHED, AddonState.DESTROYED},
    AddonState.AVAILABLE: {AddonState.RESTARTING, AddonState.CRASHED, AddonState.DESTROYED},
    AddonState.RESTARTING: {AddonState.AVAILABLE, AddonState.CRASHED, AddonState.DESTROYED},
    AddonState.CRASHED: {AddonState.AVAILABLE, AddonState.RESTARTING, AddonState.DESTROYED},
    AddonState.DESTROYED: set(),
}


class Addon(Base):
    """A Postgres or Redis server of an app's (its owner, which pays for it on Heroku), its
    data on one node. A destroyed add-on's row stays (its name is kept, its backups'
    retention counts from `destroyed_at`)."""

    __tablename__ = "addons"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    service: Mapped[str] = mapped_column(String(32))
    plan: Mapped[str] = mapped_column(String(32))
    app_id: Mapped[int | None] = mapped_column(ForeignKey("apps.id", ondelete="SET NULL"))
    app_name: Mapped[str] = mapped_column(String(30))  # the owner's name, also once it is gone
    # uid 40000 + number; unique among add-ons, never an app's (20000 + slot).
    number: Mapped[int] = mapped_column(Integer, unique=True)
    state: Mapped[str] = mapped_column(String(16), default=AddonState.CREATING)
    reason: Mapped[str] = mapped_column(Text, default="")  # why it is not available
    node: Mapped[str | None] = mapped_column(String(63), default=None)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    username: Mapped[str] = mapped_column(String(63))
    password: Mapped[str] = mapped_column(String(128))
    database: Mapped[str] = mapped_column(String(63), default="")
    superuser_password: Mapped[str] = mapped_column(String(128), default="")
    memory_mb: Mapped[float] = mapped_column(default=0.0)
    started_at: Mapped[float | None] = mapped_column(default=None)
    created_by: Mapped[str] = mapped_column(String(254), default="")
    created_at: Mapped[float] = mapped_column(default=now)
    destroyed_at: Mapped[float | None] = mapped_column(default=None)

    @property
    def uid(self) -> int:
        return 40000 + self.number


class AddonAttachment(Base):
    """An app an add-on is attached to, as NAME (its config var NAME_URL); its server has the
    address_index-th add-on address on that app's network."""

    __tablename__ = "addon_attachments"
    __table_args__ = (UniqueConstraint("app_id", "name"), UniqueConstraint("addon_id", "app_id"),
                      UniqueConstraint("app_id", "address_index"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    addon_id: Mapped[int] = mapped_column(ForeignKey("addons.id", ondelete="CASCADE"))
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    address_index: Mapped[int] = mapped_column(Integer)
    # Its config var waits for the server (creating, restarting): set in a new release then.
    config_pending: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str] = mapped_column(String(254), default="")
    created_at: Mapped[float] = mapped_column(default=now)
    addon: Mapped[Addon] = relationship()
    app: Mapped[App] = relationship()
class BackupState(enum.StrEnum):
    """A Postgres backup (paas/addons/backups.py): capturing (pg_dump) → verifying (restored
    into a scratch server, row counts compared) → verified; capturing | verifying → failed
    (with the reason); verified | failed → verifying again (`pg:backups:verify` of a stored
    file). Only a verified backup is offered as good."""

    CAPTURING = "capturing"
    VERIFYING = "verifying"
    VERIFIED = "verified"
    FAILED = "failed"


BACKUP_TRANSITIONS: dict[BackupState, set[BackupState]] = {
    BackupState.CAPTURING: {BackupState.VERIFYING, BackupState.FAILED},
    BackupState.VERIFYING: {BackupState.VERIFIED, BackupState.FAILED},
    # verified | failed → verifying: `pg:backups:verify` restores a stored file again
    BackupState.VERIFIED: {BackupState.VERIFYING},
    BackupState.FAILED: {BackupState.VERIFYING},
}


class Backup(Base):
    """One pg_dump of an app's Postgres add-on, `b<number>` per app. The add-on is named by
    a string (`addon`), not a foreign key: its backups outlive it (retention), and the
    add-on's own table is another module's. A destroyed app's backups keep `app_name`."""

    __tablename__ = "backups"
    __table_args__ = (UniqueConstraint("app_id", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int | None] = mapped_column(ForeignKey("apps.id", ondelete="SET NULL"))
    app_name: Mapped[str] = mapped_column(String(30))
    addon: Mapped[str] = mapped_column(String(63))
    number: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16), default="manual")  # manual | scheduled
    state: Mapped[str] = mapped_column(String(16), default=BackupState.CAPTURING)
    progress: Mapped[str] = mapped_column(Text, default="")  # the step under way, for users
    error: Mapped[str] = mapped_column(Text, default="")  # why it failed
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    # {"public.orders": 12, ...}: counted in the dump's own snapshot
    tables: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(254), default="")
    created_at: Mapped[float] = mapped_column(default=now)
    finished_at: Mapped[float | None] = mapped_column(default=None)
    # Refreshed while a capture runs: a capture whose process died is failed by the sweep.
    heartbeat_at: Mapped[float] = mapped_column(default=now)
    # Set when its add-on was destroyed: kept until then, deleted by the expiry job after.
    keep_until: Mapped[float | None] = mapped_column(default=None)


class BackupSchedule(Base):
    """`pg:backups:schedule --at 02:00`: a daily capture of one add-on of an app."""

    __tablename__ = "backup_schedules"
    __table_args__ = (UniqueConstraint("app_id", "addon"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    addon: Mapped[str] = mapped_column(String(63))
    at_minute: Mapped[int] = mapped_column(Integer)  # minutes after midnight, in `timezone`
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # The last day (YYYY-MM-DD, in `timezone`) its capture started: one per day.
    last_day: Mapped[str] = mapped_column(String(10), default="")
    created_at: Mapped[float] = mapped_column(default=now)


class AutoCert(Base):
    """A hostname's certificate from the ACME CA and where its order stands
    (paas/autocerts.py holds the steps and their transitions)."""

    __tablename__ = "auto_certs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    hostname: Mapped[str] = mapped_column(String(253), unique=True)
    step: Mapped[str] = mapped_column(String(16))
    # Why the last order failed, and when the next one may start.
    reason: Mapped[str] = mapped_column(Text, default="")
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_try_at: Mapped[float] = mapped_column(default=0.0)
    # The order in flight: its URLs at the CA, the http-01 token the router answers, the route
    # generation that first carried it, and the key the certificate will be for.
    order_url: Mapped[str] = mapped_column(Text, default="")
    authz_url: Mapped[str] = mapped_column(Text, default="")
    challenge_url: Mapped[str] = mapped_column(Text, default="")
    token: Mapped[str] = mapped_column(String(128), default="")
    key_authorization: Mapped[str] = mapped_column(Text, default="")
    generation: Mapped[int] = mapped_column(Integer, default=0)
    step_at: Mapped[float] = mapped_column(default=now)
    order_key_pem: Mapped[str] = mapped_column(Text, default="")
    # The certificate served (kept while a renewal is in flight or failing).
    cert_pem: Mapped[str] = mapped_column(Text, default="")
    key_pem: Mapped[str] = mapped_column(Text, default="")
    expires_at: Mapped[float] = mapped_column(default=0.0)
    issued_at: Mapped[float] = mapped_column(default=0.0)
    created_at: Mapped[float] = mapped_column(default=now)


def make_engine(url: str) -> Engine:
    """SQLite (WAL, foreign keys on, waits for its lock) or PostgreSQL through psycopg 3
    (connections checked before use: a restarted server costs no failed request)."""
    target = database.engine_url(url)
    sqlite = target.get_backend_name() == "sqlite"
    if not sqlite:
        return create_engine(target, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    engine = create_engine(target, connect_args={"timeout": 30, "check_same_thread": False})
    if sqlite:

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    return engine


def make_sessionmaker(url: str, *, migrate_in_child: bool = False) -> sessionmaker:
    """Opens the database, first bringing its schema to the newest migration (`migrate_in_child`:
    in a child interpreter, so that a long-running caller does not keep Alembic loaded)."""
    from paas import schema  # here: Alembic is not loaded by every importer of the models

    if migrate_in_child:
        schema.upgrade_in_child(url)
    else:
        schema.upgrade(url)
    _owner_only(url)
    return sessionmaker(make_engine(url), expire_on_commit=False)


def _owner_only(url: str) -> None:
    """A SQLite file holds TLS keys (uploaded and automatic certificates): 0600, as its WAL
    and shared-memory files (SQLite gives them the database file's mode)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix + ":memory:":
        return
    path = url.removeprefix(prefix)
    for name in (path, f"{path}-wal", f"{path}-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(name, 0o600)
