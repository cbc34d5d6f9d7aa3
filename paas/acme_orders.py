"""The one orderer of certificates for the whole platform: a platform job (`acme-orders`,
paas/platform_jobs.py) that each run advances every due hostname as far as it can without
waiting long, so calling it again and again is what drives an order:

    create the order → put its challenge in the route table (a new route generation) →
    wait until the router acknowledged that generation (paas/notify.py) → tell the CA →
    poll → finalize → check the certificate → store it (the router serves it by SNI).

A Redis lock keeps two runs from ordering at once even if the scheduler overlapped them.
The CA's work happens here, in the control plane, never in the router."""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from paas import autocerts, notify
from paas.acme_client import Account, CAError, new_key_pem
from paas.autocerts import Step
from paas.errors import Invalid
from paas.logs import BufferedEvents
from paas.models import App, AutoCert

if TYPE_CHECKING:
    from paas.api.context import Context

LOCK = "paas:acme:orderer"
LOCK_SECONDS = 600
# How long one run waits at most for the router's acknowledgement and for the CA.
ACK_WAIT = 5.0
VALIDATION_WAIT = 10.0
FINALIZE_WAIT = 60.0
# A step that has not moved for this long failed (the router down, a CA that never answers).
STUCK_AFTER = 300.0
RUN_BUDGET = 120.0


@dataclass(frozen=True)
class View:
    """A row as read, outside any session."""

    id: int
    app: str
    hostname: str
    step: Step
    issued: bool
    generation: int
    step_at: float
    authz_url: str
    order_url: str
    order_key_pem: str
    key_authorization: str
    due: bool


def run(ctx: Context) -> str:
    """One run of the orderer; a one-line summary."""
    if not ctx.settings.acme_directory:
        return "ACME is off (PAAS_ACME_DIRECTORY is unset)"
    token = secrets.token_hex(8)
    if not ctx.redis.set(LOCK, token, nx=True, ex=LOCK_SECONDS):
        return "another orderer is running"
    try:
        return _run_locked(ctx)
    finally:
        if ctx.redis.get(LOCK) == token:
            ctx.redis.delete(LOCK)


def _run_locked(ctx: Context) -> str:
    now = time.time()
    if ctx.write(lambda db, events: autocerts.reconcile(db, ctx.settings, now)):
        notify.routes_changed(ctx.redis)
    due = [v for v in _views(ctx) if v.due]
    account: Account | None = None
    deadline = time.monotonic() + RUN_BUDGET
    for view in due:
        if time.monotonic() > deadline:
            break
        try:
            account = account or Account(ctx.settings)
        except (CAError, OSError) as exc:
            for v in due:
                _fail(ctx, v, f"the ACME account cannot be used: {exc}", None)
            break
        _advance(ctx, account, view)
    counts = Counter(v.step.value for v in _views(ctx))
    return ", ".join(f"{n} {step}" for step, n in sorted(counts.items())) or "no hostnames"


def _views(ctx: Context) -> list[View]:
    now = time.time()
    with ctx.read() as db:
        apps = {app.id: app.name for app in db.scalars(select(App))}
        return [_view(row, apps.get(row.app_id, ""), now)
                for row in db.scalars(select(AutoCert).order_by(AutoCert.hostname))]


def _view(row: AutoCert, app: str, now: float) -> View:
    return View(row.id, app, row.hostname, Step(row.step), bool(row.cert_pem), row.generation,
                row.step_at, row.authz_url, row.order_url, row.order_key_pem,
                row.key_authorization, autocerts.is_due(row, now))


def _reload(ctx: Context, row_id: int) -> View | None:
    with ctx.read() as db:
        row = db.get(AutoCert, row_id)
        if row is None:
            return None
        app = db.get(App, row.app_id)
        return _view(row, app.name if app else "", time.time())


def _update(ctx: Context, view: View, change: Callable[[AutoCert], None]) -> bool:
    """Changes the row if it is still at the step it was read at (a removed domain's row is
    gone; another writer may have moved it)."""
    def work(db: Session, events: BufferedEvents) -> bool:
        row = db.get(AutoCert, view.id)
        if row is None or row.step != view.step:
            return False
        change(row)
        return True
    return ctx.write(work)


def _advance(ctx: Context, account: Account, view: View | None) -> None:
    """Moves one hostname forward until it has to wait."""
    for _ in range(8):
        if view is None or not view.due:
            return
        step = {Step.NEW: _order, Step.FAILED: _again, Step.ISSUED: _renew,
                Step.PUBLISHED: _tell_ca, Step.ANSWERED: _collect}[view.step]
        try:
            moved = step(ctx, account, view)
        except CAError as exc:
            if not (exc.account_gone and _account_gone(ctx, account, view)):
                _fail(ctx, view, str(exc), exc.retry_after)
                return
            moved = True
        if not moved:
            return
        view = _reload(ctx, view.id)


def _again(ctx: Context, account: Account, view: View) -> bool:
    return _update(ctx, view, lambda row: autocerts.move(row, Step.NEW))


def _renew(ctx: Context, account: Account, view: View) -> bool:
    return _update(ctx, view, lambda row: autocerts.move(row, Step.NEW))


