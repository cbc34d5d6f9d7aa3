"""A bounded request loop through the router while an app is deployed and reconfigured again
and again: the driver of tests/e2e/test_soak.py and bench/soak.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.platform import Platform, app_repo, commit_all, git


@dataclass
class Visitors:
    """Threads sending GET / through the router until stopped, each request's outcome kept."""

    platform: Platform
    app: str
    threads: int = 2
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Visitors:
        self.workers = [threading.Thread(target=self._visit, daemon=True)
                        for _ in range(self.threads)]
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for worker in self.workers:
            worker.join(60)

    def _visit(self) -> None:
        url = f"http://127.0.0.1:{self.platform.router_port}/"
        with httpx.Client(headers={"Host": f"{self.app}.localhost"}, timeout=30) as client:
            while not self.stop.is_set():
                start = time.monotonic()
                sent_at = time.time()
                try:
                    response = client.get(url)
                    if response.status_code != 200:
                        self.failures.append(f"sent {sent_at:.3f} at {time.time():.3f} "
                                             f"{response.status_code} {_page(response.text)}")
                        self._keep_evidence()
                except httpx.HTTPError as error:
                    self.failures.append(f"sent {sent_at:.3f} at {time.time():.3f} {error!r}")
                self.latencies.append(time.monotonic() - start)
                time.sleep(0.01)

    def _keep_evidence(self) -> None:
        """The router's error lines and the platform's lines of the moment (the log stream
        keeps only its last lines, so they are read now, not at the end)."""
        lines = self.platform.paas("logs", "-a", self.app, "-n", "1500", check=False
                                   ).stdout.splitlines()
        self.evidence += [line for line in lines
                          if "at=error" in line or " paas[" in line][-20:]

    @property
    def sent(self) -> int:
        return len(self.latencies)

    def p99_ms(self) -> float:
        ordered = sorted(self.latencies)
        return round(ordered[int(len(ordered) * 0.99)] * 1000, 1) if ordered else 0.0


@dataclass
class Timeline:
    """What the router routes the app to and which dynos exist on disk (their address, and
    whether they exited), every change timed: a failed request is matched to the moment it
    was sent."""

    platform: Platform
    app: str
    changes: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Timeline:
        self.worker = threading.Thread(target=self._watch, daemon=True)
        self.worker.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.worker.join(10)

    def _watch(self) -> None:
        router = self.platform.home / "router"
        url = f"http://127.0.0.1:{self.platform.env['PAAS_ROUTER_CONTROL_PORT']}/routes"
        headers = {"X-Paas-Control": (router / "control-secret").read_text().strip()}
        last_route = last_dynos = ""
        with httpx.Client(timeout=5, headers=headers) as client:
            while not self.stop.wait(0.05):
                route = next((line for line in _text(client, url).splitlines()
                              if line.startswith(f"{self.app}.localhost ")), "-")
                dynos = " ".join(self._dynos())
                if route != last_route:
                    self.changes.append(f"{time.time():.3f} route {route}")
                if dynos != last_dynos:
                    self.changes.append(f"{time.time():.3f} dynos {dynos}")
                last_route, last_dynos = route, dynos

    def _dynos(self) -> list[str]:
        found = []
        for path in sorted((self.platform.home / "dynos").glob(f"{self.app}-*")):
            try:
                ip = json.loads((path / "metadata.json").read_text())["ip"]
            except (OSError, ValueError, KeyError):
                continue
            exited = " exited" if (path / "exit-code").exists() else ""
            found.append(f"{path.name}={ip}{exited}")
        return found

    def around(self, moments: list[float], seconds: float = 2) -> list[str]:
        return [change for change in self.changes
                if any(abs(float(change.split()[0]) - m) <= seconds for m in moments)]


def _text(client: httpx.Client, url: str) -> str:
    try:
        return client.get(url).text
    except httpx.HTTPError:
        return ""


def _page(html: str) -> str:
    """Which of the router's error pages this is (its <p>, without the markup)."""
    start = html.find("<p>")
    return html[start + 3:html.find("</p>", start)][:80] if start >= 0 else html[:80]


def soak(platform: Platform, tmp: Path, app: str, deploys: int = 10,
         config_changes: int = 10, on_ready: Callable[[], object] | None = None
         ) -> dict[str, object]:
    """Deploys (a new index.html each) and config changes alternate while visitors loop; ends
    once the last deploy is served. `on_ready` runs once the first deploy is served."""
    platform.paas("apps:create", app)
    repo = app_repo(tmp, "procfile-only")
    push = git(repo, "push", platform.remote_url(app), "main", check=False)
    assert push.returncode == 0, push.stderr
    platform.wait_for(app, "Procfile-only app")
    if on_ready:
        on_ready()
    done_deploys = done_changes = 0
    with Timeline(platform, app) as timeline, Visitors(platform, app) as visitors:
        for round_ in range(max(deploys, config_changes)):
            if round_ < deploys:
                (repo / "index.html").write_text(f"<p>soak deploy {round_}</p>\n")
                commit_all(repo, f"deploy {round_}")
                push = git(repo, "push", platform.remote_url(app), "main", check=False)
                assert push.returncode == 0, push.stderr
                done_deploys += 1
            if round_ < config_changes:
                platform.paas("config:set", f"SOAK_ROUND={round_}", "-a", app)
                done_changes += 1
        if deploys:
            platform.wait_for(app, f"soak deploy {deploys - 1}")
    platform_lines = platform.paas("logs", "-a", app, "-s", "paas", "-n", "1500"
                                   ).stdout.splitlines() if visitors.failures else []
    return {"requests": visitors.sent, "failed": len(visitors.failures),
            "evidence": visitors.evidence, "platform_log": platform_lines[-30:],
            "timeline": timeline.around([float(f.split()[1]) for f in visitors.failures]),
            "failures": visitors.failures[:5], "p99_ms": visitors.p99_ms(),
            "deploys": done_deploys, "config_changes": done_changes}
