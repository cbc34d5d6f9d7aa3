"""Releases: vN = slug + config snapshot, immutable. One is current; a new one is pending
until its web dynos are up, then it is promoted and (for a push) the branch ref moves."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from paas import config_vars, cron, formation, oneoffs
from paas.errors import Conflict, NotFound, PaasError
from paas.events import Events
from paas.models import (
    RELEASE_TRANSITIONS,
    App,
    Assignment,
    Build,
    Dyno,
    OneOff,
    OneOffState,
    Release,
    ReleaseStatus,
)
from paas.redact import redact
from paas.repos import Repos
from paas.slugs import gc as slugs_gc
from paas.slugs.layers import LayerStore
from paas.wire import DynoState, Slug


def _next_version(db: Session, app: App) -> int:
    return (db.scalar(select(func.max(Release.version)).where(Release.app_id == app.id)) or 0) + 1


def _move(release: Release, to: ReleaseStatus) -> None:
    if to not in RELEASE_TRANSITIONS[ReleaseStatus(release.status)]:
        raise Conflict(f"release v{release.version} is {release.status}, it cannot become {to}")
    release.status = to


def create(db: Session, app: App, *, slug: dict[str, Any], description: str, commit: str,
           created_by: str = "", build: Build | None = None) -> Release:
    # [:500]: the column's length, which PostgreSQL enforces (many keys set at once).
    release = Release(app_id=app.id, version=_next_version(db, app), slug=slug,
                      config=config_vars.current(db, app), description=redact(description)[:500],
                      commit=commit, created_by=created_by,
                      build_id=build.id if build else None)
    db.add(release)
    db.flush()
    if app.pending_release_id:
        superseded = db.get(Release, app.pending_release_id)
        if superseded is not None and superseded.status == ReleaseStatus.PENDING:
            _move(superseded, ReleaseStatus.FAILED)
            superseded.error = f"superseded by v{release.version}"
    app.pending_release_id = release.id
    built = Slug.of(slug)
    formation.ensure_types(db, app, list(built.process_types),
                           {t: d.to_json() for t, d in built.app_json.formation.items()})
    _start_release_phase(db, app, release)
    return release


def create_from_build(db: Session, build: Build, events: Events) -> Release:
    app = build.app
    existing = db.scalar(select(Release).where(Release.build_id == build.id))
    if existing is not None:
        return existing
    release = create(db, app, slug=build.slug or {}, build=build, commit=build.commit,
                     created_by=build.created_by,
                     description=f"Deploy {build.commit[:7]}")
    events.deploy_line(build.id, f"-----> Releasing v{release.version}")
    return release


def rollback(db: Session, app: App, version: int | None, created_by: str,
             store: LayerStore | None = None) -> Release:
    """A new release with an earlier release's slug and config (no build); the app's config
    vars become that config again. Without a version: the last good one before the current.
    With the layer store: refused when that slug's layers were garbage-collected."""
    now = current(db, app)
    if now is None:
        raise Conflict(f"{app.name} has no release to roll back from: push code first")
    target = get(db, app, version) if version is not None else _previous(db, app, now)
    if target.id == now.id:
        raise Conflict(f"v{target.version} is the current release already")
    if target.status != ReleaseStatus.SUCCEEDED or not target.slug:
        raise Conflict(f"v{target.version} never went live: roll back to one that did "
                       "(`paas releases` shows their status)")
    if store is not None:
        slugs_gc.require_layers(store, target)
    config_vars.replace(db, app, target.config)
    return create(db, app, slug=target.slug, description=f"Rollback to v{target.version}",
                  commit=target.commit, created_by=created_by)


def _previous(db: Session, app: App, now: Release) -> Release:
    query = (select(Release).where(Release.app_id == app.id, Release.version < now.version,
                                   Release.status == ReleaseStatus.SUCCEEDED)
             .order_by(Release.version.desc()))
    found = db.scalars(query).first()
    if found is None:
        raise Conflict(f"{app.name} has no release before v{now.version} to roll back to")
    return found


def current(db: Session, app: App) -> Release | None:
    return db.get(Release, app.current_release_id) if app.current_release_id else None


def pending(db: Session, app: App) -> Release | None:
    return db.get(Release, app.pending_release_id) if app.pending_release_id else None


def get(db: Session, app: App, version: int) -> Release:
    release = db.scalar(select(Release).where(Release.app_id == app.id,
                                              Release.version == version))
    if release is None:
        raise NotFound(f"{app.name} has no release v{version}: `paas releases` lists them")
    return release


def for_app(db: Session, app: App) -> list[Release]:
    query = select(Release).where(Release.app_id == app.id).order_by(Release.version.desc())
    return list(db.scalars(query))


def _web_dynos(db: Session, app: App, release: Release) -> list[Dyno]:
    query = select(Dyno).where(Dyno.app_id == app.id, Dyno.release_version == release.version,
                               Dyno.type == "web")
    return list(db.scalars(query))


