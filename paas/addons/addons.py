"""Add-ons: a Postgres or Redis server owned by an app, attached to it and possibly to other
apps, each attachment a config var (`DATABASE_URL`, `--as NAME`: `NAME_URL`) set and removed
in a release of its own. No HTTP here; the API (`paas/api/addons.py`) and the scheduler's
report intake call these.

The server runs on the node that holds its data (`Addon.node`, taken by the first node that
asks for its desired state). A config var is set only once the server answers (the release
phase of that release, Django's `migrate`, then finds it ready): an attachment waits with
`config_pending` while its add-on is creating or restarting."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from paas import auth, config_vars, releases
from paas.addons import plans, retention
from paas.errors import Conflict, Invalid, NotFound
from paas.events import Events
from paas.models import (
    ADDON_TRANSITIONS,
    Addon,
    AddonAttachment,
    AddonState,
    App,
    Node,
    User,
)
from paas.runtime.network import ADDON_LINKS_PER_APP, addon_ip, app_network
from paas.wire import AddonLink, AddonReport, AddonServerState, DesiredAddon

NAME = re.compile(r"^[a-z][a-z0-9-]{1,39}$")
AS_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,195}$")
SUPERUSER = "paas"


# ---- state --------------------------------------------------------------------------------


def move(addon: Addon, to: AddonState, reason: str = "") -> bool:
    """The one place an add-on's state changes; False when it was `to` already."""
    now = AddonState(addon.state)
    if now == to:
        addon.reason = reason
        return False
    if to not in ADDON_TRANSITIONS[now]:
        raise Conflict(f"{addon.name} is {now}: it cannot become {to}")
    addon.state = to
    addon.reason = reason
    return True


# ---- looking up ---------------------------------------------------------------------------


def attachments_of(db: Session, app: App) -> list[AddonAttachment]:
    return list(db.scalars(select(AddonAttachment).where(AddonAttachment.app_id == app.id)
                           .order_by(AddonAttachment.name)))


def get(db: Session, app: App, ref: str | None, service: str | None = None) -> Addon:
    """An add-on attached to `app`, by its name or its attachment's (DATABASE); without one,
    the app's only add-on (of `service`, when given)."""
    attached = attachments_of(db, app)
    if service:
        attached = [a for a in attached if a.addon.service == service]
    if ref:
        ref_as = ref.upper().removesuffix("_URL")
        found = [a for a in attached if a.addon.name == ref or a.name == ref_as]
    else:
        found = attached if len({a.addon_id for a in attached}) == 1 else [
            a for a in attached if a.name == (plans.service_of(service).default_as
                                              if service else "DATABASE")]
    if not found:
        what = f"{service} add-on" if service else "add-on"
        named = f" named {ref!r}" if ref else ""
        raise NotFound(f"{app.name} has no {what}{named} attached: `paas addons -a {app.name}` "
                       "lists them")
    return found[0].addon


def attachment(db: Session, addon: Addon, app: App) -> AddonAttachment | None:
    return db.scalar(select(AddonAttachment).where(AddonAttachment.addon_id == addon.id,
                                                   AddonAttachment.app_id == app.id))


def all_attachments(db: Session, addon: Addon) -> list[AddonAttachment]:
    return list(db.scalars(select(AddonAttachment).where(AddonAttachment.addon_id == addon.id)
                           .order_by(AddonAttachment.id)))


def require_owner_access(db: Session, user: User, addon: Addon) -> App:
    """Changing an add-on (plan, credentials, destroying it) is for users of its owner."""
    owner = db.get(App, addon.app_id) if addon.app_id else None
    if owner is None or not auth.may_access(db, user, owner):
        raise NotFound(f"{addon.name} belongs to another app: ask its users")
    return owner


# ---- creating and attaching ---------------------------------------------------------------


def create(db: Session, app: App, spec: str, user: User, *, name: str | None = None,
           as_name: str | None = None) -> Addon:
    service, plan = plans.parse(spec)
    name = check_name(name) if name else _default_name(db, app, service.name)
    if db.scalar(select(Addon).where(Addon.name == name)) is not None:
        raise Conflict(f"the add-on name {name} is in use: choose another (--name)")
    number = (db.scalar(select(func.max(Addon.number))) or 0) + 1
    addon = Addon(name=name, service=service.name, plan=plan.name, app_id=app.id,
                  app_name=app.name, number=number, username=f"u{secrets.token_hex(6)}",
                  password=secrets.token_urlsafe(24),
                  database=f"d{secrets.token_hex(6)}" if service.name == "postgres" else "",
                  superuser_password=secrets.token_urlsafe(24), created_by=user.email)
    db.add(addon)
    db.flush()
    _attach(db, addon, app, as_name or service.default_as, user)
    return addon


