"""The scheduler-facing side of the API: what each node should run (its `DesiredState`), which
node runs each desired dyno (`assign`, `place`), and each node's reports of what it runs.

Every desired dyno has a key, (app, process type, index) for a formation dyno (the same across
releases: a deploy's new web.1 goes where the old one ran) or (app, type, number) for a live
one-off, and an assignment to a live node, kept while that node lives. A node whose heartbeat
is older than PAAS_NODE_GRACE is lost: its formation dynos go to live nodes; its running
one-offs stay (they are never started twice). Its dynos go on serving: its reported `up` rows
stay in the route table until a dyno of the same key is up on a live node."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from paas import dynos, formation, nodes, oneoffs, releases
from paas.models import App, Assignment, Dyno, OneOff, Release
from paas.sizes import Size, size_or_basic
from paas.wire import AppPolicy, DesiredDyno, DesiredState, DynoState, NodeReport, Slug


@dataclass(frozen=True, order=True)
class DynoKey:
    """What an assignment is for: a formation dyno of any release, or one one-off."""

    app: str
    type: str
    index: int
    oneoff: bool = False


# ---- desired dynos -------------------------------------------------------------------------


def _env(release: Release, slug: Slug, name: str, port: int) -> dict[str, str]:
    return {
        "PYTHONUNBUFFERED": "1",
        **slug.env,
        **release.config,
        "PORT": str(port),
        "DYNO": name,
        "PS": name,
        "HOME": "/app",
        "PAAS_RELEASE_VERSION": f"v{release.version}",
        "PAAS_SLUG_COMMIT": release.commit,
    }


def _dyno(app: App, release: Release, process_type: str, index: int, command: str,
          size: Size, port: int, generation: str) -> DesiredDyno:
    slug = Slug.of(release.slug)
    return DesiredDyno(
        app=app.name, slot=app.slot, uid=app.uid, release=release.version, type=process_type,
        index=index, command=("/bin/sh", "-c", command),
        env=_env(release, slug, f"{process_type}.{index}", port), layers=slug.digests,
        memory_mb=size.memory_mb, cpu_shares=size.cpu_shares, pids=size.pids,
        disk_mb=size.disk_mb, port=port, size=size.name, generation=generation, node="")


def _for_release(db: Session, app: App, release: Release, port: int) -> list[DesiredDyno]:
    slug = Slug.of(release.slug)
    wanted = []
    for row in formation.for_app(db, app):
        command = slug.process_types.get(row.type)
        if command is None or row.type == "release":
            continue
        size = size_or_basic(row.size)
        for index in range(1, row.quantity + 1):
            generation = f"{size.name}:{formation.restart_mark(row, index):.6f}"
            dyno = _dyno(app, release, row.type, index, command, size, port, generation)
            wanted.append(dataclasses.replace(
                dyno, healthchecks=slug.app_json.healthchecks.get(row.type, ())))
    return wanted


def _oneoff(app: App, oneoff: OneOff, port: int) -> DesiredDyno:
    size = size_or_basic(oneoff.size)
    dyno = _dyno(app, oneoff.release, oneoff.type, oneoff.number, oneoff.command, size, port,
                 size.name)
    return dataclasses.replace(
        dyno, env={**dyno.env, **oneoff.env}, oneoff=True, attach=oneoff.attach,
        tty=oneoff.attach and oneoff.tty,
        build_id=oneoff.release.build_id if oneoff.type == "release" else None)


def _oneoffs(db: Session, app: App, port: int) -> list[DesiredDyno]:
    pending = releases.pending(db, app)
    return [_oneoff(app, oneoff, port) for oneoff in oneoffs.live(db, app)
            if oneoff.type != "release" or (pending is not None
                                            and oneoff.release_id == pending.id)]


def wanted(db: Session, port: int) -> list[DesiredDyno]:
    """Every dyno that should run, on no node yet: the current release's formation, the
    pending release's while it boots (the old keeps serving until the new answers) once its
    release phase passed, and the one-offs (a superseded release's phase no longer)."""
    found: list[DesiredDyno] = []
    for app in db.scalars(select(App).order_by(App.name)):
        current, pending = releases.current(db, app), releases.pending(db, app)
        if current is not None:
            found += _for_release(db, app, current, port)
        if pending is not None and releases.phase_passed(db, pending):
            found += _for_release(db, app, pending, port)
        found += _oneoffs(db, app, port)
    return found


def key_of(dyno: DesiredDyno) -> DynoKey:
    return DynoKey(dyno.app, dyno.type, dyno.index, dyno.oneoff)


def desired(db: Session, node: str, moment: float, grace: float, port: int) -> DesiredState:
    """What `node` should run: its heartbeat, then the dynos assigned to it (placing those
    not yet assigned), and every app's policy (a dyno it retires needs its app's grace)."""
    nodes.heartbeat(db, node, moment)
    every = wanted(db, port)
    placed = place(db, every, moment, grace)
    mine = tuple(dataclasses.replace(d, node=node) for d in every
                 if placed.nodes.get(key_of(d)) == node)
    apps = {app.name: AppPolicy(stop_grace=app.stop_grace)
            for app in db.scalars(select(App).order_by(App.name))}
    return DesiredState(dynos=mine, apps=apps)


# ---- assignment ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Room:
    """A live node as assignment sees it."""

    name: str
    memory_mb: int


@dataclass(frozen=True)
class Placement:
    nodes: dict[DynoKey, str]  # key → the node that runs it
    waiting: dict[DynoKey, str]  # key → why it runs nowhere


def waiting_reason(memory_mb: int, rooms: list[Room]) -> str:
    if not rooms:
        return "waiting: no node is up (is an agent running?)"
    return f"waiting: no node has {memory_mb} MB free"


def assign(memory: dict[DynoKey, int], rooms: list[Room], current: dict[DynoKey, str],
           pinned: dict[DynoKey, str] | None = None) -> Placement:
    """Which live node (`rooms`) runs each wanted key (`memory`: its memory in MB). A key keeps
    its current node while that node lives and has room; the others go, by app and process
    type, to the node with the fewest of that app's type, then the most free memory. No node
    gets more than its capacity; a key that fits nowhere waits. `pinned` keys (running
    one-offs) keep their node whatever it is."""
    capacity = {room.name: room.memory_mb for room in rooms}
    used = dict.fromkeys(capacity, 0)
    spread: Counter[tuple[str, str, str]] = Counter()
    placed: dict[DynoKey, str] = {}

    def put(key: DynoKey, node: str) -> None:
        placed[key] = node
        if node in used:
            used[node] += memory[key]
        spread[(node, key.app, key.type)] += 1

    def fits(node: str | None, key: DynoKey) -> bool:
        return node in used and used[node] + memory[key] <= capacity[node]

    for key, node in sorted((pinned or {}).items()):
        put(key, node)
    for key in sorted(memory.keys() - placed.keys()):
        if fits(current.get(key), key):
            put(key, current[key])
    waiting = {}
    for key in sorted(memory.keys() - placed.keys()):
        candidates = [node for node in used if fits(node, key)]
        if not candidates:
            waiting[key] = waiting_reason(memory[key], rooms)
            continue

        def preference(node: str, key: DynoKey = key) -> tuple[int, int, str]:
            return spread[(node, key.app, key.type)], used[node] - capacity[node], node

        put(key, min(candidates, key=preference))
    return Placement(placed, waiting)


def _assignment_key(row: Assignment, names: dict[int, str]) -> DynoKey:
    return DynoKey(names[row.app_id], row.type, row.index, row.oneoff)


def place(db: Session, every: list[DesiredDyno], moment: float, grace: float) -> Placement:
    """Assigns every wanted dyno (and keeps the running one-offs where they run); stores the
    assignments, drops those no longer wanted."""
    apps = {app.name: app for app in db.scalars(select(App))}
    names = {app.id: name for name, app in apps.items()}
    rows = {_assignment_key(row, names): row for row in db.scalars(select(Assignment))}
    memory: dict[DynoKey, int] = {}
    for dyno in every:
        memory[key_of(dyno)] = max(memory.get(key_of(dyno), 0), dyno.memory_mb)
    pinned = _pinned(db, rows, names)
    for key in pinned:
        memory.setdefault(key, rows[key].memory_mb)
    rooms = [Room(node.name, node.memory_mb) for node in nodes.live(db, moment, grace)]
    current = {key: row.node for key, row in rows.items() if row.node}
    placement = assign(memory, rooms, current, pinned)
    for key, row in rows.items():
        if key not in memory:
            db.delete(row)
    for key, mb in memory.items():
        row = rows.get(key) or Assignment(app_id=apps[key.app].id, type=key.type,
                                          index=key.index, oneoff=key.oneoff)
        row.node, row.memory_mb = placement.nodes.get(key), mb
        row.reason = placement.waiting.get(key, "")
        db.add(row)
    db.flush()
    return placement


def _pinned(db: Session, rows: dict[DynoKey, Assignment],
            names: dict[int, str]) -> dict[DynoKey, str]:
    """The one-offs a node runs stay on it: moved, they would run twice."""
    found = {}
    for oneoff in oneoffs.running(db):
        key = DynoKey(names[oneoff.app_id], oneoff.type, oneoff.number, True)
        node = rows[key].node if key in rows else None
        if node:
            found[key] = node
    return found


# ---- reports -------------------------------------------------------------------------------


def report(db: Session, node: str, reported: NodeReport, moment: float,
           grace: float) -> set[int]:
    """Replaces `node`'s dyno rows (and rows from before nodes) with its report; no other
    node's. Returns the ids of apps whose dynos changed state (their routes or pending
    release need a look)."""
    nodes.heartbeat(db, node, moment)
    apps = {app.name: app for app in db.scalars(select(App))}
    ids = [dyno.id for dyno in reported.dynos]
    mine = or_(Dyno.node == node, Dyno.node.is_(None), Dyno.id.in_(ids))
    before = {d.id: (d.app_id, d.state) for d in db.scalars(select(Dyno).where(mine))}
    db.execute(delete(Dyno).where(mine))
    changed: set[int] = set()
    seen_oneoffs: set[tuple[int, str, int]] = set()
    for item in reported.dynos:
        app = apps.get(item.app)
        if app is None:
            continue
        dyno = dynos.record(app, node, item, before.get(item.id, (None, None))[1])
        db.add(dyno)
        if before.pop(dyno.id, None) != (app.id, dyno.state):
            changed.add(app.id)
        if item.oneoff:
            seen_oneoffs.add((app.id, dyno.type, dyno.index))
            if oneoffs.reported(db, app, item):
                changed.add(app.id)
    changed.update(app_id for app_id, _ in before.values())
    changed.update(oneoffs.lost(db, node, seen_oneoffs))
    db.flush()
    changed.update(drop_replaced(db, moment, grace))
    return changed


def drop_replaced(db: Session, moment: float, grace: float) -> set[int]:
    """Drops the rows of lost nodes that no longer serve: those not up, those whose key is no
    longer wanted, and those whose key is up on a live node. Returns their apps' ids."""
    lost = nodes.lost_names(db, moment, grace)
    if not lost:
        return set()
    rows = list(db.scalars(select(Dyno)))
    up_elsewhere = {(d.app_id, d.type, d.index) for d in rows
                    if d.node not in lost and d.state == DynoState.UP}
    wanted = {(a.app_id, a.type, a.index) for a in db.scalars(
        select(Assignment).where(Assignment.oneoff.is_(False)))}
    changed = set()
    for dyno in rows:
        key = (dyno.app_id, dyno.type, dyno.index)
        if dyno.node in lost and (dyno.state != DynoState.UP or key not in wanted
                                  or key in up_elsewhere):
            db.delete(dyno)
            changed.add(dyno.app_id)
    db.flush()
    return changed


def sweep(db: Session, moment: float, grace: float, port: int) -> set[int]:
    """The reaper's look at the nodes: the dynos of lost nodes go to live ones, and the rows
    of lost nodes that no longer serve are dropped. Returns the apps whose rows changed."""
    place(db, wanted(db, port), moment, grace)
    return drop_replaced(db, moment, grace)

