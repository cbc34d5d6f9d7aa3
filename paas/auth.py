"""Identities, API tokens, password hashes and who may touch which app.

Tokens are stored as sha256 digests, never in the clear: a token is random and long, so a
fast hash is enough. Passwords are chosen by people, so they get a slow one (argon2id)."""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from paas.errors import Forbidden, NotFound, Unauthorized
from paas.models import App, Collaborator, Token, User

ADMIN_EMAIL = "admin@localhost"
SERVICE_EMAIL = "service@localhost"

_hasher = PasswordHasher()
# Verified against when the email is unknown, so a wrong email costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(user: User | None, password: str) -> bool:
    stored = user.password_hash if user is not None else None
    try:
        _hasher.verify(stored or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return stored is not None


def issue_token(db: Session, user: User, description: str) -> str:
    return create_token(db, user, description)[1]


def create_token(db: Session, user: User, description: str) -> tuple[Token, str]:
    token = secrets.token_urlsafe(32)
    row = Token(user_id=user.id, token_hash=hash_token(token), description=description[:200])
    db.add(row)
    db.flush()
    return row, token


def token_row(db: Session, token: str | None) -> Token:
    if not token:
        raise Unauthorized("no API token: run `paas login`, or pass one as a Bearer token")
    row = db.scalar(select(Token).where(Token.token_hash == hash_token(token)))
    if row is None:
        raise Unauthorized("invalid API token: run `paas login` again")
    return row


def authenticate(db: Session, token: str | None) -> User:
    return token_row(db, token).user


def tokens_of(db: Session, user: User) -> list[Token]:
    return list(db.scalars(select(Token).where(Token.user_id == user.id).order_by(Token.id)))


def revoke(db: Session, user: User, token_id: int) -> Token:
    row = db.get(Token, token_id)
    if row is None or row.user_id != user.id:
        raise NotFound(f"you have no token {token_id}: `paas tokens` lists yours")
    db.delete(row)
    return row


def token_dict(row: Token, current_id: int | None = None) -> dict[str, Any]:
    return {"id": row.id, "description": row.description, "created_at": row.created_at,
            "current": row.id == current_id}


def require_service(user: User | None) -> None:
    if user is None or not (user.is_service or user.is_admin):
        raise Forbidden("this endpoint is for the platform's own services")


def require_admin(user: User) -> None:
    if not user.is_admin:
        raise Forbidden("only the platform's admin may do this")


def is_collaborator(db: Session, user: User, app: App) -> bool:
    return db.scalar(select(Collaborator.id).where(Collaborator.app_id == app.id,
                                                   Collaborator.user_id == user.id)) is not None


def may_access(db: Session, user: User, app: App) -> bool:
    """The admin and the services see every app; a user, the apps they own or are on."""
    return (user.is_admin or user.is_service or app.owner_id == user.id
            or is_collaborator(db, user, app))


def may_manage(user: User, app: App) -> bool:
    """Destroying an app and changing who is on it: its owner and the admin only."""
    return user.is_admin or app.owner_id == user.id


def require_manage(user: User, app: App, what: str) -> None:
    if not may_manage(user, app):
        raise Forbidden(f"only the owner of {app.name} may {what}")


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
