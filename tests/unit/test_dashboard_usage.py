"""The figures behind the dashboard's metrics charts: CPU from cgroup counters, memory and CPU
per process type a minute at a time, and the line charts drawn from them."""

from __future__ import annotations

from paas import usage
from paas.dashboard import charts, present
from paas.runtime.cpu import CpuMeter


def test_cpu_is_the_share_of_one_core_between_two_samples() -> None:
    meter = CpuMeter()
    assert meter.percent("d1", 5_000_000_000, now=100.0) is None  # nothing to compare with
    assert meter.percent("d1", 5_500_000_000, now=102.0) == 25.0  # 0.5 s of CPU in 2 s
    assert meter.percent("d1", 9_500_000_000, now=104.0) == 200.0  # two cores busy
    assert meter.percent("d2", 1, now=1000.0) is None
    assert "d1" not in meter.samples  # not seen for minutes: forgotten


def test_usage_sums_running_formation_dynos_per_app_and_type() -> None:
    reported = [
        {"app": "a", "type": "web", "state": "up", "memory_mb": 10.0, "cpu_percent": 1.5},
        {"app": "a", "type": "web", "state": "starting", "memory_mb": 5.0, "cpu_percent": None},
        {"app": "a", "type": "web", "state": "crashed", "memory_mb": 99.0},
        {"app": "a", "type": "run", "state": "up", "memory_mb": 7.0, "oneoff": True},
        {"app": "b", "type": "worker", "state": "up", "memory_mb": 3.0, "cpu_percent": 50.0},
    ]
    assert usage.totals(reported) == {
        "a": {"web": {"memory_mb": 15.0, "cpu_percent": 1.5}},
        "b": {"worker": {"memory_mb": 3.0, "cpu_percent": 50.0}},
    }


def test_each_minute_keeps_its_highest_figures_and_only_the_last_hour_is_kept() -> None:
    points = usage.merge([], {"memory_mb": 10.0, "cpu_percent": 4.0}, minute=7)
    points = usage.merge(points, {"memory_mb": 12.0, "cpu_percent": 1.0}, minute=7)
    assert points == [{"at": 420.0, "memory_mb": 12.0, "cpu_percent": 4.0}]
    for minute in range(8, 100):
        points = usage.merge(points, {"memory_mb": minute, "cpu_percent": 0.0}, minute)
    assert len(points) == usage.KEEP_POINTS
    assert points[-1]["at"] == 99 * 60 and points[0]["at"] == 40 * 60


def test_line_charts_draw_a_dot_per_point_and_say_the_latest_figures() -> None:
    now = 3600 * 10
    series = {"web": [{"at": now - 120, "memory_mb": 20.0}, {"at": now - 60, "memory_mb": 24.5}],
              "old": [{"at": now - 7200, "memory_mb": 1.0}]}
    svg = str(charts.lines(series, "memory_mb", "Memory <per> type", " MB", now=now))
    assert svg.count("<circle") == 2 and svg.count("<polyline") == 1
    assert "web 24.5 MB now" in svg and "&lt;per&gt;" in svg
    assert "no data yet" in str(charts.lines({}, "ms", "Response time", " ms", now=now))


def test_latencies_come_from_the_routers_per_minute_percentiles() -> None:
    per_minute = [{"at": 60, "p50_ms": 5, "p95_ms": 20}, {"at": 120, "p50_ms": None}]
    assert charts.latencies(per_minute) == {"p50": [{"at": 60, "ms": 5}],
                                            "p95": [{"at": 60, "ms": 20}]}


def test_cpu_per_process_type_counts_what_the_agent_measured() -> None:
    dynos = [{"type": "web", "state": "up", "cpu_percent": 1.25},
             {"type": "web", "state": "up", "cpu_percent": 2.0},
             {"type": "web", "state": "up", "cpu_percent": None},
             {"type": "worker", "state": "crashed", "cpu_percent": 9.0}]
    assert present.cpu_by_type(dynos) == {"web": "3.2%"}
