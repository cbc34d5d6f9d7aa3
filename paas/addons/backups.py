"""Postgres backups that are proven to restore (issue 18).

A capture counts every table's rows and dumps the database in one snapshot
(`pgdump.SnapshotSession`, `pg_dump -Fc --snapshot`), into the store (`backupstore`), then
restores the file into a scratch server (`scratch`) and compares the row counts; only then is
it `verified`. Anything that goes wrong fails the backup with the reason, shown by the CLI,
the API, the dashboard and the app's log (`paas[backups]`). States: `models.BackupState`,
changed only by `move`.

Backups belong to an app (`b001`, `b002`, ... per app) and name their add-on by a string.
Where an app's Postgres add-ons are and how to reach them comes from a `Targets` source.
Slow work (`capture`, `verify`, `restore`) is given a `Database` and writes its progress in
short transactions of its own; the API runs it on a thread, the platform jobs in theirs."""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import time
import zoneinfo
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from paas import apps
from paas.addons import pgdump, pgrestore, scratch
from paas.addons.backupstore import BackupStore, StoreError
from paas.addons.static_targets import StaticTargets
from paas.addons.targets import PostgresTarget
from paas.errors import Conflict, Invalid, NotFound
from paas.events import Events
from paas.models import (
    BACKUP_TRANSITIONS,
    App,
    Backup,
    BackupSchedule,
    BackupState,
    User,
    now,
)
from paas.reaper import Database
from paas.settings import Settings

LOG_SOURCE = "paas[backups]"
# A capture or verification whose heartbeat is older than this died with its process.
STALE_SECONDS = 120.0
_HEARTBEAT_SECONDS = 15.0
_NAME = re.compile(r"^b(\d{1,9})$")
_AT = re.compile(r"^(\d{1,2}):(\d{2})$")
IN_PROGRESS = (BackupState.CAPTURING, BackupState.VERIFYING)


class Targets(Protocol):
    """Where an app's Postgres add-ons are: their names, and each one's superuser target."""

    def addons_of(self, db: Session, app: App) -> list[str]: ...

    def target(self, db: Session, app: App, addon: str) -> PostgresTarget: ...


def default_targets(settings: Settings) -> Targets:
    return StaticTargets(settings.home)


def store_of(settings: Settings) -> BackupStore:
    return BackupStore(settings.backups_dir, settings.backup_store_mb)


# ---- names --------------------------------------------------------------------------------


def name_of(backup: Backup) -> str:
    return f"b{backup.number:03d}"


def parse_ref(ref: str) -> tuple[str | None, int]:
    """`b003` or `other-app::b003` (Heroku's form for another app's backup)."""
    app, sep, name = ref.strip().rpartition("::")
    found = _NAME.fullmatch(name.lower())
    if not found or (sep and not app):
        raise Invalid(f"{ref[:40]!r} is not a backup: use an id like b003, or APP::b003 for "
                      "another app's")
    return (app or None), int(found.group(1))


def parse_at(at: str) -> tuple[int, str]:
    """`02:00` or `02:00 Europe/Paris` as (minutes after midnight, time zone)."""
    clock, _, zone = at.strip().partition(" ")
    found = _AT.fullmatch(clock)
    if not found or int(found.group(1)) > 23 or int(found.group(2)) > 59:
        raise Invalid(f"{at[:40]!r} is not a time of day: use HH:MM, e.g. --at 02:00 or "
                      "--at '02:00 Europe/Paris'")
    zone = zone.strip() or "UTC"
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"{zone[:60]!r} is not a time zone: use a name like UTC or "
                      "Europe/Paris") from None
    return int(found.group(1)) * 60 + int(found.group(2)), zone


# ---- pure rules ---------------------------------------------------------------------------


