"""`paas doctor`: checks that a host can run the platform, each problem with what to run.

Each area is a module of checks returning Findings; `run` gathers them. `paas up` runs the
`BEFORE_UP` areas and refuses to start on a fatal one, with the same messages."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from paas.settings import Settings, load


@dataclass(frozen=True)
class Finding:
    area: str  # settings, kernel, tools, disk, network, clock, services, leftovers
    check: str  # what was checked: "overlayfs", "PAAS_API_PORT", "free disk"
    ok: bool
    detail: str  # what was found
    fix: str = ""  # what to run or change, when not ok
    fatal: bool = False  # not ok and the platform cannot run

    def to_json(self) -> dict[str, object]:
        return {"area": self.area, "check": self.check, "ok": self.ok, "detail": self.detail,
                "fix": self.fix, "fatal": self.fatal}


def passed(area: str, check: str, detail: str) -> Finding:
    return Finding(area, check, True, detail)


def problem(area: str, check: str, detail: str, fix: str, *, fatal: bool = True) -> Finding:
    return Finding(area, check, False, detail, fix, fatal)


Area = Callable[[Settings], Iterable[Finding]]


def areas() -> dict[str, Area]:
    from paas.doctor import disk, kernel, leftovers, network, services, tools

    return {"kernel": kernel.check, "tools": tools.check, "disk": disk.check,
            "network": network.check, "services": services.check,
            "leftovers": leftovers.check}


# What `paas up` checks before it starts anything: what would make it fail, not what it starts.
BEFORE_UP = ("kernel", "tools", "disk", "network")


def run(only: Iterable[str] | None = None) -> list[Finding]:
    """The settings (from the environment), then, if they can be read, each area's checks."""
    from paas.doctor import settings_check

    findings = settings_check.check()
    if fatal(findings):
        return findings
    settings = load()
    chosen = areas()
    for name in only if only is not None else chosen:
        findings.extend(chosen[name](settings))
    return findings


def fatal(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.fatal]
