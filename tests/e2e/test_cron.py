"""app.json cron end to end, on a platform of its own (its API is killed mid-run): a
`* * * * *` job's line and exit status reach `paas logs` within ~70 s; a job that sleeps past
its next due time makes that one skipped, with a log line; the API (where the scheduler runs)
SIGKILLed during a run and started again by `paas up` neither loses that run's end nor runs a
due time twice; `paas cron` lists the jobs; `paas cron:run` runs one now; a bad schedule
rejects the push with the job, the expression and why. These wait on real minutes."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.test_dashboard import browser, check_page, new_page  # noqa: F401 (a fixture)
from tests.platform import Platform, app_repo, commit_all, git

pytestmark = pytest.mark.e2e

PROCFILE = "web: exec /usr/bin/python3 server.py\n"
QUICK = 'echo "tick from $DYNO"'
SLOW = 'echo "slow start $DYNO"; sleep 75; echo "slow done $DYNO"'


@pytest.fixture(scope="module")
def clocked() -> Iterator[Platform]:
    platform = Platform.create()
    try:
        platform.up()
        yield platform
    finally:
        platform.down()


def push(platform: Platform, repo: Path, app: str) -> tuple[int, str]:
    result = git(repo, "push", platform.remote_url(app), "main", check=False)
    return result.returncode, result.stderr


def lines(platform: Platform, app: str) -> list[str]:
    with platform.api() as api:
        return [f"{row['source']}: {row['line']}" for row in
                api.get(f"/v1/apps/{app}/logs", params={"num": 1500}).json()]


def eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except Exception:  # the API restarting
            found = None
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"never saw {what}")


def api_pid(platform: Platform) -> int:
    home = f"PAAS_HOME={platform.home}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"paas.api" in argv and home in environ:
            return int(entry.name)
    raise AssertionError("no API process of this platform")


def test_a_bad_schedule_rejects_the_push_with_the_job_the_expression_and_why(
        clocked: Platform, tmp_path: Path) -> None:
    clocked.paas("apps:create", "badcron")
    repo = app_repo(tmp_path, "dynos")
    (repo / "Procfile").write_text(PROCFILE)
    (repo / "app.json").write_text(json.dumps(
        {"cron": [{"command": "python3 report.py", "schedule": "0 25 * * *"}]}))
    commit_all(repo, "a bad schedule")
    code, output = push(clocked, repo, "badcron")
    assert code != 0
    assert ("app.json cron[0] ('python3 report.py'): schedule '0 25 * * *' (TZ UTC) cannot "
            "run: its hour field '25' is out of range") in output
    assert clocked.paas("releases", "-a", "badcron", "--json").stdout.strip() == "[]"

    (repo / "app.json").write_text(json.dumps(  # the positive control: a good one deploys
        {"cron": [{"command": "python3 report.py", "schedule": "0 23 * * *"}]}))
    commit_all(repo, "a good schedule")
    code, output = push(clocked, repo, "badcron")
    assert code == 0, output
    listed = json.loads(clocked.paas("cron", "-a", "badcron", "--json").stdout)
    assert [(j["schedule"], j["command"]) for j in listed] == [("0 23 * * *",
                                                                "python3 report.py")]


def test_cron_jobs_run_skip_survive_a_killed_scheduler_and_run_on_demand(
        clocked: Platform, tmp_path: Path) -> None:
    clocked.paas("apps:create", "clocked")
    clocked.paas("config:set", "GREETING=from config", "-a", "clocked")
    repo = app_repo(tmp_path, "dynos")
    (repo / "Procfile").write_text(PROCFILE)
    (repo / "app.json").write_text(json.dumps({"cron": [
        {"command": QUICK + '; echo "greeting $GREETING"', "schedule": "* * * * *"},
        {"command": SLOW, "schedule": "* * * * *"}]}))
    commit_all(repo, "cron jobs")
    code, output = push(clocked, repo, "clocked")
    assert code == 0, output
    deployed = time.monotonic()
    jobs = json.loads(clocked.paas("cron", "-a", "clocked", "--json").stdout)
    quick, slow = (j["id"] for j in jobs)
    clocked.paas("ps:scale", "web=0", "-a", "clocked")  # jobs run without a formation
    clocked.paas("maintenance:on", "-a", "clocked")

    # The quick job's first run: its output, and its exit status from the scheduler.
    eventually(lambda: any(re.search(r"app\[cron\.\d+\]: greeting from config", line)
                           for line in lines(clocked, "clocked")), 75, "the quick job's line")
    assert time.monotonic() - deployed < 75
    eventually(lambda: any(f"of job {quick} exited with status 0 after" in line
                           for line in lines(clocked, "clocked")), 15, "the quick job's end")
    slow_start = eventually(lambda: next((line for line in lines(clocked, "clocked")
                                          if "slow start cron." in line), None), 15,
                            "the slow job's start")
    slow_dyno = re.search(r"slow start (cron\.\d+)", slow_start)[1]  # type: ignore[index]

    # The scheduler's process (the API) killed while the slow run goes; `paas up` restarts it.
    os.kill(api_pid(clocked), signal.SIGKILL)
    eventually(lambda: clocked.paas("apps", check=False).returncode == 0, 60, "the API back")

    eventually(lambda: any(f"Skipping job {slow}" in line and f"{slow_dyno} was still running"
                           in line for line in lines(clocked, "clocked")), 150,
               "the slow job's next due time skipped")
    eventually(lambda: any(f"{slow_dyno} of job {slow} exited with status 0 after" in line
                           for line in lines(clocked, "clocked")), 90, "the slow run's end")
    log = lines(clocked, "clocked")
    assert sum(f"slow done {slow_dyno}" in line for line in log) == 1
    assert sum(f"{slow_dyno} of job {slow} exited" in line for line in log) == 1
    assert sum(f"Skipping job {slow}" in line for line in log) >= 1
    started = Counter(re.sub(r"Starting cron\.\d+ ", "", line) for line in log
                      if "paas[cron]: Starting cron." in line)
    assert started and max(started.values()) == 1, started  # no due time ran twice

    listed = clocked.paas("cron", "-a", "clocked").stdout
    assert quick in listed and slow in listed and "exit 0" in listed

    ran = clocked.paas("cron:run", quick, "-a", "clocked").stdout
    dyno = re.search(r"(cron\.\d+)", ran)[1]  # type: ignore[index]
    eventually(lambda: any(f"app[{dyno}]: tick from {dyno}" in line
                           for line in lines(clocked, "clocked")), 60, "the run-now output")
    refused = clocked.paas("cron:run", "nosuchjob", "-a", "clocked", check=False)
    assert refused.returncode != 0 and "has no cron job nosuchjob" in refused.stderr

    jobs_listed = json.loads(clocked.paas("admin:jobs", "--json").stdout)
    by_name = {j["name"]: j for j in jobs_listed}
    assert by_name["reaper"]["last_run"]["state"] in ("succeeded", "running")
    assert by_name["layer-gc"]["last_run"]["trigger"] in ("build", "schedule")

    clocked.paas("apps:destroy", "clocked", "--confirm", "clocked")
    with clocked.api() as api:
        assert api.get("/v1/apps/clocked/cron").status_code == 404


def test_the_dashboard_lists_cron_jobs_runs_one_and_shows_the_platform_jobs(
        clocked: Platform, browser: Browser, tmp_path: Path) -> None:  # noqa: F811
    clocked.paas("apps:create", "cronui")
    repo = app_repo(tmp_path, "dynos")
    (repo / "Procfile").write_text(PROCFILE)
    (repo / "app.json").write_text(json.dumps(
        {"cron": [{"command": "echo from-the-dashboard", "schedule": "@yearly"}]}))
    commit_all(repo, "a yearly job")
    code, output = push(clocked, repo, "cronui")
    assert code == 0, output

    page = new_page(browser)
    page.goto(f"{clocked.api_url}/dashboard/login")
    page.get_by_text("Sign in with an API token").click()
    page.get_by_label("API token").fill(clocked.token)
    page.get_by_role("button", name="Sign in with token").click()
    page.goto(f"{clocked.api_url}/dashboard/apps/cronui/cron")
    row = page.locator("tr.cron-job")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("@yearly")
    expect(row.locator(".last-run")).to_have_text("never")
    check_page(page, "cron")
    row.get_by_role("button", name="Run now").click()
    expect(page.locator(".flash").first).to_contain_text("Started cron.")
    eventually(lambda: (page.reload(), "exit 0" in row.locator(".last-run").inner_text())[1],
               60, "the run's exit status on the Cron tab")
    assert any("from-the-dashboard" in line for line in lines(clocked, "cronui"))

    page.get_by_role("navigation", name="Account").get_by_role("link", name="Jobs").click()
    expect(page.locator("h1")).to_have_text("Platform jobs")
    expect(page.locator("tr.platform-job[data-job=reaper]")).to_have_count(1)
    gc = page.locator("tr.platform-job[data-job=layer-gc]")
    gc.get_by_role("button", name="Run now").click()
    expect(page.locator(".flash").first).to_contain_text("Asked for a run of layer-gc")
    check_page(page, "jobs")
    page.context.close()
