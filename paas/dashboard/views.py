"""The dashboard's pages. Every read and every change goes through the API's handlers
(`paas/api/*.py`) for the signed-in user, so the browser and the CLI behave the same."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from paas import apps, auth, builds, clock, dynos, oneoffs, streams
from paas.api import apps as apps_api
from paas.api import autocerts as autocerts_api
from paas.api import config as config_api
from paas.api import doctor as doctor_api
from paas.api import domains as domains_api
from paas.api import dynos as dynos_api
from paas.api import jobs as jobs_api
from paas.api import nodes as nodes_api
from paas.api import slugs as slugs_api
from paas.api import users as users_api
from paas.api.handlers import Call
from paas.dashboard import charts, present
from paas.dashboard.calls import call
from paas.dashboard.sessions import SIGN_IN_DESCRIPTION, sign_in
from paas.dashboard.web import PREFIX, Page, safe_next
from paas.errors import Forbidden, Invalid, NotFound, PaasError
from paas.events import Events
from paas.logs import BufferedEvents
from paas.models import Build, Dyno, Release, Token
from paas.sizes import SIZES

TABS = (("", "Overview"), ("/builds", "Builds"), ("/releases", "Releases"),
        ("/config", "Config vars"), ("/cron", "Cron"), ("/logs", "Logs"),
        ("/metrics", "Metrics"))
LOG_SOURCES = (("", "all sources"), ("app", "app"), ("router", "router"),
               ("paas", "platform (paas)"))


def app_url(app: str, tail: str = "") -> str:
    return f"{PREFIX}/apps/{app}{tail}"


# --- sign in / out -----------------------------------------------------------------------

async def login_page(page: Page) -> Response:
    if page.session.signed_in:
        return page.redirect(safe_next(page.request.query_params.get("next")))
    return page.render("login.html", next=safe_next(page.request.query_params.get("next")))


async def login(page: Page) -> Response:
    form, ctx = page.form, page.ctx
    max_age = page.site.codec.max_age

    def work(db: Session, events: Events) -> Any:
        if form.get("token", "").strip():
            row = auth.token_row(db, form["token"].strip())
            if row.user.is_service:
                raise Forbidden("the service token is for the platform's own services: "
                                "sign in as a user")
            return sign_in(db, page.session, row, owns_token=False, max_age=max_age)
        body = {"email": form.get("email", ""), "password": form.get("password", ""),
                "description": SIGN_IN_DESCRIPTION}
        made = users_api.login(Call(ctx, db, events, None, {}, {}, body))  # type: ignore[arg-type]
        made_row = db.get(Token, made["id"])
        assert made_row is not None  # made in this transaction
        return sign_in(db, page.session, made_row, owns_token=True, max_age=max_age)

    try:
        fresh = await run_in_threadpool(ctx.write, work)
    except PaasError as error:
        page.session.say("error", error.message)
        return page.render("login.html", status=error.status,
                           next=safe_next(form.get("next")), email=form.get("email", ""))
    page.session = fresh
    return page.redirect(safe_next(form.get("next")))


async def logout(page: Page) -> Response:
    session = page.session
    if session.owns_token and session.token_id is not None:
        def work(db: Session, _events: BufferedEvents) -> None:
            row = db.get(Token, session.token_id)
            if row is not None and row.user_id == session.user_id:
                db.delete(row)

        await run_in_threadpool(page.ctx.write, work)
    page.session = type(session)()
    return page.redirect(f"{PREFIX}/login", "ok", "You have signed out.")


# --- apps --------------------------------------------------------------------------------

def _summaries(c: Call) -> list[dict[str, Any]]:
    """The apps list: the API's list plus each app's dynos and latest build, read in a few
    queries for all apps (not a few per app)."""
    listed = apps_api.list_apps(c)
    by_name = {app.name: app for app in apps.visible(c.db, c.user)}
    ids = [app.id for app in by_name.values()]
    found: dict[int, list[dict[str, Any]]] = {}
    for d in c.db.scalars(select(Dyno).where(Dyno.app_id.in_(ids))
                          .order_by(Dyno.type, Dyno.index)):
        found.setdefault(d.app_id, []).append(dynos.to_dict(d))
    latest: dict[int, Build] = {}
    for b in c.db.scalars(select(Build).where(Build.app_id.in_(ids))
                          .order_by(Build.created_at)):
        latest[b.app_id] = b
    deployed = {r.app_id: r.created_at for r in c.db.scalars(
        select(Release).where(Release.id.in_([a.current_release_id for a in by_name.values()
                                              if a.current_release_id])))}
    for info in listed:
        app = by_name[info["name"]]
        build = latest.get(app.id)
        info["dynos"] = found.get(app.id, [])
        info["maintenance"] = app.maintenance
        info["latest_build"] = builds.to_dict(build) if build else None
        info["last_deploy"] = deployed.get(app.id)
        info["state"] = present.app_state(app.maintenance, info["current_release"],
                                          info["dynos"], build.status if build else None)
    return listed


async def apps_page(page: Page) -> Response:
    rows = await call(page.ctx, page.session, _summaries)
    return page.render("apps.html", apps=rows)


async def nodes_page(page: Page) -> Response:
    """The nodes that run dynos (admin: the API handler refuses anyone else)."""
    rows = await call(page.ctx, page.session, nodes_api.list_nodes)
    return page.render("nodes.html", nodes=rows)


async def jobs_page(page: Page) -> Response:
    """The platform's own jobs, their last and next run (admin: the API handler refuses
    anyone else)."""
    rows = await call(page.ctx, page.session, jobs_api.list_platform_jobs)
    return page.render("jobs.html", jobs=rows)


async def run_platform_job(page: Page) -> Response:
    name = page.param("name")
    await call(page.ctx, page.session, jobs_api.run_platform_job, params={"name": name},
               write=True)
    clock.wake()
    return page.redirect(f"{PREFIX}/jobs", "ok", f"Asked for a run of {name}.")


async def doctor_page(page: Page) -> Response:
    """`paas doctor` on the API's host (admin: the API handler refuses anyone else)."""
    findings = await call(page.ctx, page.session, doctor_api.run_checks)
    return page.render("doctor.html", findings=findings,
                       fatal=sum(1 for f in findings if f["fatal"]),
                       warnings=sum(1 for f in findings if not f["ok"] and not f["fatal"]))


