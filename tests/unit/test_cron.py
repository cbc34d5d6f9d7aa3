"""The one scheduler (paas/clock.py) over SQLite: an app's cron jobs come from its current
release's app.json, a due time is claimed once however many clocks look, a run still going
makes the next due time skipped with a log line, a run's exit code and duration come back
from its one-off, `cron:run` runs a job now (once at a time), destroying the app removes its
jobs; platform jobs are claimed once per slot and a run whose clock died is failed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from paas import apps, cron, job_runs
from paas.api import internal, jobs
from paas.clock import Clock
from paas.logs import BufferedEvents
from paas.models import CronRun, JobRunState, OneOff, OneOffState, PlatformJobRun, Release
from paas.platform_jobs import PlatformJob
from tests.unit.internal_api import Api, api, deployed

MINUTE = 60.0
T0 = 1_800_000_000.0  # a whole minute (2027-01-15 08:00 UTC)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Api]:
    yield from api(tmp_path, internal.routes, jobs.routes)


def with_cron(platform: Api, *entries: dict[str, str], name: str = "shop",
              slot: int = 1) -> None:
    with platform.db() as db:
        app = deployed(db, name, slot, "web", web=1)
        row = db.get(Release, app.current_release_id)
        row.slug = {**row.slug, "app_json": {"cron": list(entries)}}
        cron.sync(db, app, row)
        for job in cron.jobs(db, app):
            job.created_at = T0 - 3600
        db.commit()


def oneoffs(platform: Api) -> list[OneOff]:
    with platform.db() as db:
        return list(db.scalars(select(OneOff).where(OneOff.type == "cron")
                               .order_by(OneOff.number)))


def exit_oneoff(platform: Api, number: int, code: int, at: float) -> None:
    with platform.db() as db:
        oneoff = db.scalar(select(OneOff).where(OneOff.type == "cron",
                                                OneOff.number == number))
        oneoff.state, oneoff.exit_code, oneoff.finished_at = OneOffState.EXITED, code, at
        db.commit()


def log(platform: Api) -> list[str]:
    return [line for app, line in platform.events.lines if app == "shop"]


def test_a_due_time_runs_once_whichever_clock_claims_it(platform: Api) -> None:
    with_cron(platform, {"command": "echo hi", "schedule": "* * * * *"})
    first, second = Clock(platform.ctx, []), Clock(platform.ctx, [])
    for moment in (T0 + 1, T0 + 2, T0 + 30):
        first.tick(moment)
        second.tick(moment)
    assert [(o.number, o.command, o.env) for o in oneoffs(platform)] == [
        (1, "echo hi", {"PAAS_CRON_JOB": cron.key_of_entry("* * * * *", "UTC", "echo hi")})]
    assert any("Starting cron.1 of v1 for job" in line and "due 2027-01-15 08:00:00 UTC"
               in line for line in log(platform))

    exit_oneoff(platform, 1, 0, T0 + 12.5)
    Clock(platform.ctx, []).tick(T0 + 31)  # a restarted clock: nothing runs twice
    assert len(oneoffs(platform)) == 1
    assert any("cron.1 of job" in line and "exited with status 0 after 11.5 s" in line
               for line in log(platform))

    first.tick(T0 + MINUTE + 1)
    second.tick(T0 + MINUTE + 1)
    assert [o.number for o in oneoffs(platform)] == [1, 2]


def test_the_same_due_time_cannot_be_claimed_twice(platform: Api) -> None:
    with_cron(platform, {"command": "echo hi", "schedule": "* * * * *"})
    with platform.db() as db:
        job = cron.every_job(db)[0]
        cron.claim(db, job, T0, T0, BufferedEvents())
        db.commit()
    with platform.db() as db, pytest.raises(IntegrityError):
        job = cron.every_job(db)[0]
        cron.claim(db, job, T0, T0 + 1, BufferedEvents())


def test_a_run_still_going_makes_the_next_due_time_skipped_once(platform: Api) -> None:
    with_cron(platform, {"command": "sleep 100", "schedule": "* * * * *"})
    clock = Clock(platform.ctx, [])
    clock.tick(T0 + 1)
    clock.tick(T0 + MINUTE + 1)
    clock.tick(T0 + MINUTE + 2)
    assert len(oneoffs(platform)) == 1
    skips = [line for line in log(platform) if line.startswith("Skipping job")]
    assert len(skips) == 1 and "cron.1 was still running" in skips[0]
    exit_oneoff(platform, 1, 3, T0 + 100)
    clock.tick(T0 + 2 * MINUTE + 1)
    assert [o.number for o in oneoffs(platform)] == [1, 2]
    listed = platform.http.get("/v1/apps/shop/cron", headers=platform.admin).json()
    assert listed[0]["last_run"]["dyno"] == "cron.2"
    with platform.db() as db:
        states = [(r.dyno, r.state, r.exit_code) for r in db.scalars(
            select(CronRun).order_by(CronRun.due_at))]
    assert states == [("cron.1", "finished", 3), ("", "skipped", None), ("cron.2", "running",
                                                                         None)]


def test_a_due_time_missed_while_no_clock_ran_still_runs_if_recent(platform: Api) -> None:
    with_cron(platform, {"command": "echo hi", "schedule": "0 * * * *"})
    Clock(platform.ctx, []).tick(T0 + 10 * MINUTE)  # 08:00 missed by 10 minutes: runs
    assert len(oneoffs(platform)) == 1
    with_cron(platform, {"command": "echo hi", "schedule": "0 * * * *"}, name="late", slot=2)
    Clock(platform.ctx, []).tick(T0 + 20 * MINUTE)  # missed by 20: waits for 09:00
    assert len(oneoffs(platform)) == 1


def test_cron_run_runs_a_job_now_once_at_a_time(platform: Api) -> None:
    with_cron(platform, {"command": "echo hi", "schedule": "@yearly"})
    listed = platform.http.get("/v1/apps/shop/cron", headers=platform.admin).json()
    assert [(j["schedule"], j["command"], j["last_run"]) for j in listed] == [
        ("@yearly", "echo hi", None)]
    key = listed[0]["id"]
    ran = platform.http.post(f"/v1/apps/shop/cron/{key}/runs", headers=platform.admin)
    assert ran.status_code == 201, ran.text
    assert ran.json()["dyno"] == "cron.1" and ran.json()["trigger"] == "manual"
    again = platform.http.post(f"/v1/apps/shop/cron/{key}/runs", headers=platform.admin)
    assert again.status_code == 409 and "running already (cron.1)" in again.json()["message"]
    missing = platform.http.post("/v1/apps/shop/cron/nope/runs", headers=platform.admin)
    assert missing.status_code == 404
    other = platform.http.get("/v1/apps/shop/cron", headers=platform.user)
    assert other.status_code == 404  # not ann's app


def test_a_deploy_keeps_unchanged_jobs_and_destroying_the_app_removes_them(
        platform: Api) -> None:
    with_cron(platform, {"command": "echo a", "schedule": "@daily"},
              {"command": "echo b", "schedule": "@hourly"})
    with platform.db() as db:
        app = apps.by_name(db, "shop")
        before = {j.key: j.id for j in cron.jobs(db, app)}
        release = db.get(Release, app.current_release_id)
        release.slug = {**release.slug, "app_json": {"cron": [
            {"command": "echo b", "schedule": "@hourly"},
            {"command": "echo c", "schedule": "@weekly"}]}}
        cron.sync(db, app, release)
        db.commit()
        after = {j.key: j.id for j in cron.jobs(db, app)}
        assert [j.command for j in cron.jobs(db, app)] == ["echo b", "echo c"]
        kept = set(before) & set(after)
        assert len(kept) == 1 and before[kept.pop()] in after.values()
        apps.destroy(db, app, "shop")
        db.commit()
        assert cron.every_job(db) == []


def test_platform_jobs_are_claimed_once_per_slot_across_clocks(platform: Api) -> None:
    ran: list[float] = []
    gate = threading.Event()

    def work(_ctx: object) -> str:
        ran.append(1)
        gate.wait(5)
        return "did it"

    job = PlatformJob(name="test-job", every_seconds=10, run=work, description="a test")
    first = Clock(platform.ctx, [job], runner="host-a:1")
    second = Clock(platform.ctx, [job], runner="host-b:2")
    first.tick(T0 + 1)
    second.tick(T0 + 2)  # the slot is claimed, and a run goes
    gate.set()
    first.wait_for_jobs(5)
    second.tick(T0 + 3)
    assert len(ran) == 1
    second.tick(T0 + 11)  # the next slot
    second.wait_for_jobs(5)
    assert len(ran) == 2
    with platform.db() as db:
        runs = [(r.state, r.summary, r.runner) for r in db.scalars(
            select(PlatformJobRun).order_by(PlatformJobRun.due_at))]
    assert runs == [("succeeded", "did it", "host-a:1"), ("succeeded", "did it", "host-b:2")]
    listed = platform.http.get("/v1/admin/jobs", headers=platform.admin)
    assert listed.status_code == 200
    assert platform.http.get("/v1/admin/jobs", headers=platform.user).status_code == 403


def test_a_platform_run_whose_clock_died_is_failed_and_the_job_goes_on(platform: Api) -> None:
    job = PlatformJob(name="test-job", every_seconds=10, run=lambda _ctx: "ok")
    with platform.db() as db:
        dead = job_runs.claim(db, job, T0, T0, "nowhere:1")
        dead.runner = f"{job_runs.this_runner().rpartition(':')[0]}:999999999"  # no such pid
        db.commit()
    clock = Clock(platform.ctx, [job])
    clock.tick(T0 + 11)
    clock.wait_for_jobs(5)
    with platform.db() as db:
        runs = [(r.state, r.summary) for r in db.scalars(
            select(PlatformJobRun).order_by(PlatformJobRun.due_at))]
    assert runs[0][0] == JobRunState.FAILED and "stopped during the run" in runs[0][1]
    assert runs[1] == (JobRunState.SUCCEEDED, "ok")


def test_a_requested_platform_run_starts_at_the_next_tick(platform: Api) -> None:
    calls: list[int] = []
    job = PlatformJob(name="test-job", every_seconds=3600, run=lambda _ctx: str(calls.append(1)))
    clock = Clock(platform.ctx, [job])
    clock.tick(T0 + 1)
    clock.wait_for_jobs(5)
    with platform.db() as db:
        job_runs.request(db, job, T0 + 5)
        db.commit()
    clock.tick(T0 + 6)
    clock.wait_for_jobs(5)
    assert len(calls) == 2
