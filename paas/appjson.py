"""app.json, in its Heroku/Dokku form: what the platform reads of it.

- `formation`: {"web": {"quantity": 2, "size": "standard"}}, defaults for new process types;
- `scripts.dokku.predeploy` / `postdeploy`: commands run in a one-off dyno of the new release,
  before it takes traffic / after it did;
- `healthchecks.web`: a list (Dokku) or one object of checks {path, content, initialDelay,
  wait, timeout, attempts}: Dokku's meaning (first attempt after initialDelay, then one each
  `wait` seconds, each allowed `timeout` seconds, `attempts` failures fail the dyno).
  Without it, a web dyno is healthy once it accepts connections on $PORT.
- `cron`: [{"command": "python task.py", "schedule": "@daily"}] as Dokku reads it, each run a
  one-off dyno (`paas/cron.py`); five-field expressions or `@hourly`... (`paas/crontab.py`),
  in UTC unless the job or the document sets `"TZ"` (an IANA zone name).

It is read as Dokku reads it: JSON with comments (`//`, `/* */`) and trailing commas, by the
json5 parser (JSON5 is a superset of that; NaN and Infinity are refused, as JSON has neither).
Parsing gives a plain dict (it is stored in the slug) with every default filled in; bad input
is refused with what to change."""

from __future__ import annotations

import re
from typing import Any

import json5

from paas import crontab
from paas.errors import Invalid

MAX_BYTES = 64 * 1024
# Dokku's defaults for a health check.
CHECK_DEFAULTS: dict[str, Any] = {"path": "/", "content": "", "initialDelay": 0, "wait": 5,
                                  "timeout": 5, "attempts": 3}
MAX_SECONDS = 600
MAX_CRON_JOBS = 50
MAX_COMMAND = 4096


def parse(text: str, sizes: set[str]) -> dict[str, Any]:
    """The platform's view of an app.json document."""
    try:
        size = len(text.encode())
    except UnicodeEncodeError:  # a lone surrogate: bytes that were never UTF-8
        raise Invalid("app.json is not UTF-8 text") from None
    if size > MAX_BYTES:
        raise Invalid("app.json is over 64 KiB")
    document = _document(text)
    if not isinstance(document, dict):
        raise Invalid("app.json must hold a JSON object")
    return {
        "formation": _formation(document.get("formation") or {}, sizes),
        "scripts": _scripts(document.get("scripts") or {}),
        "healthchecks": _healthchecks(document.get("healthchecks") or {}),
        "cron": _cron(document.get("cron") or [], document.get("TZ", "UTC")),
    }


_JSON5_ERROR = re.compile(r"^<string>:(?P<line>\d+) (?P<reason>.*) at column (?P<column>\d+)$",
                          re.DOTALL)


def _document(text: str) -> Any:
    """The document, or where and why it cannot be read (line and column, 1-based)."""
    try:
        return json5.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise Invalid("app.json is not valid JSON: nested too deeply") from None
    except ValueError as error:
        raise Invalid(f"app.json is not valid JSON (comments and trailing commas are "
                      f"fine): {_where(str(error))}") from None


def _where(message: str) -> str:
    match = _JSON5_ERROR.match(message)
    if not match:
        return message
    reason = match["reason"].replace('"\n"', "end of line").replace('"\r"', "end of line")
    return f"line {match['line']}, column {match['column']}: {reason[0].lower()}{reason[1:]}"


def _no_constant(name: str) -> Any:
    raise Invalid(f"app.json is not valid JSON: {name} is not a JSON number")


def _formation(raw: Any, sizes: set[str]) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, dict):
        raise Invalid('app.json "formation" must be an object: {"web": {"quantity": 1}}')
    found = {}
    for process_type, entry in raw.items():
        if not isinstance(entry, dict):
            raise Invalid(f'app.json formation.{process_type} must be an object')
        quantity = entry.get("quantity", 1)
        if not isinstance(quantity, int) or not 0 <= quantity <= 100:
            raise Invalid(f"app.json formation.{process_type}.quantity must be 0 to 100")
        size = str(entry.get("size", "basic")).lower()
        if size not in sizes:
            raise Invalid(f"app.json formation.{process_type}.size {size!r} is not one of: "
                          f"{', '.join(sorted(sizes))}")
        found[str(process_type)] = {"quantity": quantity, "size": size}
    return found


