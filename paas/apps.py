"""Apps: a name, a slot on the dyno network, a git repository, an owner."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from paas.auth import may_access
from paas.errors import Conflict, Invalid, NotFound
from paas.models import App, Release, User

NAME = re.compile(r"^[a-z][a-z0-9-]{1,29}$")
MAX_SLOTS = 250


def validate_name(name: str) -> str:
    if not NAME.fullmatch(name) or name.endswith("-") or "--" in name:
        raise Invalid(
            f"invalid app name {name!r}: use 2 to 30 lowercase letters, digits and dashes, "
            "starting with a letter (a DNS label), e.g. `my-app`"
        )
    return name


def _free_slot(db: Session) -> int:
    used = set(db.scalars(select(App.slot)))
    for slot in range(1, MAX_SLOTS + 1):
        if slot not in used:
            return slot
    raise Conflict(f"this host runs {MAX_SLOTS} apps already: destroy one first")


def create(db: Session, name: str, owner: User) -> App:
    validate_name(name)
    if db.scalar(select(App).where(App.name == name)):
        raise Conflict(f"app {name} already exists: choose another name")
    app = App(name=name, slot=_free_slot(db), owner_id=owner.id)
    db.add(app)
    db.flush()
    return app


def by_name(db: Session, name: str) -> App:
    app = db.scalar(select(App).where(App.name == name)) if NAME.fullmatch(name) else None
    if app is None:
        raise NotFound(f"no app named {name!r}: `paas apps` lists yours")
    return app


def get(db: Session, name: str, user: User) -> App:
    app = db.scalar(select(App).where(App.name == name)) if NAME.fullmatch(name) else None
    if app is None or not may_access(db, user, app):
        raise NotFound(f"no app named {name!r}: `paas apps` lists yours")
    return app


def visible(db: Session, user: User) -> list[App]:
    return [a for a in db.scalars(select(App).order_by(App.name)) if may_access(db, user, a)]


def destroy(db: Session, app: App, confirm: str | None) -> None:
    if confirm != app.name:
        raise Invalid(f"destroying {app.name} deletes its code, releases and dynos: "
                      f"confirm with --confirm {app.name}")
    app.current_release_id = None
    app.pending_release_id = None
    db.flush()
    db.delete(app)


def web_url(app: App, domain: str, router_port: int) -> str:
    port = "" if router_port == 80 else f":{router_port}"
    return f"http://{app.name}.{domain}{port}/"


def to_dict(app: App, current: Release | None, domain: str, router_port: int) -> dict[str, Any]:
    return {
        "name": app.name,
        "web_url": web_url(app, domain, router_port),
        "current_release": current.version if current else None,
        "created_at": app.created_at,
    }