def evaluate(db: Session, app: App, repos: Repos, events: Events) -> None:
    """Called whenever dyno states change: promote the pending release once its web dynos
    answer, or fail it when one of them crashed."""
    release = pending(db, app)
    if release is None:
        return
    phase = _release_phase(db, release)
    if phase is not None and phase.state != OneOffState.EXITED:
        return
    if phase is not None and phase.exit_code != 0:
        _fail(db, app, release, events, _phase_message(phase))
        return
    wanted = formation.quantity(db, app, "web") if "web" in _types(release) else 0
    dynos = _web_dynos(db, app, release)
    crashed = [d for d in dynos if d.state == DynoState.CRASHED]
    if crashed:
        _fail(db, app, release, events, _crash_message(crashed[0]))
    elif sum(d.state == DynoState.UP for d in dynos) >= wanted:
        _promote(db, app, release, repos, events)


def _types(release: Release) -> dict[str, str]:
    return Slug.of(release.slug).process_types


def _crash_message(dyno: Dyno) -> str:
    tail = "\n".join("       " + line for line in dyno.output_tail.splitlines()[-20:])
    if dyno.reason:
        return (f"web.{dyno.index} of v{dyno.release_version} never became healthy: "
                f"{dyno.reason}; its last output:\n{tail}")
    return (f"web.{dyno.index} of v{dyno.release_version} crashed before it answered on $PORT "
            f"(exit code {dyno.exit_code}); its last output:\n{tail}")


PLATFORM_ERROR = "platform error"


def start_failed(db: Session, app_name: str, version: int, process_type: str, index: int,
                 error: str, events: Events, *, permanent: bool = False) -> bool:
    """The agent could not start a dyno (its network taken, a layer that would not unpack).
    A permanent error of a web dyno of the pending release fails that release at once, as a
    platform error and not as a crash of the app; any other is kept as the release's last
    start error while the agent retries, for `expire` to tell. True when it failed a release."""
    app = db.scalar(select(App).where(App.name == app_name))
    release = pending(db, app) if app is not None else None
    if app is None or release is None or release.version != version or process_type != "web":
        return False
    reason = f"{process_type}.{index} of v{version} could not start: {error}"
    if not permanent:
        release.error = redact(reason)
        return False
    _fail(db, app, release, events,
          f"{PLATFORM_ERROR}: {reason}; "
          f"{_keeps(db, app)} (this is no fault of the app: tell the platform's operator)")
    return True


def _keeps(db: Session, app: App) -> str:
    now = current(db, app)
    return f"the app keeps v{now.version}" if now is not None else "the app has no release yet"


def deadline_start(db: Session, release: Release) -> float | None:
    """When the platform was due to start the release's dynos: its creation, or the end of its
    release phase; None while the release phase runs (the app's own command, not bounded here)."""
    phase = _release_phase(db, release)
    if phase is None or phase.state == OneOffState.REQUESTED:
        return release.created_at
    if phase.state == OneOffState.EXITED:
        return phase.finished_at or release.created_at
    return None


def overdue(db: Session, moment: float, limit: float) -> list[int]:
    """Ids of the pending releases whose dynos were due more than `limit` seconds ago."""
    query = select(Release).join(App, App.pending_release_id == Release.id).where(
        Release.status == ReleaseStatus.PENDING)
    return [r.id for r in db.scalars(query)
            if (start := deadline_start(db, r)) is not None and moment - start > limit]


def expire(db: Session, release_id: int, moment: float, limit: float, why_limit: str,
           events: Events) -> str | None:
    """Fails a pending release that is still not live `limit` seconds after its dynos were
    due (`why_limit` says where the limit comes from); returns the error, None when it went
    live or failed meanwhile."""
    release = db.get(Release, release_id)
    if release is None or release.status != ReleaseStatus.PENDING:
        return None
    app = release.app
    start = deadline_start(db, release)
    if app.pending_release_id != release.id or start is None or moment - start <= limit:
        return None
    error = (f"{PLATFORM_ERROR}: v{release.version} was not live within {limit:g} s "
             f"({why_limit}): {_not_live_because(db, app, release)}; {_keeps(db, app)}: push "
             "again, and tell the platform's operator if it keeps happening")
    _fail(db, app, release, events, error)
    return error


def phase_overdue(db: Session, moment: float, limit: float) -> list[int]:
    """Ids of the pending releases whose release phase has run more than `limit` seconds
    (counted from the release's creation, when its phase was asked for)."""
    query = select(Release).join(App, App.pending_release_id == Release.id).where(
        Release.status == ReleaseStatus.PENDING, moment - Release.created_at > limit)
    return [r.id for r in db.scalars(query) if _phase_running(db, r) is not None]


def _phase_running(db: Session, release: Release) -> OneOff | None:
    phase = _release_phase(db, release)
    return phase if phase is not None and phase.state == OneOffState.RUNNING else None


def phase_message(limit: float) -> str:
    return f"release phase ran longer than {limit:g} s (PAAS_RELEASE_PHASE_TIMEOUT)"


