"""The web dashboard in a real browser (Debian's Chromium driven by Playwright) against the
whole platform: sign in, create, push (real git over HTTP) and watch the build live, scale,
config, rollback, live logs, maintenance, destroy; every page checked by axe-core and at
375 px wide, and saved as a screenshot under tests/e2e/screenshots/ (git-ignored)."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.gate import BuildGate
from tests.platform import ROOT, Platform, app_repo

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
AXE = ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "tests" / "e2e" / "screenshots"
WAIT_MS = 90_000
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Playwright gives each launch a fresh, temporary profile (its --user-data-dir).
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(browser: Browser) -> Page:
    # bypass_csp only so that the test can inject axe-core; the pages' own CSP stays strict.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    return page


def make_user(platform: Platform, email: str) -> str:
    with platform.api() as api:
        response = api.post("/v1/users", json={"email": email, "password": PASSWORD})
        assert response.status_code == 201, response.text
        login = api.post("/v1/login", json={"email": email, "password": PASSWORD})
        return login.json()["token"]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def sign_in(page: Page, platform: Platform, email: str) -> None:
    page.goto(f"{platform.api_url}/dashboard/")
    expect(page.get_by_role("heading", name="Sign in to paas")).to_be_visible()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Apps", exact=True)).to_be_visible()
    expect(page.locator(".who")).to_have_text(email)


def check_page(page: Page, name: str) -> None:
    """No serious axe-core violations, no horizontal scrolling at 375 px, and screenshots."""
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ['violations']});
        return result.violations.filter(v => ['serious', 'critical'].includes(v.impact))
            .map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '));
    }""")
    assert violations == [], f"{name}: {violations}"
    page.set_viewport_size({"width": 375, "height": 800})
    width = page.evaluate("document.documentElement.scrollWidth")
    page.screenshot(path=str(SHOTS / f"{name}-375.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    assert width <= 375, f"{name} scrolls sideways at 375 px: {width} px wide"


def flash(page: Page) -> str:
    return page.locator(".flash").first.inner_text()


def tab(page: Page, label: str) -> None:
    page.get_by_role("navigation", name=page.locator("h1").inner_text()).get_by_role(
        "link", name=label, exact=True).click()


def test_a_developer_runs_an_app_from_the_browser(platform: Platform, browser: Browser,
                                                  tmp_path: Path) -> None:
    email, app = f"{unique('ada')}@example.com", unique("web")
    token = make_user(platform, email)
    page = new_page(browser)
    sign_in(page, platform, email)
    check_page(page, "apps-empty")

    # create an app; a domain error (a taken name) shows as a message, not a trace
    page.get_by_label("New app name").fill(app)
    page.get_by_role("button", name="Create app").click()
    expect(page.locator("h1")).to_have_text(app)
    assert f"Created {app}" in flash(page)
    expect(page.locator("#app-state")).to_have_text("no dynos")
    page.goto(f"{platform.api_url}/dashboard/")
    page.get_by_label("New app name").fill(app)
    page.get_by_role("button", name="Create app").click()
    assert f"app {app} already exists" in flash(page)

    # the gate holds the build until the test opens it (see tests/apps/slow-build)
    gate = BuildGate(platform.home)
    page.goto(f"{platform.api_url}/dashboard/apps/{app}/config")
    page.get_by_label("Name", exact=True).fill("PAAS_TEST_GATE_PORT")
    page.get_by_label("Value", exact=True).fill(str(gate.port))
    page.get_by_role("button", name="Add", exact=True).click()
    assert "has no release yet" in flash(page)

    repo = app_repo(tmp_path, "slow-build")
    with gate, subprocess.Popen(
            ["git", "push", platform.remote_url(app, token), "main"], cwd=repo,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    ) as pushing:
        tab(page, "Builds")
        build_link = page.locator("table.list tbody a").first
        expect(build_link).to_be_visible()  # the list refreshes itself until the build shows
        build_link.click()
        log = page.locator("#build-log")
        expect(log).to_contain_text("Waiting for the test")
        expect(page.locator("#build-status")).to_have_text("building")
        assert log.get_attribute("data-stream")  # the lines came over SSE, not in the page
        check_page(page, "build-running")
        page.evaluate("window.sameDocument = true")
        gate.open()
        page.wait_for_function("""() => window.sameDocument === true &&
            document.getElementById('build-log').textContent.includes('the gate on port')""",
                               timeout=WAIT_MS)
        assert pushing.wait(180) == 0, pushing.stderr.read() if pushing.stderr else ""
    # when the deploy ends the page reloads with the result and the slug's layers
    expect(page.locator("#build-status")).to_have_text("succeeded")
    with platform.api() as api:
        layers = api.get(f"/v1/apps/{app}/builds/latest").json()["layers"]
    assert {layer["name"] for layer in layers} >= {"app", "test_slow/marker"}
    for layer in layers:  # each layer, and whether this build reused it, as builds:info says
        row = page.locator("table.layers tr", has_text=layer["name"])
        expect(row).to_contain_text("reused" if layer["reused"] else "new")
    check_page(page, "build-done")

    tab(page, "Overview")
    expect(page.locator("#app-state")).to_have_text("running")
    expect(page.locator("tr.dyno[data-dyno='web.1'][data-state='up']")).to_be_visible()
    expect(page.get_by_label("HTTP remote", exact=True)).to_have_value(
        f"{platform.api_url}/git/{app}.git")
    assert "slow-build is up" in platform.wait_for(app, "slow-build is up").text

    # scale to 2
    page.get_by_label("Number of web dynos").fill("2")
    page.get_by_role("button", name="Save web formation").click()
    assert "Scaled web to 2" in flash(page)
    expect(page.locator("tr.dyno[data-state='up']")).to_have_count(2)
    # each dyno's CPU, from its cgroup (the section refreshes itself)
    expect(page.locator("tr.dyno[data-dyno='web.1'] td[data-label='CPU']")).to_have_text(
        re.compile(r"^\d+\.\d%$"))
    check_page(page, "overview")

    # the apps list: state, current release, URL, last deploy
    page.get_by_role("link", name="Apps", exact=True).first.click()
    row = page.locator("tr", has=page.get_by_role("link", name=app, exact=True))
    expect(row).to_contain_text("running")
    expect(row).to_contain_text("v1")
    expect(row).to_contain_text(f"http://{app}.localhost:{platform.router_port}/")
    expect(row.locator("td[data-label='Last deploy']")).not_to_have_text("never")
    check_page(page, "apps")
    row.get_by_role("link", name=app, exact=True).click()

    # a config var makes a new release; values stay hidden until revealed
    tab(page, "Config vars")
    page.get_by_label("Name", exact=True).fill("GREETING")
    page.get_by_label("Value", exact=True).fill("hello-from-the-dashboard")
    page.get_by_role("button", name="Add", exact=True).click()
    assert "Set GREETING: made release v2" in flash(page)
    expect(page.locator("li.config-var[data-key='GREETING']")).to_be_visible()
    assert "hello-from-the-dashboard" not in page.content()
    page.get_by_role("link", name="Reveal config vars").click()
    expect(page.get_by_label("GREETING", exact=True)).to_have_value("hello-from-the-dashboard")
    check_page(page, "config")
    tab(page, "Releases")
    v2 = page.locator("tr.release[data-version='2']")
    expect(v2).to_contain_text("Set GREETING config vars")
    expect(v2.locator(".pill.current")).to_be_visible()

    # roll back, with a confirmation
    page.get_by_role("link", name="Roll back to v1").click()
    expect(page.get_by_role("heading", name=f"Roll back {app} to v1?")).to_be_visible()
    check_page(page, "rollback")
    page.get_by_role("button", name="Roll back to v1").click()
    assert "Rollback to v1: made release v3" in flash(page)
    expect(page.locator("tr.release[data-version='3']")).to_contain_text("Rollback to v1")
    expect(page.locator("tr.release[data-version='3'] .pill.current")).to_be_visible()
    check_page(page, "releases")
    tab(page, "Config vars")
    expect(page.locator("li.config-var[data-key='PAAS_TEST_GATE_PORT']")).to_be_visible()
    expect(page.locator("li.config-var[data-key='GREETING']")).to_have_count(0)

    # live logs: a request made after the page loaded shows up in it
    tab(page, "Logs")
    page.evaluate("window.sameDocument = true")
    probe = f"/probe-{uuid.uuid4().hex[:8]}"
    platform.get(app, probe)
    expect(page.locator("#app-log")).to_contain_text(probe)
    assert page.evaluate("window.sameDocument") is True
    check_page(page, "logs")
    page.get_by_label("Source").select_option("router")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#app-log")).to_contain_text(probe)
    assert page.locator("#app-log .src:not(.src-router)").count() == 0

    # metrics: CPU and memory from the dynos' cgroups, p50/p95 from the router, per minute
    for _ in range(5):
        platform.get(app, "/")
    tab(page, "Metrics")
    expect(page.locator("svg.chart").first).to_be_visible()
    for chart, series in (("Memory per process type", "web"), ("CPU per process type", "web"),
                          ("Response time per minute", "p50"),
                          ("Response time per minute", "p95")):
        _reload_until(page, f"svg[aria-label^='{chart}'] circle[data-series='{series}']")
    expect(page.locator("#cpu-now")).to_have_text(re.compile(r"Now: web \d+\.\d%"))
    expect(page.locator("#mem-now")).to_have_text(re.compile(r"Now: web \d+(\.\d)? MB"))
    memory = page.get_by_role("img", name=re.compile(r"^Memory per process type.*web [\d.]+ MB"))
    expect(memory).to_be_visible()
    check_page(page, "metrics")

    # maintenance on: the router answers 503; off again: the app serves
    tab(page, "Overview")
    page.get_by_role("button", name="Turn maintenance on").click()
    expect(page.locator("#app-state")).to_have_text("maintenance")
    assert "Maintenance mode is on" in flash(page)
    assert _eventually_status(platform, app, 503)
    page.get_by_role("button", name="Turn maintenance off").click()
    expect(page.locator("#app-state")).to_have_text("running")
    assert _eventually_status(platform, app, 200)

    # destroy asks for the name
    page.get_by_label("Type").fill("not-the-name")
    page.get_by_role("button", name="Destroy app").click()
    assert f"confirm with --confirm {app}" in flash(page)
    page.get_by_label("Type").fill(app)
    page.get_by_role("button", name="Destroy app").click()
    assert f"Destroyed {app}" in flash(page)
    expect(page.get_by_role("link", name=app, exact=True)).to_have_count(0)

    page.get_by_role("button", name="Sign out").click()
    assert "You have signed out" in flash(page)
    page.goto(f"{platform.api_url}/dashboard/")
    expect(page.get_by_role("heading", name="Sign in to paas")).to_be_visible()
    check_page(page, "sign-in")
    page.context.close()


def _reload_until(page: Page, selector: str, tries: int = 30) -> None:
    """The figures arrive with the agent's reports and the router's flushes: reload a while."""
    for _ in range(tries):
        if page.locator(selector).count():
            return
        time.sleep(1)
        page.reload()
    raise AssertionError(f"the metrics page shows no data point {selector}")


def _eventually_status(platform: Platform, app: str, status: int, tries: int = 100) -> bool:
    for _ in range(tries):
        try:
            if platform.get(app).status_code == status:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def test_users_see_only_their_apps_and_forms_need_their_csrf_token(
        platform: Platform, browser: Browser) -> None:
    first, second = f"{unique('cy')}@example.com", f"{unique('dan')}@example.com"
    make_user(platform, first)
    make_user(platform, second)
    app = unique("mine")
    page = new_page(browser)
    sign_in(page, platform, first)
    page.get_by_label("New app name").fill(app)
    page.get_by_role("button", name="Create app").click()
    expect(page.locator("h1")).to_have_text(app)

    other = new_page(browser)
    sign_in(other, platform, second)
    expect(other.get_by_text("No apps yet")).to_be_visible()
    response = other.goto(f"{platform.api_url}/dashboard/apps/{app}")
    assert response is not None and response.status == 404
    expect(other.locator(".error-text")).to_contain_text(f"no app named '{app}'")

    # a form posted without the page's CSRF token changes nothing
    forged = unique("forged")
    answer = other.evaluate("""async name => (await fetch('/dashboard/apps', {method: 'POST',
        headers: {'Content-Type': 'application/x-www-form-urlencoded'},
        body: 'name=' + name})).text()""", forged)
    assert "this form has expired" in answer
    with platform.api() as api:
        names = {a["name"] for a in api.get("/v1/apps").json()}
        assert forged not in names and app in names
        assert api.delete(f"/v1/apps/{app}", params={"confirm": app}).status_code == 200

    # a wrong password says so on the sign-in page
    other.get_by_role("button", name="Sign out").click()
    other.get_by_label("Email").fill(second)
    other.get_by_label("Password", exact=True).fill("not the password")
    other.get_by_role("button", name="Sign in", exact=True).click()
    expect(other.locator(".flash-error")).to_have_text("wrong email or password")
    page.context.close()
    other.context.close()


def test_a_domain_under_another_apps_wildcard_is_refused_with_a_message(
        platform: Platform, browser: Browser) -> None:
    email, app, theirs = f"{unique('eve')}@example.com", unique("dom"), unique("wild")
    zone = f"{unique('zone')}.test"
    make_user(platform, email)
    platform.paas("apps:create", theirs)
    platform.paas("domains:add", f"*.{zone}", "-a", theirs)
    page = new_page(browser)
    try:
        sign_in(page, platform, email)
        page.get_by_label("New app name").fill(app)
        page.get_by_role("button", name="Create app").click()
        expect(page.locator("h1")).to_have_text(app)
        page.get_by_label("Add a domain").fill(f"shop.{zone}")
        page.get_by_role("button", name="Add domain").click()
        refused = flash(page)
        assert f"shop.{zone} is covered by *.{zone}, a domain of another app" in refused
        assert theirs not in refused
        page.get_by_label("Add a domain").fill(f"shop.{unique('own')}.test")
        page.get_by_role("button", name="Add domain").click()
        assert "Added shop." in flash(page)
    finally:
        page.context.close()
        with platform.api() as api:
            for name in (app, theirs):
                api.delete(f"/v1/apps/{name}", params={"confirm": name})


def test_signing_in_with_an_api_token(platform: Platform, browser: Browser) -> None:
    email = f"{unique('eve')}@example.com"
    token = make_user(platform, email)
    page = new_page(browser)
    page.goto(f"{platform.api_url}/dashboard/login")
    page.get_by_text("Sign in with an API token").click()
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in with token").click()
    expect(page.locator(".who")).to_have_text(email)
    page.get_by_role("button", name="Sign out").click()
    # signing out of a session made from a CLI token leaves that token working
    with httpx.Client(base_url=platform.api_url, timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as api:
        assert api.get("/v1/account").json()["email"] == email
    page.context.close()


def test_the_admin_sees_the_nodes_and_the_doctor_and_no_one_else_does(
        platform: Platform, browser: Browser) -> None:
    page = new_page(browser)
    page.goto(f"{platform.api_url}/dashboard/login")
    page.get_by_text("Sign in with an API token").click()
    page.get_by_label("API token").fill(platform.token)
    page.get_by_role("button", name="Sign in with token").click()
    page.get_by_role("navigation", name="Account").get_by_role("link", name="Nodes").click()
    expect(page.locator("h1")).to_have_text("Nodes")
    expect(page.locator("tr.node[data-state=ready]")).to_have_count(1)
    check_page(page, "nodes")
    page.get_by_role("navigation", name="Account").get_by_role("link", name="Doctor").click()
    expect(page.locator("h1")).to_have_text("Doctor")
    expect(page.locator(".doctor-summary")).to_contain_text("The platform can run here")
    expect(page.locator("tr.finding[data-check=cgroups][data-result=ok]")).to_have_count(1)
    expect(page.locator("tr.finding[data-check=PAAS_API_PORT]")).to_contain_text(
        "is this platform's")
    check_page(page, "doctor")
    page.context.close()

    email = f"{unique('fay')}@example.com"
    make_user(platform, email)
    other = new_page(browser)
    sign_in(other, platform, email)
    expect(other.get_by_role("link", name="Nodes")).to_have_count(0)
    response = other.goto(f"{platform.api_url}/dashboard/nodes")
    assert response is not None and response.status == 403
    expect(other.get_by_role("link", name="Doctor")).to_have_count(0)
    response = other.goto(f"{platform.api_url}/dashboard/doctor")
    assert response is not None and response.status == 403
    other.context.close()
