"""PAAS_RELEASE_PHASE_TIMEOUT: a number of seconds above 0, 900 by default."""

import pytest

from paas.settings import Settings


def test_the_default_is_900_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAAS_RELEASE_PHASE_TIMEOUT", raising=False)
    assert Settings().release_phase_timeout == 900


def test_a_value_in_seconds_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAAS_RELEASE_PHASE_TIMEOUT", "8.5")
    assert Settings().release_phase_timeout == 8.5


@pytest.mark.parametrize("raw", ["0", "-5", "soon", "nan", "inf", ""])
def test_a_bad_value_is_refused_saying_what_is_wanted(monkeypatch: pytest.MonkeyPatch,
                                                      raw: str) -> None:
    monkeypatch.setenv("PAAS_RELEASE_PHASE_TIMEOUT", raw)
    with pytest.raises(ValueError, match=r"PAAS_RELEASE_PHASE_TIMEOUT=.*: must be a number of "
                                         "seconds above 0"):
        Settings()
