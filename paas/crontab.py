"""Cron schedules: five-field expressions and the `@hourly` forms, in a time zone, read by
croniter (a kept library, not a parser of our own). Pure: no database, no clock but the one
passed in.

Due times are wall-clock times in the job's zone, as cron reads them. Across a DST change:
a time the clock skips (02:30 on a spring-forward night) is due once, when the clock jumps
past it (croniter gives the first instant after the gap), as Vixie cron does; a time the
clock passes twice (01:30 on a fall-back night) is due once for a job whose hours are fixed
(`30 1 * * *`: daily means once a day) and every real hour for one whose hour is `*` (hourly
means every hour)."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError

NICKNAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# The hour field of each nickname: all but @hourly fix the hour.
_NICKNAME_HOURS = {"@hourly": "*"}
# The most occurrences looked at in one call (a `* * * * *` job over 10 days): a bound, so a
# scheduler that was down for a year does not walk every minute of it.
MAX_STEPS = 15000


class BadSchedule(ValueError):
    """An expression or time zone cron cannot run; the message says why."""


@dataclass(frozen=True)
class Schedule:
    expression: str
    tz: str = "UTC"

    @classmethod
    def parse(cls, expression: str, tz: str = "UTC") -> Schedule:
        """The schedule, or BadSchedule saying what is wrong with it."""
        text = " ".join(str(expression).split())
        zone(tz)
        if text.startswith("@"):
            if text.lower() not in NICKNAMES:
                raise BadSchedule(f"{text} is not one of {', '.join(NICKNAMES)}")
            return cls(text.lower(), tz)
        fields = text.split(" ")
        if len(fields) != 5:
            raise BadSchedule(f"a schedule has 5 fields (minute hour day month weekday) or is "
                              f"one of {', '.join(NICKNAMES)}; this one has {len(fields)}")
        why = _fault(text)
        if why:
            raise BadSchedule(next((f"its {name} field {field!r} {fault}"
                                    for name, field, fault in _field_faults(fields)), why))
        schedule = cls(text, tz)
        schedule.due_after(time.time())  # a date that never comes (30 February) is refused here
        return schedule

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.tz)

    @property
    def fixed_hours(self) -> bool:
        hours = _NICKNAME_HOURS.get(self.expression, "0") if self.expression.startswith("@") \
            else self.expression.split(" ")[1]
        return hours != "*"

    def due_after(self, moment: float) -> float:
        """The first due time after `moment` (unix seconds)."""
        found = self._walk(moment, moment + 8 * 366 * 86400, first=True)
        if not found:
            raise BadSchedule(f"{self.expression} is never due")  # e.g. 30 February
        return found[0]

    def due_between(self, after: float, until: float) -> list[float]:
        """The due times in (after, until], oldest first (at most MAX_STEPS of them)."""
        return self._walk(after, until, first=False)

    def last_due(self, after: float, until: float) -> float | None:
        """The newest due time in (after, until], if any."""
        found = self.due_between(max(after, until - 10 * 86400), until)
        return found[-1] if found else None

    def _walk(self, after: float, until: float, *, first: bool) -> list[float]:
        # Fixed hours: start early enough to have seen a wall time's first pass (a DST
        # change moves the clock by at most 2 h) before `after`.
        lookback = 3 * 3600 if self.fixed_hours else 0
        start = dt.datetime.fromtimestamp(after - lookback, self.zone)
        steps = croniter(self.expression, start)
        found: list[float] = []
        seen_walls: set[dt.datetime] = set()
        for _ in range(MAX_STEPS):
            try:
                when = steps.get_next(dt.datetime)
            except CroniterError:  # no further date (30 February)
                break
            stamp = when.timestamp()
            if stamp > until:
                break
            wall = when.replace(tzinfo=None)
            # The second pass of a wall time on a fall-back night: once for fixed hours.
            if wall in seen_walls and self.fixed_hours:
                continue
            seen_walls.add(wall)
            if stamp > after:
                found.append(stamp)
                if first:
                    break
        return found


FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")


def _fault(expression: str) -> str | None:
    """What croniter finds wrong with `expression`, None when nothing."""
    try:
        croniter(expression)
    except (CroniterError, ValueError, KeyError) as error:
        reason = str(error).replace(f"[{expression}] ", "")
        return reason.replace("is not acceptable, out of range", "is out of range") or \
            "is not a cron expression"
    return None


def _field_faults(fields: list[str]) -> list[tuple[str, str, str]]:
    """Each field croniter refuses on its own (the others `*`): its name, text and fault."""
    found = []
    for index, name in enumerate(FIELDS):
        alone = " ".join(f if i == index else "*" for i, f in enumerate(fields))
        fault = _fault(alone)
        if fault:
            found.append((name, fields[index], fault))
    return found


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise BadSchedule(f"{name!r} is not a time zone (e.g. UTC, Europe/Paris, "
                          "America/New_York)") from None