def check_name(name: str) -> str:
    if not NAME.fullmatch(name) or name.endswith("-") or "--" in name:
        raise Invalid(f"invalid add-on name {name!r}: use 2 to 40 lowercase letters, digits and "
                      "dashes, starting with a letter (e.g. shop-db)")
    return name


def _default_name(db: Session, app: App, service: str) -> str:
    base = f"{app.name}-{service}"[:36]
    taken = set(db.scalars(select(Addon.name).where(Addon.name.like(f"{base}%"))))
    for n in range(1, 1000):
        candidate = base if n == 1 else f"{base}-{n}"
        if candidate not in taken:
            return candidate
    raise Conflict(f"choose a name for the add-on (--name): {base} and its numbers are taken")


def attach(db: Session, addon: Addon, app: App, user: User, as_name: str | None,
           events: Events, subnet: str) -> AddonAttachment:
    if addon.state == AddonState.DESTROYED:
        raise NotFound(f"{addon.name} was destroyed")
    if attachment(db, addon, app) is not None:
        raise Conflict(f"{addon.name} is attached to {app.name} already")
    service = plans.service_of(addon.service)
    found = _attach(db, addon, app, as_name or service.default_as, user)
    apply_pending(db, addon, events, subnet)
    events.desired_changed()
    return found


def _attach(db: Session, addon: Addon, app: App, as_name: str, user: User) -> AddonAttachment:
    as_name = as_name.upper().removesuffix("_URL")
    if not AS_NAME.fullmatch(as_name):
        raise Invalid(f"invalid attachment name {as_name!r}: use capital letters, digits and "
                      "underscores (e.g. --as DATABASE sets DATABASE_URL)")
    taken = {a.name: a for a in attachments_of(db, app)}
    if as_name in taken:
        raise Conflict(f"{app.name} has {taken[as_name].addon.name} attached as {as_name} "
                       f"already: choose another name with --as (it sets NAME_URL)")
    if f"{as_name}_URL" in config_vars.current(db, app):
        raise Conflict(f"{app.name} has a config var {as_name}_URL of its own: choose another "
                       f"name with --as, or unset it first")
    used = {a.address_index for a in taken.values()}
    free = [i for i in range(ADDON_LINKS_PER_APP) if i not in used]
    if not free:
        raise Conflict(f"{app.name} has {ADDON_LINKS_PER_APP} add-ons attached: detach one first")
    found = AddonAttachment(addon_id=addon.id, app_id=app.id, name=as_name,
                            address_index=free[0], created_by=user.email)
    db.add(found)
    db.flush()
    return found


def detach(db: Session, addon: Addon, app: App, events: Events) -> None:
    found = attachment(db, addon, app)
    if found is None:
        raise NotFound(f"{addon.name} is not attached to {app.name}")
    if addon.app_id == app.id:
        raise Conflict(f"{app.name} owns {addon.name}: it cannot be detached from it; "
                       f"`paas addons:destroy {addon.name} -a {app.name}` destroys it")
    _remove_attachment(db, found, f"Detach {addon.name} ({found.name})", events)


def _remove_attachment(db: Session, found: AddonAttachment, description: str,
                       events: Events, release: bool = True) -> None:
    app, key = found.app, f"{found.name}_URL"
    db.delete(found)
    db.flush()
    if key in config_vars.current(db, app):
        config_vars.apply(db, app, {key: None})
        if release:
            _release(db, app, description, found.created_by)
    events.desired_changed()


# ---- changing -----------------------------------------------------------------------------


def upgrade(db: Session, addon: Addon, plan_name: str) -> None:
    """Another plan: its server is replaced (stop first) with the new limits, its data kept
    (a larger disk grows the data filesystem; a smaller one keeps the larger filesystem)."""
    service = plans.service_of(addon.service)
    plan = plans.plan_of(service, plan_name.strip().lower())
    _alive(addon)
    if plan.name == addon.plan:
        raise Conflict(f"{addon.name} is on {service.name}:{plan.name} already")
    addon.plan = plan.name
    _replace_server(addon, f"changing to {service.name}:{plan.name}")


