"""What the dashboard says about apps, times and sizes, and its SVG charts."""

from __future__ import annotations

from paas.dashboard import charts, present
from paas.dashboard.present import AppState


def dyno(state: str, release: int = 1, kind: str = "web", memory: float = 10.0) -> dict:
    return {"state": state, "release": release, "type": kind, "memory_mb": memory}


def test_app_state_most_pressing_first() -> None:
    up, crashed = dyno("up"), dyno("crashed")
    assert present.app_state(True, 1, [up], "building") == AppState.MAINTENANCE
    assert present.app_state(False, 1, [up], "pending") == AppState.BUILDING
    assert present.app_state(False, 1, [up, crashed], "succeeded") == AppState.RUNNING
    assert present.app_state(False, 1, [crashed], "succeeded") == AppState.CRASHED
    assert present.app_state(False, 1, [dyno("starting")], "succeeded") == AppState.STARTING
    assert present.app_state(False, None, [], None) == AppState.NO_DYNOS
    # dynos of another release (an old one still stopping) do not count
    assert present.app_state(False, 2, [dyno("up", release=1)], "failed") == AppState.NO_DYNOS


def test_times_and_sizes_read_as_people_say_them() -> None:
    assert present.span(42) == "42s"
    assert present.span(185) == "3m 5s"
    assert present.span(7800) == "2h 10m"
    assert present.span(None) == "—"
    assert present.ago(1000, now=1002) == "just now"
    assert present.ago(1000, now=1000 + 3600) == "1h 0m ago"
    assert present.ago(None) == "never"
    assert present.size(202) == "202 B"
    assert present.size(3 * 1024 * 1024) == "3.0 MB"
    assert present.short("sha256:b030088b26d661b0") == "b030088"


def test_memory_per_process_type_counts_live_dynos() -> None:
    found = [dyno("up", memory=10), dyno("up", memory=5.5), dyno("crashed", memory=99),
             dyno("up", kind="worker", memory=3)]
    assert present.memory_by_type(found) == {"web": 15.5, "worker": 3.0}


def test_cpu_shows_only_when_the_agent_reports_it() -> None:
    assert present.cpu_of({"cpu_percent": 12.345}) == "12.3%"
    assert present.cpu_of({}) == "—"


def test_the_requests_chart_labels_itself_and_escapes_text() -> None:
    series = [{"at": 60 * i, "requests": i, "5xx": 1 if i == 3 else 0} for i in range(5)]
    svg = str(charts.per_minute(series, "Requests <per> minute"))
    assert 'role="img"' in svg
    assert "10 requests, 1 with a 5xx status, over the last 5 minutes" in svg
    assert "<per>" not in svg and "&lt;per&gt;" in svg
    assert svg.count('class="bar"') == 5


def test_horizontal_bars_say_each_value() -> None:
    svg = str(charts.hbars({"web": 18.4, "worker": 3}, "Memory", " MB"))
    assert "web: 18.4 MB, worker: 3 MB" in svg
    assert "no data yet" in str(charts.hbars({}, "Memory"))