async def new_app(page: Page) -> Response:
    name = page.form.get("name", "").strip()
    made = await call(page.ctx, page.session, apps_api.create, body={"name": name},
                      write=True)
    return page.redirect(app_url(made["name"]), "ok",
                         f"Created {made['name']}. Push code to it to deploy.")


async def destroy_app(page: Page) -> Response:
    app = page.param("app")
    await call(page.ctx, page.session, apps_api.destroy_app, params={"app": app},
               query={"confirm": page.form.get("confirm", "")}, write=True)
    return page.redirect(f"{PREFIX}/", "ok",
                         f"Destroyed {app}: its code, releases and dynos are gone.")


# --- overview ----------------------------------------------------------------------------

def _overview(c: Call) -> dict[str, Any]:
    info = apps_api.show_app(c)
    info["formation_rows"] = dynos_api.show_formation(c)
    info["domain_rows"] = domains_api.list_domains(c)
    info["certificates"] = {e["hostname"]: e for e in autocerts_api.show(c)["domains"]}
    found = apps_api.list_builds(c)
    info["latest_build"] = found[0] if found else None
    info["state"] = present.app_state(info.get("maintenance", False), info["current_release"],
                                      info["dynos"],
                                      found[0]["status"] if found else None)
    info["may_manage"] = auth.may_manage(c.user, apps_api.app_of(c))
    return info


async def overview(page: Page) -> Response:
    app = page.param("app")
    info = await call(page.ctx, page.session, _overview, params={"app": app})
    s = page.ctx.settings
    ssh_host = s.ssh_host or page.request.url.hostname or s.api_host
    return page.render("overview.html", app=info, tab="", tabs=TABS, sizes=list(SIZES.values()),
                       oneoff_types=oneoffs.TYPES,
                       ssh_url=present.ssh_remote(ssh_host, s.ssh_port, app),
                       git_url=_git_url(page, app))


def _git_url(page: Page, app: str) -> str:
    """The HTTP remote as this browser reaches the API (the CLI's API URL otherwise)."""
    if page.ctx.settings.api_url_override:
        return f"{page.ctx.settings.api_url_override}/git/{app}.git"
    return f"{page.request.url.scheme}://{page.request.url.netloc}/git/{app}.git"


def _int(raw: str, what: str) -> int:
    if not raw.strip().isdigit():
        raise Invalid(f"{what} must be a whole number, e.g. 2")
    return int(raw)


