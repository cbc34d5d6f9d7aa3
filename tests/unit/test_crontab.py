"""Due times of cron schedules (paas/crontab.py, croniter underneath): nicknames, bad
expressions refused with why, and a job with a time zone across DST changes: a skipped wall
time runs once when the clock jumps past it, a repeated one once for a job with fixed hours
and every real hour for an hourly one."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from paas.crontab import BadSchedule, Schedule

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def at(zone: ZoneInfo, *parts: int, fold: int = 0) -> float:
    return dt.datetime(*parts, tzinfo=zone, fold=fold).timestamp()  # type: ignore[misc]


def walls(stamps: list[float], zone: ZoneInfo) -> list[str]:
    return [dt.datetime.fromtimestamp(s, zone).strftime("%m-%d %H:%M%z") for s in stamps]


def test_five_fields_and_nicknames_parse() -> None:
    assert Schedule.parse("*/15  *  * * 1-5").expression == "*/15 * * * 1-5"
    assert Schedule.parse("@Daily").expression == "@daily"
    daily = Schedule.parse("@daily")
    start = at(ZoneInfo("UTC"), 2026, 12, 3, 9, 40)
    assert daily.due_after(start) == at(ZoneInfo("UTC"), 2026, 12, 4, 0, 0)
    assert Schedule.parse("* * * * *").due_after(start) == start + 60


@pytest.mark.parametrize(("expression", "tz", "why"), [
    ("61 * * * *", "UTC", "its minute field .61. is out of range"),
    ("* 25 * * *", "UTC", "its hour field .25. is out of range"),
    ("* * *", "UTC", "5 fields"),
    ("* * * * * *", "UTC", "this one has 6"),
    ("@sometimes", "UTC", "is not one of @yearly"),
    ("@reboot", "UTC", "is not one of"),
    ("a b c d e", "UTC", "not acceptable"),
    ("* * * * *", "Mars/Olympus", "is not a time zone"),
])
def test_bad_schedules_say_why(expression: str, tz: str, why: str) -> None:
    with pytest.raises(BadSchedule, match=why):
        Schedule.parse(expression, tz)


def test_a_daily_job_on_a_spring_forward_night_runs_once_after_the_gap() -> None:
    # Paris, 29 March 2026: 02:00 → 03:00; 02:30 never happens.
    job = Schedule.parse("30 2 * * *", "Europe/Paris")
    due = job.due_between(at(PARIS, 2026, 3, 27, 12, 0), at(PARIS, 2026, 3, 31, 12, 0))
    assert walls(due, PARIS) == ["03-28 02:30+0100", "03-29 03:00+0200", "03-30 02:30+0200",
                                 "03-31 02:30+0200"]


def test_a_daily_job_on_a_fall_back_night_runs_once() -> None:
    # Paris, 25 October 2026: 03:00 → 02:00; 02:30 happens twice.
    job = Schedule.parse("30 2 * * *", "Europe/Paris")
    due = job.due_between(at(PARIS, 2026, 10, 24, 12, 0), at(PARIS, 2026, 10, 26, 12, 0))
    assert walls(due, PARIS) == ["10-25 02:30+0200", "10-26 02:30+0100"]
    # Asked for from between the two passes, the next due time is the next day's.
    between = at(PARIS, 2026, 10, 25, 2, 45)
    assert walls([job.due_after(between)], PARIS) == ["10-26 02:30+0100"]
    assert job.last_due(between - 3600, between + 3600) == at(PARIS, 2026, 10, 25, 2, 30)


def test_an_hourly_job_runs_every_real_hour_across_both_changes() -> None:
    job = Schedule.parse("0 * * * *", "America/New_York")
    # 1 November 2026: 02:00 EDT → 01:00 EST; 01:00 happens twice, both are real hours.
    fall = job.due_between(at(NEW_YORK, 2026, 11, 1, 0, 30), at(NEW_YORK, 2026, 11, 1, 3, 30))
    assert walls(fall, NEW_YORK) == ["11-01 01:00-0400", "11-01 01:00-0500",
                                     "11-01 02:00-0500", "11-01 03:00-0500"]
    assert [b - a for a, b in itertools.pairwise(fall)] == [3600.0] * 3
    # 8 March 2026: 02:00 EST → 03:00 EDT; the hour 02:00 does not exist.
    spring = job.due_between(at(NEW_YORK, 2026, 3, 8, 0, 30), at(NEW_YORK, 2026, 3, 8, 4, 30))
    assert walls(spring, NEW_YORK) == ["03-08 01:00-0500", "03-08 03:00-0400",
                                       "03-08 04:00-0400"]


def test_the_zone_moves_the_due_time_in_utc() -> None:
    paris = Schedule.parse("0 9 * * *", "Europe/Paris")
    utc = Schedule.parse("0 9 * * *")
    start = at(ZoneInfo("UTC"), 2026, 12, 3, 0, 0)
    assert utc.due_after(start) - paris.due_after(start) == 3600  # Paris is UTC+1 in winter
    summer = at(ZoneInfo("UTC"), 2026, 7, 3, 0, 0)
    assert utc.due_after(summer) - paris.due_after(summer) == 7200


def test_a_schedule_that_is_never_due_says_so() -> None:
    with pytest.raises(BadSchedule, match="never due"):
        Schedule.parse("0 0 30 2 *")
