"""Config var rules: names, reserved keys, sizes, and descriptions that never hold values."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from paas import config_vars
from paas.errors import Invalid
from paas.models import App
from tests import postgres


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Session]:
    with postgres.session_in(tmp_path) as session:
        yield session


@pytest.fixture
def app(db: Session) -> App:
    app = App(name="demo", slot=1)
    db.add(app)
    db.flush()
    return app


@pytest.mark.parametrize("key", ["1ABC", "A-B", "A B", "", "É", "A=B", "x" * 256])
def test_bad_names_are_refused_with_what_to_use(key: str) -> None:
    with pytest.raises(Invalid, match="use letters, digits and underscores"):
        config_vars.validate({key: "v"})


@pytest.mark.parametrize("key", sorted(config_vars.RESERVED))
def test_keys_the_platform_sets_are_refused(key: str) -> None:
    with pytest.raises(Invalid, match=f"{key} is set by the platform"):
        config_vars.validate({key: "v"})


def test_errors_about_a_value_never_quote_it() -> None:
    secret = "hunter2-" + "x" * config_vars.MAX_VALUE
    for value in (secret, "hunter2\0"):
        with pytest.raises(Invalid) as caught:
            config_vars.validate({"API_KEY": value})
        assert "hunter2" not in caught.value.message
        assert "API_KEY" in caught.value.message


def test_awkward_values_are_stored_exactly(db: Session, app: App) -> None:
    values = {"A": " spaced = \"quoted\" 'single' \n\r\t ", "B": "世界 🚀", "C": ""}

    config_vars.apply(db, app, values)

    assert config_vars.current(db, app) == values


def test_the_description_names_keys_never_values(db: Session, app: App) -> None:
    config_vars.apply(db, app, {"OLD": "x"})

    description = config_vars.apply(db, app, {"FOO": "secret-1", "BAR": "secret-2",
                                              "OLD": None})

    assert description == "Set FOO, BAR config vars; Unset OLD config vars"
    assert config_vars.current(db, app) == {"BAR": "secret-2", "FOO": "secret-1"}


def test_a_refused_change_stores_nothing(db: Session, app: App) -> None:
    config_vars.apply(db, app, {"KEEP": "1"})

    with pytest.raises(Invalid):
        config_vars.apply(db, app, {"NEW": "2", "PORT": "80"})

    assert config_vars.current(db, app) == {"KEEP": "1"}


def test_replace_makes_the_config_exactly_the_given_one(db: Session, app: App) -> None:
    config_vars.apply(db, app, {"A": "1", "B": "2"})

    config_vars.replace(db, app, {"B": "old", "C": "3"})

    assert config_vars.current(db, app) == {"B": "old", "C": "3"}