def rotate(db: Session, addon: Addon) -> None:
    """A new password for the app's role (user): the server restarts with it, then every
    attachment's config var is updated in a new release."""
    _alive(addon)
    addon.password = secrets.token_urlsafe(24)
    for found in all_attachments(db, addon):
        found.config_pending = True
    _replace_server(addon, "rotating the credentials")


def _replace_server(addon: Addon, why: str) -> None:
    addon.generation += 1
    if addon.state != AddonState.CREATING:
        move(addon, AddonState.RESTARTING, why)


def _alive(addon: Addon) -> None:
    if addon.state == AddonState.DESTROYED:
        raise NotFound(f"{addon.name} was destroyed")


def destroy(db: Session, addon: Addon, confirm: str | None, purge: bool, events: Events,
            release: bool = True) -> None:
    owner = addon.app_name
    if confirm != owner:
        raise Invalid(f"destroying {addon.name} deletes its server and its data: confirm with "
                      f"--confirm {owner}")
    _alive(addon)
    others = [a.app.name for a in all_attachments(db, addon) if a.app_id != addon.app_id]
    if others:
        raise Conflict(f"{addon.name} is attached to {', '.join(others)} too: detach it there "
                       f"first (`paas addons:detach {addon.name} -a APP`)")
    retention.on_destroy(db, addon, purge=purge)
    for found in all_attachments(db, addon):
        _remove_attachment(db, found, f"Destroy {addon.name} ({found.name})", events, release)
    move(addon, AddonState.DESTROYED, "destroyed")
    addon.destroyed_at = time.time()


def destroy_owned(db: Session, app: App, events: Events) -> list[str]:
    """`apps:destroy`: the app's own add-ons go with it; refused while one of them is
    attached to another app."""
    owned = list(db.scalars(select(Addon).where(Addon.app_id == app.id,
                                                Addon.state != AddonState.DESTROYED)))
    for addon in owned:
        others = [a.app.name for a in all_attachments(db, addon) if a.app_id != app.id]
        if others:
            raise Conflict(f"{app.name}'s add-on {addon.name} is attached to "
                           f"{', '.join(others)} too: detach it there first")
    for addon in owned:  # no release of an app that goes
        destroy(db, addon, addon.app_name, False, events, release=False)
    return [addon.name for addon in owned]


# ---- config vars --------------------------------------------------------------------------


def subnet_of(db: Session, addon: Addon, default: str) -> str:
    """The dyno network of the node holding the add-on (each node has its own; `default`,
    the API's PAAS_DYNO_SUBNET, before a node has it)."""
    node = db.get(Node, addon.node) if addon.node else None
    return node.dyno_subnet if node is not None and node.dyno_subnet else default


def url(addon: Addon, found: AddonAttachment, subnet: str) -> str:
    service = plans.service_of(addon.service)
    address = addon_ip(app_network(subnet, found.app.slot), found.address_index)
    where = f"{address}:{service.port}"
    if addon.service == "postgres":
        return (f"postgres://{addon.username}:{addon.password}@{where}/{addon.database}"
                "?sslmode=require")
    return f"redis://{addon.username}:{addon.password}@{where}"


def apply_pending(db: Session, addon: Addon, events: Events, subnet: str) -> bool:
    """Once the add-on is available: each attachment whose config var waits gets it, in a
    release of its own. True when a release was made."""
    if addon.state != AddonState.AVAILABLE:
        return False
    made = False
    subnet = subnet_of(db, addon, subnet)
    for found in all_attachments(db, addon):
        if not found.config_pending:
            continue
        key = f"{found.name}_URL"
        value = url(addon, found, subnet)
        found.config_pending = False
        if config_vars.current(db, found.app).get(key) == value:
            continue
        fresh = key not in config_vars.current(db, found.app)
        config_vars.apply(db, found.app, {key: value})
        what = (f"Attach {addon.name} as {found.name}" if fresh
                else f"Update {key} for {addon.name}")
        made |= _release(db, found.app, what, found.created_by)
    if made:
        events.desired_changed()
    return made


def _release(db: Session, app: App, description: str, created_by: str) -> bool:
    current = releases.current(db, app)
    if current is None:  # no code yet: the var is stored for the first deploy
        return False
    releases.create(db, app, slug=current.slug or {}, commit=current.commit,
                    description=description, created_by=created_by)
    return True


# ---- the scheduler's side -----------------------------------------------------------------