def _order(ctx: Context, account: Account, view: View) -> bool:
    if not view.issued and _rate_limited(ctx, view):
        return False
    key_pem = new_key_pem()
    started = account.new_order(view.hostname, key_pem)

    def record(row: AutoCert) -> None:
        autocerts.move(row, Step.ANSWERED if not started.token else Step.PUBLISHED)
        row.order_url, row.authz_url = started.order_url, started.authz_url
        row.challenge_url, row.token = started.challenge_url, started.token
        row.key_authorization, row.order_key_pem = started.key_authorization, key_pem

    if not _update(ctx, view, record):
        return False
    if started.token:
        # After the commit: a route table of this generation or later holds the challenge.
        generation = notify.routes_changed(ctx.redis)
        _update(ctx, dataclasses.replace(view, step=Step.PUBLISHED),
                lambda row: setattr(row, "generation", generation))
    return True


def _rate_limited(ctx: Context, view: View) -> bool:
    """The CA's weekly limit per registered domain, kept here before the CA refuses."""
    now = time.time()
    limit = ctx.settings.acme_weekly_limit
    with ctx.read() as db:
        issued = autocerts.weekly_issued(db, view.hostname, now)
    if limit == 0 or len(issued) < limit:
        return False
    until = issued[len(issued) - limit] + autocerts.WEEK
    domain = autocerts.registered_domain(view.hostname)
    reason = (f"waiting for the CA's rate limit: {len(issued)} certificates under {domain} "
              f"in the last 7 days (PAAS_ACME_WEEKLY_LIMIT={limit})")
    _fail(ctx, view, reason, until - now)
    return False


def _tell_ca(ctx: Context, account: Account, view: View) -> bool:
    """Answers the challenge once every live router applied a route generation carrying it."""
    if view.key_authorization.rsplit(".", 1)[-1] != account.thumbprint:
        # Made with an account key that is gone: the order is of no use.
        return _update(ctx, view, lambda row: autocerts.move(row, Step.NEW))
    deadline = time.monotonic() + ACK_WAIT
    while not (view.generation and notify.routers_applied(ctx.redis, view.generation)):
        if time.monotonic() > deadline:
            if time.time() - view.step_at > STUCK_AFTER:
                _fail(ctx, view, "the routers did not all apply the challenge: is each one "
                                 "running?", None)
            return False
        time.sleep(0.1)
        view = _reload(ctx, view.id) or view
    account.answer(view.authz_url)
    return _update(ctx, view, lambda row: autocerts.move(row, Step.ANSWERED))


def _collect(ctx: Context, account: Account, view: View) -> bool:
    """Polls the CA's validation; once valid, finalizes and stores the certificate."""
    deadline = time.monotonic() + VALIDATION_WAIT
    while (validation := account.validation(view.authz_url)).status in ("pending",
                                                                         "processing"):
        if time.monotonic() > deadline:
            if time.time() - view.step_at > STUCK_AFTER:
                _fail(ctx, view, "the CA did not validate the domain in time", None)
            return False
        time.sleep(0.5)
    if validation.status != "valid":
        _fail(ctx, view, validation.error or f"the CA's authorization is {validation.status}",
              None)
        return False
    chain = account.finalize(view.order_url, view.hostname, view.order_key_pem, FINALIZE_WAIT)
    try:
        issued = autocerts.check_issued(view.hostname, chain, view.order_key_pem)
    except Invalid as exc:
        _fail(ctx, view, str(exc), None)
        return False
    now = time.time()
    if not _update(ctx, view, lambda row: autocerts.issue(row, issued.chain_pem,
                                                          issued.key_pem, issued.expires_at,
                                                          now)):
        return False
    notify.routes_changed(ctx.redis)
    expiry = datetime.fromtimestamp(issued.expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    _log(ctx, view.app, f"Certificate issued for {view.hostname} (expires {expiry})")
    return True


def _fail(ctx: Context, view: View, reason: str, retry_after: float | None) -> None:
    base = ctx.settings.acme_retry
    now = time.time()
    if _update(ctx, view, lambda row: autocerts.fail(row, reason, base, now, retry_after)):
        if view.step in (Step.PUBLISHED, Step.ANSWERED):
            notify.routes_changed(ctx.redis)  # its challenge leaves the table
        _log(ctx, view.app, f"Certificate for {view.hostname} failed: {reason}")


def _account_gone(ctx: Context, account: Account, view: View) -> bool:
    """The CA does not know the account (its key was lost, the CA's state was reset): register
    again, once a run, and order again. False: that did not help."""
    if account.registered_again:
        return False
    try:
        account.register_again()
    except CAError:
        return False
    _log(ctx, view.app, "The ACME account was unknown to the CA: registered again")
    if view.step in (Step.PUBLISHED, Step.ANSWERED) and _update(
            ctx, view, lambda row: autocerts.move(row, Step.NEW)):
        notify.routes_changed(ctx.redis)
    return True


def _log(ctx: Context, app: str, line: str) -> None:
    if app:
        ctx.events.app_log(app, "paas[acme]", line)
