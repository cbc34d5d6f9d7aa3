"""Users, passwords, tokens and who may touch which app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from paas import access, auth, users
from paas.errors import Conflict, Invalid, NotFound, Unauthorized
from paas.models import App, User
from tests import postgres


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Session]:
    with postgres.session_in(tmp_path) as session:
        yield session


def test_passwords_are_stored_as_argon2id_hashes(db: Session) -> None:
    user = users.create(db, "Ada@Example.com", "correct horse")

    assert user.email == "ada@example.com"
    assert user.password_hash is not None
    assert user.password_hash.startswith("$argon2id$")
    assert "correct horse" not in user.password_hash


def test_login_needs_the_right_password_and_says_the_same_for_any_mistake(db: Session) -> None:
    users.create(db, "ada@example.com", "correct horse")

    assert users.login(db, " ADA@example.com", "correct horse").email == "ada@example.com"
    messages = set()
    for email, password in (("ada@example.com", "wrong horse"),
                            ("nobody@example.com", "correct horse")):
        with pytest.raises(Unauthorized) as caught:
            users.login(db, email, password)
        messages.add(caught.value.message)
    assert messages == {"wrong email or password"}


def test_identities_without_a_password_cannot_log_in_with_one(db: Session) -> None:
    db.add(User(email=auth.ADMIN_EMAIL, is_admin=True))
    db.flush()

    with pytest.raises(Unauthorized):
        users.login(db, auth.ADMIN_EMAIL, "")


@pytest.mark.parametrize(("email", "password", "error"), [
    ("not-an-email", "long enough", Invalid),
    ("a@b", "short", Invalid),
    ("ada@example.com", "long enough", Conflict),
])
def test_bad_users_are_refused(db: Session, email: str, password: str,
                               error: type[Exception]) -> None:
    users.create(db, "ada@example.com", "correct horse")

    with pytest.raises(error):
        users.create(db, email, password)


def test_tokens_work_until_revoked_and_only_their_owner_revokes_them(db: Session) -> None:
    ada = users.create(db, "ada@example.com", "correct horse")
    bob = users.create(db, "bob@example.com", "battery staple")
    row, token = auth.create_token(db, ada, "ci")

    assert auth.authenticate(db, token) is ada
    assert row.token_hash == auth.hash_token(token) and token not in row.token_hash
    with pytest.raises(NotFound):
        auth.revoke(db, bob, row.id)
    auth.revoke(db, ada, row.id)
    db.flush()
    with pytest.raises(Unauthorized):
        auth.authenticate(db, token)


def test_owner_collaborators_and_admin_may_access_an_app_others_may_not(db: Session) -> None:
    ada = users.create(db, "ada@example.com", "correct horse")
    bob = users.create(db, "bob@example.com", "battery staple")
    admin = User(email=auth.ADMIN_EMAIL, is_admin=True)
    db.add(admin)
    app = App(name="demo", slot=1, owner_id=ada.id)
    db.add(app)
    db.flush()

    assert [auth.may_access(db, u, app) for u in (ada, bob, admin)] == [True, False, True]
    access.add(db, app, "BOB@example.com")
    assert auth.may_access(db, bob, app)
    assert not auth.may_manage(bob, app)
    assert access.listing(db, app) == [{"email": "ada@example.com", "role": "owner"},
                                       {"email": "bob@example.com", "role": "collaborator"}]
    with pytest.raises(Conflict):
        access.add(db, app, "bob@example.com")
    with pytest.raises(Conflict):
        access.add(db, app, "ada@example.com")
    access.remove(db, app, "bob@example.com")
    db.flush()
    assert not auth.may_access(db, bob, app)
    with pytest.raises(NotFound):
        access.remove(db, app, "bob@example.com")
