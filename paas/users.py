"""Users: people who log in with an email and a password and own or collaborate on apps."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from paas import auth
from paas.errors import Conflict, Invalid, NotFound, Unauthorized
from paas.models import User

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


def validate_email(email: str) -> str:
    email = email.strip().lower()
    if not EMAIL.fullmatch(email):
        raise Invalid(f"invalid email {email[:80]!r}: use an address like ada@example.com")
    return email


def validate_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise Invalid(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")


def create(db: Session, email: str, password: str) -> User:
    email = validate_email(email)
    validate_password(password)
    if db.scalar(select(User).where(User.email == email)):
        raise Conflict(f"a user {email} exists already")
    user = User(email=email, password_hash=auth.hash_password(password))
    db.add(user)
    db.flush()
    return user


def by_email(db: Session, email: str) -> User:
    user = db.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise NotFound(f"no user {email[:80]!r}: the admin creates users with `paas users:create`")
    return user


def login(db: Session, email: str, password: str) -> User:
    user = db.scalar(select(User).where(User.email == email.strip().lower()))
    if not auth.check_password(user, password):
        raise Unauthorized("wrong email or password")
    assert user is not None
    return user


def everyone(db: Session) -> list[User]:
    return list(db.scalars(select(User).order_by(User.email)))


def to_dict(user: User) -> dict[str, Any]:
    role = "admin" if user.is_admin else "service" if user.is_service else "user"
    return {"email": user.email, "role": role, "created_at": user.created_at}
