"""The plumbing every dashboard page shares: the session cookie, CSRF on every form, domain
errors as messages on the page (never a stack trace), templates and security headers."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from paas.api.context import Context
from paas.dashboard import present
from paas.dashboard.sessions import COOKIE, DashboardSession, SessionCodec, secret_key
from paas.errors import PaasError, Unauthorized

if TYPE_CHECKING:
    import jinja2

PREFIX = "/dashboard"
MAX_FORM = 256 * 1024
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
log = logging.getLogger("paas.dashboard")

View = Callable[["Page"], Awaitable[Response]]


class FormError(PaasError):
    """A form that did not come from our page (CSRF) or could not be read."""

    status = 400
    id = "bad_form"


class Page:
    """One request to a dashboard page: the session, the form, and how to answer."""

    def __init__(self, site: Site, request: Request, session: DashboardSession,
                 form: dict[str, str]) -> None:
        self.site, self.request, self.session, self.form = site, request, session, form

    @property
    def ctx(self) -> Context:
        return self.site.ctx

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    def render(self, template: str, status: int = 200, **values: Any) -> Response:
        html = self.site.env.get_template(template).render(
            session=self.session, flash=self.session.take_flash(), base=PREFIX,
            path=self.request.url.path, **values)
        return self.site.finish(HTMLResponse(html, status_code=status), self.session)

    def redirect(self, to: str, kind: str = "", message: str = "") -> Response:
        if message:
            self.session.say(kind or "ok", message)
        return self.site.finish(RedirectResponse(to, status_code=303), self.session)


class Site:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.codec = SessionCodec(secret_key(ctx.settings.home), _max_age(ctx))

    @functools.cached_property
    def env(self) -> jinja2.Environment:
        """Loaded at the first page: an API nobody browses does not hold jinja2."""
        import jinja2

        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
            autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
        env.globals.update(present=present, quote=quote)
        return env

    def session(self, request: Request) -> DashboardSession:
        return self.codec.loads(request.cookies.get(COOKIE)) or DashboardSession()

    def finish(self, response: Response, session: DashboardSession) -> Response:
        response.headers.update(HEADERS)
        response.set_cookie(COOKIE, self.codec.dumps(session), max_age=int(self.codec.max_age),
                            path=PREFIX, httponly=True, samesite="lax",
                            secure=self.ctx.settings.api_url.startswith("https:"))
        return response

    def view(self, handler: View, *, anonymous: bool = False) -> Callable[[Request],
                                                                         Awaitable[Response]]:
        """A page: GETs need a session (else the sign-in page); POSTs also need the form's
        CSRF token. A PaasError becomes a message: on the page we came from for a form, as
        an error page for a GET."""

        async def endpoint(request: Request) -> Response:
            session = self.session(request)
            post = request.method == "POST"
            if not anonymous and not session.signed_in:
                return self._to_sign_in(request, session, post)
            try:
                form = await _read_form(request) if post else {}
                if post and not session.check_csrf(form.get("csrf")):
                    raise FormError("this form has expired (or did not come from this page): "
                                    "reload the page and try again")
                return await handler(Page(self, request, session, form))
            except Unauthorized as error:
                session = DashboardSession()
                session.say("error", error.message)
                return self._to_sign_in(request, session, post)
            except PaasError as error:
                if post:
                    page = Page(self, request, session, {})
                    return page.redirect(_back(request), "error", error.message)
                return self.error(request, session, error.status, error.message)
            except Exception:
                log.exception("dashboard page %s failed", request.url.path)
                return self.error(request, session, 500, "the platform failed on this "
                                  "request; its API log says why")

        return endpoint

    def error(self, request: Request, session: DashboardSession, status: int,
              message: str) -> Response:
        page = Page(self, request, session, {})
        return page.render("error.html", status=status, status_code=status, message=message)

    def _to_sign_in(self, request: Request, session: DashboardSession, post: bool) -> Response:
        target = _back(request) if post else request.url.path + (
            f"?{request.url.query}" if request.url.query else "")
        url = f"{PREFIX}/login?next={quote(target, safe='')}"
        return self.finish(RedirectResponse(url, status_code=303), session)


def _max_age(ctx: Context) -> float:
    return float(ctx.settings.session_max_age)


async def _read_form(request: Request) -> dict[str, str]:
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        raise FormError("send the form as application/x-www-form-urlencoded")
    raw = await request.body()
    if len(raw) > MAX_FORM:
        raise FormError("the form is over 256 KiB")
    return dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))


def _back(request: Request) -> str:
    """Where a form goes back to: the page it came from, if it is one of ours."""
    referer = request.headers.get("referer", "")
    origin = f"{request.url.scheme}://{request.url.netloc}"
    if referer.startswith(origin + PREFIX):
        return referer[len(origin):]
    return f"{PREFIX}/"


def safe_next(target: str | None) -> str:
    """Only our own pages: never an open redirect."""
    if target and target.startswith(PREFIX) and not target.startswith("//") \
            and "\\" not in target:
        return target
    return f"{PREFIX}/"
