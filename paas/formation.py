"""Formation: how many dynos of each process type, and their size. Kept apart from releases."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from paas.errors import Invalid
from paas.models import App, Formation

MAX_QUANTITY = 100


@dataclass(frozen=True)
class Size:
    name: str
    memory_mb: int
    cpu_shares: int
    pids: int


SIZES = {
    size.name: size
    for size in (
        Size("eco", 256, 256, 128),
        Size("basic", 512, 512, 256),
        Size("standard", 1024, 1024, 512),
        Size("performance", 2048, 2048, 1024),
    )
}


def ensure_types(db: Session, app: App, types: list[str]) -> None:
    """A new process type starts with Heroku's default: one web dyno, no other dynos."""
    known = {row.type for row in db.scalars(select(Formation).where(Formation.app_id == app.id))}
    for process_type in types:
        if process_type not in known:
            db.add(Formation(app_id=app.id, type=process_type,
                             quantity=1 if process_type == "web" else 0))
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
        if process_type not in declared:
            raise Invalid(f"{app.name} has no process type {process_type!r}; "
                          f"its Procfile declares: {', '.join(sorted(declared))}")
        if not 0 <= count <= MAX_QUANTITY:
            raise Invalid(f"{process_type}={count}: the quantity must be 0 to {MAX_QUANTITY}")
    rows = {row.type: row for row in for_app(db, app)}
    for process_type, count in changes.items():
        if process_type in rows:
            rows[process_type].quantity = count
        else:
            db.add(Formation(app_id=app.id, type=process_type, quantity=count))
    db.flush()
