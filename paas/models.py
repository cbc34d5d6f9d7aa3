"""SQLAlchemy models: the platform's state. The API process is their only writer."""

from __future__ import annotations

import enum
import time
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker


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


class DynoState(enum.StrEnum):
    """starting → up → (crashed → starting …) | down, as the agent reports them."""

    STARTING = "starting"
    UP = "up"
    CRASHED = "crashed"
    DOWN = "down"


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


class Formation(Base):
    __tablename__ = "formation"
    __table_args__ = (UniqueConstraint("app_id", "type"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(63))
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    size: Mapped[str] = mapped_column(String(32), default="basic")


class Dyno(Base):
    """A dyno as the agent last reported it."""

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


def make_engine(url: str) -> Engine:
    sqlite = url.startswith("sqlite")
    connect_args = {"timeout": 30, "check_same_thread": False} if sqlite else {}
    engine = create_engine(url, connect_args=connect_args)
    if sqlite:

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    return engine


def make_sessionmaker(url: str) -> sessionmaker:
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    return sessionmaker(engine, expire_on_commit=False)
