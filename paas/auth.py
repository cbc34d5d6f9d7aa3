"""Users and API tokens. Tokens are stored as sha256 digests, never in the clear."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from paas.errors import Forbidden, Unauthorized
from paas.models import App, Token, User

ADMIN_EMAIL = "admin@localhost"
SERVICE_EMAIL = "service@localhost"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(db: Session, user: User, description: str) -> str:
    token = secrets.token_urlsafe(32)
    db.add(Token(user_id=user.id, token_hash=hash_token(token), description=description))
    return token


def authenticate(db: Session, token: str | None) -> User:
    if not token:
        raise Unauthorized("no API token: run `paas login`, or pass one as a Bearer token")
    row = db.scalar(select(Token).where(Token.token_hash == hash_token(token)))
    if row is None:
        raise Unauthorized("invalid API token: run `paas login` again")
    return row.user


def require_service(user: User) -> None:
    if not (user.is_service or user.is_admin):
        raise Forbidden("this endpoint is for the platform's own services")


def may_access(user: User, app: App) -> bool:
    return user.is_admin or user.is_service or app.owner_id == user.id


def _ensure_user(db: Session, email: str, *, admin: bool, service: bool) -> User:
    user = db.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email, is_admin=admin, is_service=service)
        db.add(user)
        db.flush()
    return user


def _write_secret(path: Path, value: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.replace(tmp, path)


def bootstrap(db: Session, admin_token_path: Path, service_token_path: Path) -> None:
    """First start: an admin and a service identity, each with a token in a 0600 file."""
    for email, path, admin, service in (
        (ADMIN_EMAIL, admin_token_path, True, False),
        (SERVICE_EMAIL, service_token_path, False, True),
    ):
        user = _ensure_user(db, email, admin=admin, service=service)
        if path.exists():
            token = path.read_text().strip()
            if db.scalar(select(Token).where(Token.token_hash == hash_token(token))):
                continue
        _write_secret(path, issue_token(db, user, f"{email} (bootstrap)"))
    db.commit()