def compare_counts(expected: dict[str, int], found: dict[str, int]) -> list[str]:
    """What differs between the rows counted in the dump's snapshot and in the restore."""
    problems = [f"table {t} is missing" for t in sorted(expected.keys() - found.keys())]
    problems += [f"table {t} has {found[t]} rows, not {expected[t]}"
                 for t in sorted(expected.keys() & found.keys()) if found[t] != expected[t]]
    problems += [f"table {t} was not in the dump" for t in sorted(found.keys() - expected.keys())]
    return problems


def to_prune(backups: list[Backup], keep: int) -> list[Backup]:
    """Scheduled backups of one add-on beyond the newest `keep` (verified ones count; a
    failed scheduled one goes once `keep` newer ones exist)."""
    scheduled = sorted((b for b in backups if b.kind == "scheduled"
                        and b.state not in IN_PROGRESS), key=lambda b: b.number, reverse=True)
    return scheduled[keep:]


def expired(backups: list[Backup], at: float) -> list[Backup]:
    return [b for b in backups if b.keep_until is not None and b.keep_until <= at]


def due_day(schedule: BackupSchedule, at: float) -> str | None:
    """The day (YYYY-MM-DD in its zone) whose capture is due at `at`, or None."""
    local = dt.datetime.fromtimestamp(at, zoneinfo.ZoneInfo(schedule.timezone))
    day = local.strftime("%Y-%m-%d")
    minutes = local.hour * 60 + local.minute
    return day if minutes >= schedule.at_minute and schedule.last_day < day else None


# ---- state --------------------------------------------------------------------------------


def move(backup: Backup, to: BackupState, detail: str = "") -> None:
    """The one place a backup's state changes (`BACKUP_TRANSITIONS`)."""
    now_state = BackupState(backup.state)
    if to not in BACKUP_TRANSITIONS[now_state]:
        raise Conflict(f"{name_of(backup)} is {now_state}: it cannot become {to}")
    backup.state = to
    backup.heartbeat_at = now()
    if to == BackupState.FAILED:
        backup.error = detail
        backup.finished_at = now()
    else:
        backup.error = ""
        backup.progress = detail
        backup.finished_at = now() if to == BackupState.VERIFIED else None


# ---- looking up ---------------------------------------------------------------------------


def for_app(db: Session, app: App) -> list[Backup]:
    return list(db.scalars(select(Backup).where(Backup.app_id == app.id)
                           .order_by(Backup.number.desc())))


def get(db: Session, app: App, ref: str, user: User) -> Backup:
    """The backup `ref` names: one of `app`'s, or `other::b003` of an app `user` may see
    (else the same 404 as for an app that does not exist)."""
    other, number = parse_ref(ref)
    owner = app
    if other is not None and other != app.name:
        owner = apps.get(db, other, user)
    backup = db.scalar(select(Backup).where(Backup.app_id == owner.id,
                                            Backup.number == number))
    if backup is None:
        raise NotFound(f"{owner.name} has no backup b{number:03d}: `paas pg:backups -a "
                       f"{owner.name}` lists them")
    return backup


def addon_of(db: Session, targets: Targets, app: App, addon: str | None) -> str:
    """The add-on named, or the app's only (first) Postgres add-on."""
    names = targets.addons_of(db, app)
    if addon is None:
        if not names:
            raise NotFound(f"{app.name} has no Postgres add-on: `paas addons:create postgres "
                           f"-a {app.name}` makes one")
        return names[0]
    if addon not in names:
        raise NotFound(f"{app.name} has no Postgres add-on {addon}")
    return addon


def to_dict(backup: Backup) -> dict[str, Any]:
    return {"id": name_of(backup), "app": backup.app_name, "addon": backup.addon,
            "kind": backup.kind, "state": backup.state, "progress": backup.progress,
            "error": backup.error, "size_bytes": backup.size_bytes,
            "tables": len(backup.tables), "rows": sum(backup.tables.values()),
            "created_by": backup.created_by, "created_at": backup.created_at,
            "finished_at": backup.finished_at, "keep_until": backup.keep_until}


