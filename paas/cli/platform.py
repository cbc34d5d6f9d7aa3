"""`paas up` and `paas down`: the platform itself, on this host."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from paas.cli.main import cli
from paas.settings import Settings, load

if TYPE_CHECKING:
    from paas.doctor import Finding

PROCFILE = Path(__file__).resolve().parent.parent.parent / "Procfile"


def _pid_path(settings: Settings) -> Path:
    return settings.home / "paas-up.pid"  # paas/supervisor.py removes it


def _running_pid(settings: Settings) -> int | None:
    try:
        pid = int(_pid_path(settings).read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


@cli.command("up")
def up() -> None:
    """Run the platform in the foreground (Ctrl-C stops the control plane; apps keep serving)."""
    settings = _settings()
    if os.geteuid() != 0:
        raise click.ClickException("paas up runs containers with runc: run it as root")
    if pid := _running_pid(settings):
        raise click.ClickException(f"paas is already up (pid {pid}); `paas down` stops it")
    _refuse_if_unfit()
    settings.home.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.home, 0o711)
    _secure_dyno_networks(settings)
    _pid_path(settings).write_text(str(os.getpid()))
    # The same pid, without the CLI's modules: the supervisor removes the pid file at its end.
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, [sys.executable, "-m", "paas.supervisor", str(PROCFILE)])
    except OSError:
        _pid_path(settings).unlink(missing_ok=True)
        raise


def _secure_dyno_networks(settings: Settings) -> None:
    """The platform's firewall table before any service starts (dynos adopted from an earlier
    `paas up` are covered at once); `paas down` removes it (`Runtime.teardown`). Here, not in
    the supervisor, so that the process that stays up does not keep the runtime's modules."""
    from paas.errors import PaasError
    from paas.runtime import network

    try:
        network.prepare_host(settings)
    except PaasError as error:
        raise click.ClickException(str(error)) from None


def _settings() -> Settings:
    """The settings, or every bad one with an example of a good one."""
    from paas.doctor import fatal, settings_check

    if problems := fatal(settings_check.check()):
        _refuse(problems)
    return load()


def _refuse_if_unfit() -> None:
    """The checks of `paas doctor` that would make the platform fail (paas/doctor)."""
    from paas import doctor
    from paas.doctor import services

    findings = doctor.run(doctor.BEFORE_UP)
    if not doctor.fatal(findings):
        findings += services.database(load())
    if problems := doctor.fatal(findings):
        _refuse(problems)


def _refuse(problems: list[Finding]) -> None:
    for finding in problems:
        click.echo(f"paas up: {finding.detail}\n  fix: {finding.fix}", err=True)
    raise click.ClickException(f"{len(problems)} problem(s) found (paas doctor checks them "
                               "all): nothing was started")


@cli.command("down")
def down() -> None:
    """Stop everything: the control plane, every dyno, the router, networks and mounts."""
    from paas.runtime import Runtime
    from paas.service_cgroups import remove_leftovers
    from router import Router

    settings = load()
    if pid := _running_pid(settings):
        click.echo(f"Stopping the control plane (pid {pid})...")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 40
        while _running_pid(settings) and time.monotonic() < deadline:
            time.sleep(0.2)
    click.echo("Stopping dynos and removing their networks and mounts...")
    Runtime(settings).teardown()
    click.echo("Stopping the router...")
    Router(settings).stop()
    remove_leftovers(settings)
    click.echo("paas is down")