async def update_formation(page: Page) -> Response:
    app, process_type = page.param("app"), page.form.get("type", "")
    change: dict[str, Any] = {"quantity": _int(page.form.get("quantity", ""),
                                               f"the number of {process_type} dynos")}
    if page.form.get("size"):
        change["size"] = page.form["size"]
    rows = await call(page.ctx, page.session, dynos_api.update_formation, params={"app": app},
                      body={process_type: change}, write=True)
    row = next((r for r in rows if r["type"] == process_type), change)
    return page.redirect(app_url(app), "ok", f"Scaled {process_type} to {row['quantity']} "
                         f"dynos of size {row.get('size', '')}.")


async def restart(page: Page) -> Response:
    app, target = page.param("app"), page.form.get("target") or None
    await call(page.ctx, page.session, dynos_api.restart, params={"app": app},
               body={"target": target}, write=True)
    return page.redirect(app_url(app), "ok", f"Restarting {target or 'all dynos'}: each is "
                         "replaced once its successor is up.")


async def maintenance(page: Page) -> Response:
    app, on = page.param("app"), page.form.get("maintenance") == "on"
    await call(page.ctx, page.session, domains_api.set_maintenance, params={"app": app},
               body={"maintenance": on}, write=True)
    text = ("Maintenance mode is on: visitors get a 503 maintenance page." if on
            else "Maintenance mode is off: the app serves again.")
    return page.redirect(app_url(app), "ok", text)


async def add_domain(page: Page) -> Response:
    app = page.param("app")
    made = await call(page.ctx, page.session, domains_api.add_domain, params={"app": app},
                      body={"hostname": page.form.get("hostname", "")}, write=True)
    return page.redirect(app_url(app), "ok", f"Added {made['hostname']}: point its DNS at "
                         "this host.")


async def remove_domain(page: Page) -> Response:
    app, hostname = page.param("app"), page.form.get("hostname", "")
    await call(page.ctx, page.session, domains_api.remove_domain,
               params={"app": app, "hostname": hostname}, write=True)
    return page.redirect(app_url(app), "ok", f"Removed {hostname}.")


# --- builds and releases -----------------------------------------------------------------

def _with_app(handler: Any) -> Any:
    def work(c: Call) -> dict[str, Any]:
        return {"app": apps_api.show_app(c), "rows": handler(c)}
    return work


async def builds_page(page: Page) -> Response:
    app = page.param("app")
    data = await call(page.ctx, page.session, _with_app(apps_api.list_builds),
                      params={"app": app})
    return page.render("builds.html", app=data["app"], builds=data["rows"], tab="/builds",
                       tabs=TABS)


async def build_page(page: Page) -> Response:
    app = page.param("app")
    data = await call(page.ctx, page.session, _with_app(slugs_api.show_build),
                      params={"app": app, "build": page.param("build")})
    build = data["rows"]
    lines, ended = _stored_log(page, build["id"])
    live = build["status"] in present.LIVE_BUILDS or (
        build["status"] == "succeeded" and not ended and lines is not None)
    return page.render("build.html", app=data["app"], build=build, lines=lines or [],
                       expired=lines is None, live=live, tab="/builds", tabs=TABS)


def _stored_log(page: Page, build_id: str) -> tuple[list[str] | None, bool]:
    """The build's output so far (None once the stream expired) and whether it ended."""
    entries = [entry for _, entry in streams.history(page.ctx.redis,
                                                      streams.build_stream(build_id))]
    if not entries:
        return None, False
    lines = [entry.text for entry in entries if isinstance(entry, streams.OutputLine)]
    ends = [entry for entry in entries if isinstance(entry, streams.BuildEnd)]
    lines.extend(end.message for end in ends if end.message)
    return lines, bool(ends)


async def releases_page(page: Page) -> Response:
    app = page.param("app")
    data = await call(page.ctx, page.session, _with_app(apps_api.list_releases),
                      params={"app": app})
    return page.render("releases.html", app=data["app"], releases=data["rows"],
                       tab="/releases", tabs=TABS)


async def rollback_page(page: Page) -> Response:
    app = page.param("app")
    data = await call(page.ctx, page.session, _with_app(apps_api.show_release),
                      params={"app": app, "version": page.param("version")})
    return page.render("rollback.html", app=data["app"], release=data["rows"],
                       tab="/releases", tabs=TABS)


async def rollback(page: Page) -> Response:
    app = page.param("app")
    made = await call(page.ctx, page.session, apps_api.create_release, params={"app": app},
                      body={"rollback": page.param("version")}, write=True)
    return page.redirect(app_url(app, "/releases"), "ok",
                         f"{made['description']}: made release v{made['version']}; it goes "
                         "live once its dynos are up.")


# --- config vars -------------------------------------------------------------------------