def schedule_dict(schedule: BackupSchedule, keep: int) -> dict[str, Any]:
    at = f"{schedule.at_minute // 60:02d}:{schedule.at_minute % 60:02d}"
    return {"addon": schedule.addon, "at": at, "timezone": schedule.timezone, "keep": keep,
            "last_day": schedule.last_day or None}


# ---- starting a capture -------------------------------------------------------------------


def begin(db: Session, app: App, addon: str, *, kind: str = "manual",
          user: User | None = None) -> Backup:
    """A new backup row (capturing); the capture itself is `capture`, after the commit."""
    busy = db.scalar(select(Backup).where(Backup.app_id == app.id, Backup.addon == addon,
                                          Backup.state.in_(IN_PROGRESS)))
    if busy is not None:
        raise Conflict(f"{name_of(busy)} of {addon} is still {busy.state}: one backup of an "
                       "add-on at a time")
    last = db.scalar(select(func.max(Backup.number)).where(Backup.app_id == app.id)) or 0
    backup = Backup(app_id=app.id, app_name=app.name, addon=addon, number=last + 1, kind=kind,
                    state=BackupState.CAPTURING, progress="Starting",
                    created_by=user.email if user else "the platform's schedule")
    db.add(backup)
    db.flush()
    return backup


# ---- the slow work ------------------------------------------------------------------------


class Work:
    """One backup's slow work: its progress and outcome written in short transactions."""

    def __init__(self, database: Database, backup_id: int) -> None:
        self.database = database
        self.backup_id = backup_id
        self._last_step = 0.0

    def _change(self, change: Callable[[Backup, Events], None]) -> None:
        def work(db: Session, events: Events) -> None:
            backup = db.get(Backup, self.backup_id)
            if backup is not None:
                change(backup, events)
        self.database.write(work)

    def step(self, text: str, *, throttle: bool = False) -> None:
        if throttle and time.monotonic() - self._last_step < 1.0:
            return
        self._last_step = time.monotonic()

        def change(backup: Backup, _events: Events) -> None:
            backup.progress = text
            backup.heartbeat_at = now()
        self._change(change)

    def move(self, to: BackupState, detail: str, log: str | None = None) -> None:
        def change(backup: Backup, events: Events) -> None:
            move(backup, to, detail)
            if log:
                events.app_log(backup.app_name, LOG_SOURCE, log.format(name=name_of(backup)))
        self._change(change)

    def fail(self, reason: str) -> None:
        self.move(BackupState.FAILED, reason, "Backup {name} failed: " + reason)

    @contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Refreshes the row's heartbeat while a step runs long (a restore, a dump)."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(_HEARTBEAT_SECONDS):
                with suppress(Exception):
                    self._change(lambda b, _e: setattr(b, "heartbeat_at", now()))
        thread = threading.Thread(target=beat, name=f"backup-{self.backup_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def capture(database: Database, settings: Settings, backup_id: int,
            target: PostgresTarget) -> None:
    """Dumps the add-on into the store, then verifies the file (`verify`)."""
    work = Work(database, backup_id)
    store = store_of(settings)
    try:
        with work.heartbeat():
            counts, size = _dump(work, store, settings, backup_id, target)
    except pgdump.StoreFull:
        store.discard(backup_id)
        work.fail(store.full_message())
        return
    except (pgdump.PgError, StoreError, OSError) as err:
        store.discard(backup_id)
        work.fail(f"the capture failed: {err}")
        return

    def recorded(backup: Backup, _events: Events) -> None:
        backup.tables, backup.size_bytes = counts, size
    work._change(recorded)
    verify(database, settings, backup_id)


