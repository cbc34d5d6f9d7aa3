"""The web dashboard, served by the API process under /dashboard."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from paas.api.context import Context
from paas.dashboard import live, views
from paas.dashboard.web import PREFIX, Site


def routes(ctx: Context) -> list[BaseRoute]:
    site = Site(ctx)
    v = site.view
    build_log, app_log = live.routes(site)
    app = "/apps/{app}"

    async def home(_request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    pages = [
        Route("/login", v(views.login_page, anonymous=True), methods=["GET"]),
        Route("/login", v(views.login, anonymous=True), methods=["POST"]),
        Route("/logout", v(views.logout), methods=["POST"]),
        Route("/", v(views.apps_page), methods=["GET"]),
        Route("/apps", v(views.new_app), methods=["POST"]),
        Route("/nodes", v(views.nodes_page), methods=["GET"]),
        Route("/doctor", v(views.doctor_page), methods=["GET"]),
        Route("/jobs", v(views.jobs_page), methods=["GET"]),
        Route("/jobs/{name}/runs", v(views.run_platform_job), methods=["POST"]),
        Route(app, v(views.overview), methods=["GET"]),
        Route(f"{app}/destroy", v(views.destroy_app), methods=["POST"]),
        Route(f"{app}/formation", v(views.update_formation), methods=["POST"]),
        Route(f"{app}/restart", v(views.restart), methods=["POST"]),
        Route(f"{app}/maintenance", v(views.maintenance), methods=["POST"]),
        Route(f"{app}/domains", v(views.add_domain), methods=["POST"]),
        Route(f"{app}/domains/remove", v(views.remove_domain), methods=["POST"]),
        Route(f"{app}/builds", v(views.builds_page), methods=["GET"]),
        Route(f"{app}/builds/{{build}}", v(views.build_page), methods=["GET"]),
        Route(f"{app}/builds/{{build}}/log", build_log, methods=["GET"]),
        Route(f"{app}/releases", v(views.releases_page), methods=["GET"]),
        Route(f"{app}/releases/{{version}}/rollback", v(views.rollback_page), methods=["GET"]),
        Route(f"{app}/releases/{{version}}/rollback", v(views.rollback), methods=["POST"]),
        Route(f"{app}/config", v(views.config_page), methods=["GET"]),
        Route(f"{app}/config", v(views.set_config), methods=["POST"]),
        Route(f"{app}/config/remove", v(views.remove_config), methods=["POST"]),
        Route(f"{app}/cron", v(views.cron_page), methods=["GET"]),
        Route(f"{app}/cron/{{job}}/runs", v(views.run_cron_job), methods=["POST"]),
        Route(f"{app}/logs", v(views.logs_page), methods=["GET"]),
        Route(f"{app}/logs/stream", app_log, methods=["GET"]),
        Route(f"{app}/metrics", v(views.metrics_page), methods=["GET"]),
        Mount("/static", StaticFiles(directory=Path(__file__).parent / "static"),
              name="dashboard-static"),
        Route("/{path:path}", v(views.no_such_page), methods=["GET"]),
    ]
    return [Route("/", home), Route(PREFIX, home), Mount(PREFIX, routes=pages)]