def _scripts(raw: Any) -> dict[str, str]:
    dokku = raw.get("dokku") if isinstance(raw, dict) else None
    if dokku is None:
        return {}
    if not isinstance(dokku, dict):
        raise Invalid('app.json "scripts.dokku" must be an object')
    found = {}
    for name in ("predeploy", "postdeploy"):
        command = dokku.get(name)
        if command is None:
            continue
        if not isinstance(command, str) or not command.strip():
            raise Invalid(f"app.json scripts.dokku.{name} must be a command line (a string)")
        found[name] = command
    return found


def _healthchecks(raw: Any) -> dict[str, list[dict[str, Any]]]:
    if not isinstance(raw, dict):
        raise Invalid('app.json "healthchecks" must be an object: {"web": [{"path": "/"}]}')
    found = {}
    for process_type, checks in raw.items():
        listed = checks if isinstance(checks, list) else [checks]
        found[str(process_type)] = [_check(process_type, check) for check in listed]
    return found


def _check(process_type: str, raw: Any) -> dict[str, Any]:
    where = f"app.json healthchecks.{process_type}"
    if not isinstance(raw, dict):
        raise Invalid(f"{where} must be a list of objects like {{\"path\": \"/health\"}}")
    check = {**CHECK_DEFAULTS, **{k: raw[k] for k in CHECK_DEFAULTS if k in raw}}
    if not isinstance(check["path"], str) or not check["path"].startswith("/"):
        raise Invalid(f"{where}: path must start with / (got {check['path']!r})")
    if not isinstance(check["content"], str):
        raise Invalid(f"{where}: content must be a string")
    for name in ("initialDelay", "wait", "timeout", "attempts"):
        value = check[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                0 <= value <= MAX_SECONDS):
            raise Invalid(f"{where}: {name} must be a number from 0 to {MAX_SECONDS}")
    check["attempts"] = max(1, int(check["attempts"]))
    check["type"] = str(raw.get("type", "startup"))
    return check


def _cron(raw: Any, app_tz: Any) -> list[dict[str, str]]:
    """app.json's `cron` list: each job's command, schedule and time zone, checked."""
    if not isinstance(raw, list):
        raise Invalid('app.json "cron" must be a list: [{"command": "python task.py", '
                      '"schedule": "@daily"}]')
    if len(raw) > MAX_CRON_JOBS:
        raise Invalid(f"app.json cron has {len(raw)} jobs; at most {MAX_CRON_JOBS}")
    if not isinstance(app_tz, str):
        raise Invalid('app.json "TZ" must be a time zone name, e.g. "Europe/Paris"')
    return [_cron_job(index, entry, app_tz) for index, entry in enumerate(raw)]


def _cron_job(index: int, raw: Any, app_tz: str) -> dict[str, str]:
    where = f"app.json cron[{index}]"
    if not isinstance(raw, dict):
        raise Invalid(f'{where} must be an object: {{"command": "python task.py", '
                      f'"schedule": "@daily"}}')
    command, schedule, tz = raw.get("command"), raw.get("schedule"), raw.get("TZ", app_tz)
    if not isinstance(command, str) or not command.strip() or len(command) > MAX_COMMAND:
        raise Invalid(f"{where}: command must be a command line (a string of at most "
                      f"{MAX_COMMAND} characters)")
    where = f"{where} ({command!r})"
    if not isinstance(schedule, str):
        raise Invalid(f'{where}: schedule must be a string like "*/10 * * * *" or "@daily"')
    if not isinstance(tz, str):
        raise Invalid(f'{where}: TZ must be a time zone name, e.g. "Europe/Paris"')
    try:
        parsed = crontab.Schedule.parse(schedule, tz)
    except crontab.BadSchedule as error:
        raise Invalid(f"{where}: schedule {schedule!r} (TZ {tz}) cannot run: {error}") from None
    return {"command": command, "schedule": parsed.expression, "tz": parsed.tz}