def desired(db: Session, node: str, subnet: str) -> list[DesiredAddon]:
    """The servers `node` holds (an add-on on no node yet is taken by the first that asks),
    and the destroyed ones whose data it still has."""
    wanted = []
    for addon in db.scalars(select(Addon).order_by(Addon.id)):
        if addon.node is None and addon.state != AddonState.DESTROYED:
            addon.node = node
        if addon.node == node:
            wanted.append(desired_of(db, addon, subnet_of(db, addon, subnet)))
    return wanted


def desired_of(db: Session, addon: Addon, subnet: str) -> DesiredAddon:
    service = plans.service_of(addon.service)
    plan = plans.plan_of(service, addon.plan)
    links = tuple(AddonLink(app=a.app.name, slot=a.app.slot,
                            ip=addon_ip(app_network(subnet, a.app.slot), a.address_index))
                  for a in _owner_first(addon, all_attachments(db, addon)))
    return DesiredAddon(
        name=addon.name, service=addon.service, uid=addon.uid,
        generation=f"{addon.generation}", memory_mb=plan.memory_mb, pids=plan.pids,
        disk_mb=plan.disk_mb, port=service.port, env=server_env(addon, plan), links=links,
        node=addon.node or "", destroyed=addon.state == AddonState.DESTROYED)


def _owner_first(addon: Addon, found: list[AddonAttachment]) -> list[AddonAttachment]:
    """The owner's link first: the host reaches the server there (readiness, pg:info)."""
    return sorted(found, key=lambda a: (a.app_id != addon.app_id, a.id))


def server_env(addon: Addon, plan: plans.Plan) -> dict[str, str]:
    service = plans.service_of(addon.service)
    env = {"ADDON_SERVICE": addon.service, "ADDON_PORT": str(service.port),
           "ADDON_USER": addon.username, "ADDON_PASSWORD": addon.password,
           "ADDON_CONNECTIONS": str(plan.connections), "ADDON_MEMORY_MB": str(plan.memory_mb)}
    if addon.service == "postgres":
        env |= {"ADDON_DATABASE": addon.database, "ADDON_SUPERUSER": SUPERUSER,
                "ADDON_SUPERUSER_PASSWORD": addon.superuser_password}
    else:
        env |= {"ADDON_MAXMEMORY_MB": str(plan.maxmemory_mb), "ADDON_POLICY": plan.policy}
    return env


def reported(db: Session, node: str, reports: tuple[AddonReport, ...], events: Events,
             subnet: str) -> bool:
    """A node's word on its add-on servers; True when a release was made (a config var that
    waited for its server)."""
    made = False
    for report in reports:
        addon = db.scalar(select(Addon).where(Addon.name == report.name))
        if addon is None or addon.node != node:
            continue
        if report.state == AddonServerState.REMOVED:
            addon.node = None if addon.state == AddonState.DESTROYED else addon.node
            continue
        if addon.state == AddonState.DESTROYED or report.generation != f"{addon.generation}":
            continue  # an old server's word: the new one is what counts
        addon.memory_mb = report.memory_mb
        if report.state == AddonServerState.UP:
            move(addon, AddonState.AVAILABLE)
            addon.started_at = report.started_at
            made |= apply_pending(db, addon, events, subnet)
        elif report.state == AddonServerState.CRASHED:
            move(addon, AddonState.CRASHED, report.error)
    return made


# ---- showing ------------------------------------------------------------------------------


def to_dict(db: Session, addon: Addon, subnet: str = "") -> dict[str, Any]:
    service = plans.service_of(addon.service)
    plan = plans.plan_of(service, addon.plan)
    return {
        "name": addon.name, "service": addon.service, "plan": f"{addon.service}:{addon.plan}",
        "app": addon.app_name, "state": addon.state, "reason": addon.reason,
        "node": addon.node, "created_at": addon.created_at, "created_by": addon.created_by,
        "started_at": addon.started_at, "memory_mb": round(addon.memory_mb, 1),
        "version": service.version,
        "limits": {"memory_mb": plan.memory_mb, "disk_mb": plan.disk_mb,
                   "connections": plan.connections, "maxmemory_mb": plan.maxmemory_mb,
                   "policy": plan.policy},
        "attachments": [{"app": a.app.name, "as": a.name, "config_var": f"{a.name}_URL",
                         "pending": a.config_pending} for a in all_attachments(db, addon)],
    }