def _dump(work: Work, store: BackupStore, settings: Settings, backup_id: int,
          target: PostgresTarget) -> tuple[dict[str, int], int]:
    store.prepare()
    if store.room(backup_id, 0) < 0:
        raise pgdump.StoreFull("no room before the dump")
    partial = store.new_partial(backup_id)
    work.step("Counting rows in the dump's snapshot")
    with pgdump.SnapshotSession(target) as session:
        counts = session.counts()
        rows = sum(counts.values())
        work.step(f"Dumping {len(counts)} tables ({rows} rows)")
        size = pgdump.dump(target, session.snapshot, partial,
                           room=lambda written: store.room(backup_id, written),
                           progress=lambda n: work.step(f"Dumping {len(counts)} tables "
                                                        f"({rows} rows): {_mb(n)} written",
                                                        throttle=True),
                           timeout=settings.backup_timeout)
    store.commit(backup_id)
    return counts, size


def verify(database: Database, settings: Settings, backup_id: int) -> None:
    """Restores the stored file into a scratch server and compares each table's rows with
    those counted in the dump's snapshot: verified, or failed with what differs."""
    work = Work(database, backup_id)
    with database.read() as db:
        backup = db.get(Backup, backup_id)
        if backup is None:
            raise NotFound("no such backup")
        expected = dict(backup.tables)
    work.move(BackupState.VERIFYING, "Restoring into a scratch server")
    try:
        with work.heartbeat():
            found = _restore_in_scratch(settings, backup_id)
    except FileNotFoundError:
        work.fail("verification failed: the backup's file is gone from the store")
        return
    except (pgdump.PgError, OSError) as err:
        work.fail(f"verification failed: the backup did not restore: {err}")
        return
    problems = compare_counts(expected, found)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more"
                                           if len(problems) > 5 else "")
        work.fail(f"verification failed: the restored rows differ: {shown}")
        return
    work.move(BackupState.VERIFIED,
              f"Verified: restored {len(found)} tables, {sum(found.values())} rows, as counted",
              "Backup {name} verified: " + f"{len(found)} tables, {sum(found.values())} rows")


def _restore_in_scratch(settings: Settings, backup_id: int) -> dict[str, int]:
    fd = store_of(settings).open(backup_id)
    try:
        with scratch.scratch_server(settings.backup_scratch_dir) as server:
            server.restore(fd, settings.backup_timeout)
            return server.counts()
    finally:
        os.close(fd)


def restore(settings: Settings, backup: Backup, target: PostgresTarget) -> None:
    """Restores `backup` into the add-on behind `target` (pgrestore: never as a superuser).
    Only a verified backup: a failed one is refused with its reason."""
    if backup.state != BackupState.VERIFIED:
        raise Conflict(f"{name_of(backup)} is {backup.state}"
                       + (f" ({backup.error})" if backup.error else "")
                       + ": only a verified backup is restored")
    try:
        fd = store_of(settings).open(backup.id)
    except FileNotFoundError:
        raise Conflict(f"{name_of(backup)}'s file is gone from the backup store") from None
    try:
        pgrestore.restore_into(target, fd, settings.backup_timeout)
    except pgdump.PgError as err:
        raise Conflict(f"the restore of {name_of(backup)} failed and changed nothing: "
                       f"{err}") from None
    finally:
        os.close(fd)


# ---- deleting, retention ------------------------------------------------------------------


def delete(db: Session, settings: Settings, backup: Backup) -> None:
    if backup.state in IN_PROGRESS:
        raise Conflict(f"{name_of(backup)} is still {backup.state}")
    store_of(settings).remove(backup.id)
    db.delete(backup)
    db.flush()


def on_addon_destroyed(db: Session, settings: Settings, app_id: int | None, addon: str, *,
                       purge: bool) -> None:
    """Called in the transaction that destroys `addon`: with purge, its backups go now; else
    its newest verified backup is kept for PAAS_BACKUP_RETENTION_DAYS and the rest go."""
    rows = list(db.scalars(select(Backup).where(Backup.app_id == app_id,
                                                Backup.addon == addon)))
    verified = [b for b in rows if b.state == BackupState.VERIFIED]
    keep = None if purge or not verified else max(verified, key=lambda b: b.number)
    for backup in rows:
        if backup is keep:
            backup.keep_until = now() + settings.backup_retention_days * 86400
        elif backup.state not in IN_PROGRESS:
            delete(db, settings, backup)
    for row in db.scalars(select(BackupSchedule).where(BackupSchedule.app_id == app_id,
                                                       BackupSchedule.addon == addon)):
        db.delete(row)
    db.flush()


