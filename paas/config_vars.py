"""Config vars: the app's environment. Each change makes a new release (when there is code)."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from paas.errors import Invalid
from paas.models import App, ConfigVar

KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED = frozenset({"PORT", "DYNO", "PS", "HOME", "PAAS_RELEASE_VERSION", "PAAS_SLUG_COMMIT"})
MAX_KEY = 255
MAX_VALUE = 32 * 1024


def _encodable(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def validate(changes: dict[str, str | None]) -> None:
    for key, value in changes.items():
        if value is not None and not value.isascii() and not _encodable(value):
            raise Invalid(f"the value of {key!r} is not valid Unicode (a lone surrogate): "
                          "send UTF-8 text")
        if not KEY.fullmatch(key) or len(key) > MAX_KEY:
            raise Invalid(f"invalid config var name {key!r}: use letters, digits and "
                          "underscores, not starting with a digit (e.g. DATABASE_URL)")
        if key in RESERVED:
            raise Invalid(f"{key} is set by the platform for every dyno and cannot be changed")
        if value is not None and len(value.encode()) > MAX_VALUE:
            raise Invalid(f"the value of {key} is over {MAX_VALUE // 1024} KiB: store it "
                          "elsewhere and put its location in a config var")
        if value is not None and "\0" in value:
            raise Invalid(f"the value of {key} contains a NUL byte, which no environment holds")


def current(db: Session, app: App) -> dict[str, str]:
    rows = db.scalars(select(ConfigVar).where(ConfigVar.app_id == app.id).order_by(ConfigVar.key))
    return {row.key: row.value for row in rows}


def apply(db: Session, app: App, changes: dict[str, str | None]) -> str:
    """Sets (value) or unsets (None) vars; returns the release description (never values)."""
    validate(changes)
    rows = {r.key: r for r in db.scalars(select(ConfigVar).where(ConfigVar.app_id == app.id))}
    for key, value in changes.items():
        if value is None:
            if key in rows:
                db.delete(rows[key])
        elif key in rows:
            rows[key].value = value
        else:
            db.add(ConfigVar(app_id=app.id, key=key, value=value))
    db.flush()
    set_keys = [k for k, v in changes.items() if v is not None]
    unset_keys = [k for k, v in changes.items() if v is None]
    parts = []
    if set_keys:
        parts.append(f"Set {', '.join(set_keys)} config vars")
    if unset_keys:
        parts.append(f"Unset {', '.join(unset_keys)} config vars")
    return "; ".join(parts)


def replace(db: Session, app: App, config: dict[str, str]) -> None:
    """Makes the app's vars exactly `config` (a rollback restores an old release's)."""
    for row in db.scalars(select(ConfigVar).where(ConfigVar.app_id == app.id)):
        db.delete(row)
    db.flush()
    for key, value in config.items():
        db.add(ConfigVar(app_id=app.id, key=key, value=value))
    db.flush()