async def config_page(page: Page) -> Response:
    app = page.param("app")
    data = await call(page.ctx, page.session, _with_app(config_api.show_config),
                      params={"app": app})
    reveal = page.request.query_params.get("reveal") == "1"
    return page.render("config.html", app=data["app"], config=data["rows"], reveal=reveal,
                       tab="/config", tabs=TABS)


async def set_config(page: Page) -> Response:
    key = page.form.get("key", "").strip()
    if not key:
        raise Invalid("give the config var a name, e.g. DATABASE_URL")
    return await _change_config(page, {key: page.form.get("value", "")}, f"Set {key}")


async def remove_config(page: Page) -> Response:
    key = page.form.get("key", "")
    return await _change_config(page, {key: None}, f"Removed {key}")


async def _change_config(page: Page, changes: dict[str, str | None], done: str) -> Response:
    app = page.param("app")
    result = await call(page.ctx, page.session, config_api.update_config, params={"app": app},
                        body=changes, write=True)
    if result.get("release"):
        text = f"{done}: made release v{result['release']}; the dynos restart with it."
    else:
        text = f"{done}. {app} has no release yet: the var applies from the first deploy."
    back = app_url(app, "/config") + ("?reveal=1" if "reveal=1" in page.request.headers.get(
        "referer", "") else "")
    return page.redirect(back, "ok", text)


# --- cron jobs ---------------------------------------------------------------------------

async def cron_page(page: Page) -> Response:
    app = page.param("app")
    data = await call(page.ctx, page.session, _with_app(jobs_api.list_cron),
                      params={"app": app})
    return page.render("cron.html", app=data["app"], jobs=data["rows"], tab="/cron",
                       tabs=TABS)


async def run_cron_job(page: Page) -> Response:
    app, job = page.param("app"), page.param("job")
    run = await call(page.ctx, page.session, jobs_api.run_cron, params={"app": app, "job": job},
                     write=True)
    clock.wake()
    return page.redirect(app_url(app, "/cron"), "ok",
                         f"Started {run.get('dyno') or 'a run'} of job {job}; its output is "
                         "in the logs.")


# --- logs and metrics --------------------------------------------------------------------

async def logs_page(page: Page) -> Response:
    app = page.param("app")
    q = page.request.query_params
    query = {"num": "100", "ps": q.get("ps", ""), "source": q.get("source", "")}

    def work(c: Call) -> dict[str, Any]:
        return {"app": apps_api.show_app(c), "rows": dynos_api.show_logs(c),
                "types": [r["type"] for r in dynos_api.show_formation(c)]}

    data = await call(page.ctx, page.session, work, params={"app": app}, query=query)
    last_id = data["rows"][-1]["id"] if data["rows"] else ""
    return page.render("logs.html", app=data["app"], lines=data["rows"], types=data["types"],
                       ps=query["ps"], source=query["source"], sources=LOG_SOURCES,
                       last_id=last_id, tab="/logs", tabs=TABS)


async def metrics_page(page: Page) -> Response:
    app = page.param("app")

    def work(c: Call) -> dict[str, Any]:
        return {"app": apps_api.show_app(c), "rows": domains_api.show_metrics(c),
                "formation": dynos_api.show_formation(c)}

    data = await call(page.ctx, page.session, work, params={"app": app},
                      query={"minutes": "60"})
    figures = data["rows"]
    usage = figures.get("usage", {})
    latencies = charts.latencies(figures["per_minute"])
    status_classes = {k: v for k, v in figures["status"].items()}
    return page.render(
        "metrics.html", app=data["app"], figures=figures, tab="/metrics", tabs=TABS,
        requests_chart=charts.per_minute(figures["per_minute"], "Requests per minute"),
        status_chart=charts.hbars(status_classes, "Responses by status class", classes={
            "4xx": "bar-warn", "5xx": "bar-bad"}),
        latency_chart=charts.lines(latencies, "ms", "Response time per minute", " ms"),
        latency_names=list(latencies),
        memory_chart=charts.lines(usage, "memory_mb", "Memory per process type", " MB"),
        cpu_chart=charts.lines(usage, "cpu_percent", "CPU per process type", "%"),
        usage_names=list(usage),
        cpu_now=present.cpu_by_type(data["app"]["dynos"]),
        memory_now=present.memory_by_type(data["app"]["dynos"]),
        limits={r["type"]: SIZES[r["size"]].memory_mb * r["quantity"]
                for r in data["formation"] if r["size"] in SIZES})


async def no_such_page(page: Page) -> Response:
    raise NotFound(f"there is no page {page.request.url.path[:100]}: start from your apps")
