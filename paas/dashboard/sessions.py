"""Dashboard sessions: a signed, expiring cookie naming an API token row, and a CSRF nonce.

The cookie never holds a usable secret: it names the token row (id and owner), so signing out
deletes the row and a copied cookie dies with it; itsdangerous signs it with a key kept in
PAAS_HOME and refuses it after `max_age` seconds."""

from __future__ import annotations

import hmac
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from paas import auth
from paas.errors import Unauthorized
from paas.models import Token

COOKIE = "paas_session"
SALT = "paas-dashboard-session"
SIGN_IN_DESCRIPTION = "dashboard sign-in"


@dataclass
class DashboardSession:
    """What the cookie carries. `token_id` is None before sign-in; `owns_token` says the
    sign-in created the token (sign-out then deletes it; a pasted CLI token stays)."""

    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    token_id: int | None = None
    user_id: int | None = None
    owns_token: bool = False
    email: str = ""
    admin: bool = False  # shows the admin's pages in the nav (each page checks it again)
    flash: list[tuple[str, str]] = field(default_factory=list)

    @property
    def signed_in(self) -> bool:
        return self.token_id is not None

    def to_dict(self) -> dict[str, Any]:
        return {"c": self.csrf, "t": self.token_id, "u": self.user_id, "o": self.owns_token,
                "e": self.email, "a": self.admin, "f": self.flash}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DashboardSession:
        return cls(csrf=str(data["c"]), token_id=data.get("t"), user_id=data.get("u"),
                   owns_token=bool(data.get("o")), email=str(data.get("e", "")),
                   admin=bool(data.get("a")),
                   flash=[(str(k), str(t)) for k, t in data.get("f", [])])

    def say(self, kind: str, text: str) -> None:
        self.flash.append((kind, text))

    def take_flash(self) -> list[tuple[str, str]]:
        messages, self.flash = self.flash, []
        return messages

    def check_csrf(self, submitted: str | None) -> bool:
        return bool(submitted) and hmac.compare_digest(self.csrf, submitted or "")


def secret_key(home: Path) -> str:
    """The signing key, made once per installation and kept 0600 in PAAS_HOME."""
    path = home / "dashboard-secret"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(48))
        os.replace(tmp, path)
    return path.read_text().strip()


class SessionCodec:
    def __init__(self, key: str, max_age: float) -> None:
        self.serializer = URLSafeTimedSerializer(key, salt=SALT)
        self.max_age = max_age

    def dumps(self, session: DashboardSession) -> str:
        return self.serializer.dumps(session.to_dict())

    def loads(self, cookie: str | None) -> DashboardSession | None:
        """The session, or None when there is no cookie, it was tampered with or expired."""
        if not cookie:
            return None
        try:
            data = self.serializer.loads(cookie, max_age=int(self.max_age))
            return DashboardSession.from_dict(data)
        except (BadSignature, KeyError, TypeError, ValueError):
            return None


def token_of(db: Session, session: DashboardSession) -> Token:
    """The session's token row, still there and still the same user's."""
    row = db.get(Token, session.token_id) if session.token_id is not None else None
    if row is None or row.user_id != session.user_id:
        raise Unauthorized("your session has ended: sign in again")
    return row


def sign_in(db: Session, session: DashboardSession, row: Token, *, owns_token: bool,
            max_age: float) -> DashboardSession:
    """A fresh session (new CSRF nonce) for the token's user; the user's dashboard tokens
    older than a session are deleted on the way."""
    _forget_expired(db, row.user_id, row.id, max_age)
    fresh = DashboardSession(token_id=row.id, user_id=row.user_id, owns_token=owns_token,
                             email=row.user.email, admin=row.user.is_admin)
    fresh.flash = session.flash
    return fresh


def _forget_expired(db: Session, user_id: int, keep: int, max_age: float) -> None:
    cutoff = time.time() - max_age
    user = db.get(Token, keep).user  # type: ignore[union-attr]
    for old in auth.tokens_of(db, user):
        if (old.id != keep and old.description == SIGN_IN_DESCRIPTION
                and old.created_at < cutoff and old.user_id == user_id):
            db.delete(old)
