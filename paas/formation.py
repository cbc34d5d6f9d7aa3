"""Formation: how many dynos of each process type, and their size. Kept apart from releases."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from paas.errors import Invalid
from paas.models import App, Formation
from paas.sizes import size_of

MAX_QUANTITY = 100


def ensure_types(db: Session, app: App, types: list[str],
                 defaults: dict[str, dict[str, Any]] | None = None) -> None:
    """A new process type starts with app.json's `formation` entry for it, else Heroku's
    default: one web dyno, no other dynos."""
    known = {row.type for row in db.scalars(select(Formation).where(Formation.app_id == app.id))}
    for process_type in types:
        if process_type in known or process_type == "release":
            continue
        default = (defaults or {}).get(process_type, {})
        db.add(Formation(app_id=app.id, type=process_type,
                         quantity=default.get("quantity", 1 if process_type == "web" else 0),
                         size=default.get("size", "basic")))
    db.flush()


def for_app(db: Session, app: App) -> list[Formation]:
    query = select(Formation).where(Formation.app_id == app.id).order_by(Formation.type)
    return list(db.scalars(query))


def quantity(db: Session, app: App, process_type: str) -> int:
    row = db.scalar(select(Formation).where(Formation.app_id == app.id,
                                            Formation.type == process_type))
    return row.quantity if row else 0


def scale(db: Session, app: App, declared: list[str], changes: dict[str, int]) -> None:
    if not declared:
        raise Invalid(f"{app.name} has no release yet: push code first (git push paas main)")
    for process_type, count in changes.items():
        _check_declared(app, declared, process_type)
        if not 0 <= count <= MAX_QUANTITY:
            raise Invalid(f"{process_type}={count}: the quantity must be 0 to {MAX_QUANTITY}")
    rows = {row.type: row for row in for_app(db, app)}
    for process_type, count in changes.items():
        if process_type in rows:
            rows[process_type].quantity = count
        else:
            db.add(Formation(app_id=app.id, type=process_type, quantity=count))
    db.flush()


def _check_declared(app: App, declared: list[str], process_type: str) -> None:
    if process_type not in declared or process_type == "release":
        runnable = sorted(t for t in declared if t != "release")
        raise Invalid(f"{app.name} has no process type {process_type!r}; "
                      f"its Procfile declares: {', '.join(runnable) or 'none'}")


def _row(db: Session, app: App, declared: list[str], process_type: str) -> Formation:
    if not declared:
        raise Invalid(f"{app.name} has no release yet: push code first (git push paas main)")
    _check_declared(app, declared, process_type)
    row = db.scalar(select(Formation).where(Formation.app_id == app.id,
                                            Formation.type == process_type))
    if row is None:
        row = Formation(app_id=app.id, type=process_type, quantity=0)
        db.add(row)
    return row


def resize(db: Session, app: App, declared: list[str], changes: dict[str, str]) -> None:
    """Sets the size of process types; their dynos restart with the new limits."""
    sizes = {process_type: size_of(name).name for process_type, name in changes.items()}
    for process_type, size in sizes.items():
        _row(db, app, declared, process_type).size = size
    db.flush()


def restart(db: Session, app: App, declared: list[str], process_type: str | None = None,
            index: int | None = None) -> None:
    """Marks dynos for a restart (all, one type, or one dyno); it resets their crash backoff."""
    types = [process_type] if process_type else [t for t in declared if t != "release"]
    for name in types:
        row = _row(db, app, declared, name)
        marks = dict(row.restart_marks or {})
        marks["*" if index is None else str(index)] = time.time()
        row.restart_marks = marks
    db.flush()


def restart_mark(row: Formation, index: int) -> float:
    marks = row.restart_marks or {}
    return max(marks.get("*", 0.0), marks.get(str(index), 0.0))
