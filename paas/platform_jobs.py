"""The platform's own periodic work, as named jobs that the one scheduler runs.

A capability that needs a timer (layer GC, the reaper, repository GC, add-on backups,
certificate renewals) adds a `PlatformJob` to `platform_jobs` instead of starting a loop of its
own. The scheduler (issue 17) claims each due run once in the database, runs it in its own
process with the control plane's `Context`, and records the run (`paas admin:jobs`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from paas.api.context import Context
    from paas.settings import Settings


@dataclass(frozen=True)
class PlatformJob:
    # Unique, lower-case and dashed ("layer-gc"): the key of its runs in the database.
    name: str
    # A run is due this long after the previous run started.
    every_seconds: float
    # Does the work; returns a one-line summary shown by `paas admin:jobs`, raises on failure.
    run: Callable[[Context], str | None]
    description: str = ""


def platform_jobs(settings: Settings) -> list[PlatformJob]:
    """Every platform job this installation runs; a job off by its settings is left out."""
    from paas import reaper  # here: a job's code is loaded by the clock only
    from paas.slugs import gc as slugs_gc

    jobs = [reaper.reaper_job(settings), slugs_gc.layer_gc_job(settings)]
    if settings.acme_directory:
        jobs.append(_acme_orders(settings))
    return jobs


def _acme_orders(settings: Settings) -> PlatformJob:
    return PlatformJob("acme-orders", settings.acme_interval, _run_acme_orders,
                       "order and renew the certificates of automatic HTTPS (issue 19)")


def _run_acme_orders(ctx: Context) -> str | None:
    from paas import acme_orders  # the acme library loads at the first run, where it runs

    return acme_orders.run(ctx)