def expire_phase(db: Session, release_id: int, moment: float, limit: float,
                 events: Events) -> str | None:
    """Fails a pending release whose release phase still runs `limit` seconds on, and stops
    that one-off (a stopping one-off is no longer desired: the agent stops it); returns the
    error, None when the phase ended or the release was decided meanwhile."""
    release = db.get(Release, release_id)
    if release is None or release.status != ReleaseStatus.PENDING:
        return None
    app = release.app
    phase = _phase_running(db, release)
    if app.pending_release_id != release.id or phase is None or \
            moment - release.created_at <= limit:
        return None
    phase.state = OneOffState.STOPPING
    error = f"{phase_message(limit)}; {_keeps(db, app)}"
    _fail(db, app, release, events, error)
    return error


def _not_live_because(db: Session, app: App, release: Release) -> str:
    phase = _release_phase(db, release)
    if phase is not None and phase.state == OneOffState.REQUESTED:
        return "its release phase never started (is the dyno agent running?)"
    if release.error:  # the agent's last start error (`start_failed`)
        return release.error
    starting = [d for d in _web_dynos(db, app, release) if d.state == DynoState.STARTING]
    if starting:
        return f"web.{starting[0].index} was still starting"
    waiting = db.scalar(select(Assignment).where(
        Assignment.app_id == app.id, Assignment.type == "web", Assignment.node.is_(None),
        Assignment.oneoff.is_(False)).order_by(Assignment.index))
    if waiting is not None:  # no node has room for it (`scheduling.assign`)
        return f"web.{waiting.index} is {waiting.reason}"
    return "no web dyno of it was started (is the dyno agent running?)"


def declared_types(db: Session, app: App) -> list[str]:
    """The process types of the app's current release (what ps:scale may change)."""
    release = current(db, app)
    return list(_types(release)) if release is not None else []


def _release_phase(db: Session, release: Release) -> OneOff | None:
    return db.scalar(select(OneOff).where(OneOff.release_id == release.id,
                                          OneOff.type == "release"))


def phase_passed(db: Session, release: Release) -> bool:
    """True when the release has no release phase, or its release phase exited 0."""
    phase = _release_phase(db, release)
    return phase is None or (phase.state == OneOffState.EXITED and phase.exit_code == 0)


def _start_release_phase(db: Session, app: App, release: Release) -> None:
    """The `release:` process (after app.json's predeploy script) runs as a one-off dyno
    before the release's dynos start."""
    scripts = Slug.of(release.slug).app_json.scripts
    commands = [c for c in (scripts.get("predeploy"), _types(release).get("release")) if c]
    if commands:
        command = commands[0] if len(commands) == 1 else " && ".join(
            f"( {c}\n)" for c in commands)
        oneoffs.create(db, app, release, command, process_type="release")


def _start_postdeploy(db: Session, app: App, release: Release) -> None:
    command = Slug.of(release.slug).app_json.scripts.get("postdeploy")
    if command:
        oneoffs.create(db, app, release, command, process_type="postdeploy")


# How the agent's report of a one-off it could not start begins (`oneoffs.start_failed`).
_ONEOFF_NOT_STARTED = "the dyno could not start: "


def _phase_message(phase: OneOff) -> str:
    if phase.output_tail.startswith(_ONEOFF_NOT_STARTED):
        return (f"{PLATFORM_ERROR}: the release phase could not start: "
                f"{phase.output_tail.removeprefix(_ONEOFF_NOT_STARTED)} (this is no fault of "
                "the app: tell the platform's operator)")
    tail = "\n".join("       " + line for line in phase.output_tail.splitlines()[-20:])
    return f"the release phase failed (exit code {phase.exit_code}); its output:\n{tail}"


def _fail(db: Session, app: App, release: Release, events: Events, error: str) -> None:
    _move(release, ReleaseStatus.FAILED)
    error = redact(error)
    release.error = error
    app.pending_release_id = None
    if release.build_id:
        for line in error.splitlines():
            events.deploy_line(release.build_id, f" !     {line}")
        events.deploy_end(release.build_id, False, f"release v{release.version} failed: {error}")


def _promote(db: Session, app: App, release: Release, repos: Repos, events: Events) -> None:
    build = db.get(Build, release.build_id) if release.build_id else None
    if build is not None:
        try:
            repos.move_ref(app.name, build.ref, build.old_commit, build.commit)
        except PaasError as error:
            _fail(db, app, release, events, error.message)
            return
    _move(release, ReleaseStatus.SUCCEEDED)
    release.error = ""  # a start error the agent then got past
    app.current_release_id = release.id
    app.pending_release_id = None
    events.routes_changed()
    cron.sync(db, app, release)
    _start_postdeploy(db, app, release)
    if build is not None:
        events.deploy_end(build.id, True, f"Released v{release.version}")


def to_dict(release: Release, app: App) -> dict[str, Any]:
    return {
        "version": release.version,
        "description": redact(release.description),
        "status": release.status,
        "current": app.current_release_id == release.id,
        "commit": release.commit,
        "created_by": release.created_by,
        "created_at": release.created_at,
        "error": redact(release.error) if release.error else release.error,
        "process_types": _types(release),
        "layers": [layer.to_json() for layer in Slug.of(release.slug).layers],
    }
