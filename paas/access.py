"""Who is on an app: its owner and its collaborators."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from paas import users
from paas.errors import Conflict, Invalid, NotFound
from paas.models import App, Collaborator, User


def collaborators(db: Session, app: App) -> list[Collaborator]:
    query = select(Collaborator).where(Collaborator.app_id == app.id).order_by(Collaborator.id)
    return list(db.scalars(query))


def listing(db: Session, app: App) -> list[dict[str, Any]]:
    owner = db.get(User, app.owner_id) if app.owner_id else None
    rows = [{"email": owner.email, "role": "owner"}] if owner else []
    rows += [{"email": c.user.email, "role": "collaborator"} for c in collaborators(db, app)]
    return rows


def add(db: Session, app: App, email: str) -> User:
    user = users.by_email(db, email)
    if user.is_service:
        raise Invalid("the platform's service identity cannot collaborate on apps")
    if user.id == app.owner_id:
        raise Conflict(f"{user.email} owns {app.name} already")
    if any(c.user_id == user.id for c in collaborators(db, app)):
        raise Conflict(f"{user.email} is a collaborator on {app.name} already")
    db.add(Collaborator(app_id=app.id, user_id=user.id))
    db.flush()
    return user


def remove(db: Session, app: App, email: str) -> None:
    for row in collaborators(db, app):
        if row.user.email == email.strip().lower():
            db.delete(row)
            return
    raise NotFound(f"{email[:80]!r} is not a collaborator on {app.name}: `paas access` lists them")