def sweep(db: Session, settings: Settings, events: Events, at: float) -> list[str]:
    """The expiry job's work: expired retained backups deleted, captures whose process died
    failed, scheduled backups beyond the kept number deleted. What it did, one line each."""
    done: list[str] = []
    everything = list(db.scalars(select(Backup)))
    for backup in expired(everything, at):
        done.append(f"deleted {backup.app_name}::{name_of(backup)} (retention over)")
        delete(db, settings, backup)
    for backup in everything:
        if backup.state in IN_PROGRESS and at - backup.heartbeat_at > STALE_SECONDS:
            reason = "the platform stopped while it ran (its process is gone)"
            move(backup, BackupState.FAILED, reason)
            events.app_log(backup.app_name, LOG_SOURCE, f"Backup {name_of(backup)} failed: "
                           + reason)
            done.append(f"failed {backup.app_name}::{name_of(backup)} (stale)")
    groups: dict[tuple[int | None, str], list[Backup]] = {}
    for backup in db.scalars(select(Backup).where(Backup.keep_until.is_(None))):
        groups.setdefault((backup.app_id, backup.addon), []).append(backup)
    for group in groups.values():
        for backup in to_prune(group, settings.backup_keep_scheduled):
            done.append(f"deleted {backup.app_name}::{name_of(backup)} (beyond "
                        f"{settings.backup_keep_scheduled} scheduled)")
            delete(db, settings, backup)
    return done


# ---- schedules ----------------------------------------------------------------------------


def schedules_of(db: Session, app: App) -> list[BackupSchedule]:
    return list(db.scalars(select(BackupSchedule).where(BackupSchedule.app_id == app.id)
                           .order_by(BackupSchedule.addon)))


def schedule(db: Session, app: App, addon: str, at: str) -> BackupSchedule:
    minute, zone = parse_at(at)
    row = db.scalar(select(BackupSchedule).where(BackupSchedule.app_id == app.id,
                                                 BackupSchedule.addon == addon))
    if row is None:
        row = BackupSchedule(app_id=app.id, addon=addon, at_minute=minute, timezone=zone)
        db.add(row)
    row.at_minute, row.timezone = minute, zone
    # Not due again today if today's time is already past: the first run is the next one.
    row.last_day = ""
    local = dt.datetime.fromtimestamp(now(), zoneinfo.ZoneInfo(zone))
    if local.hour * 60 + local.minute >= minute:
        row.last_day = local.strftime("%Y-%m-%d")
    db.flush()
    return row


def unschedule(db: Session, app: App, addon: str) -> None:
    row = db.scalar(select(BackupSchedule).where(BackupSchedule.app_id == app.id,
                                                 BackupSchedule.addon == addon))
    if row is None:
        raise NotFound(f"{addon} of {app.name} has no backup schedule")
    db.delete(row)
    db.flush()


def start_due(db: Session, events: Events, targets: Targets,
              at: float) -> list[tuple[int, PostgresTarget]]:
    """Backup rows for every schedule due at `at` (each day once), with their targets. A
    schedule whose add-on is gone or busy is skipped with its day marked, and logged."""
    started: list[tuple[int, PostgresTarget]] = []
    for row in db.scalars(select(BackupSchedule)):
        day = due_day(row, at)
        app = db.get(App, row.app_id)
        if day is None or app is None:
            continue
        row.last_day = day
        try:
            target = targets.target(db, app, row.addon)
            backup = begin(db, app, row.addon, kind="scheduled")
        except (NotFound, Conflict) as err:
            events.app_log(app.name, LOG_SOURCE,
                           f"Scheduled backup of {row.addon} skipped: {err.message}")
            continue
        started.append((backup.id, target))
    db.flush()
    return started
