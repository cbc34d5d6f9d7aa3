"""Inline SVG charts: no script, no library; each one says what it shows to screen readers."""

from __future__ import annotations

import time
from html import escape

from markupsafe import Markup

WIDTH = 600
HEIGHT = 160
PAD_LEFT = 36
PAD_BOTTOM = 20


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1
    step = 1.0
    while step * 10 < value:
        step *= 10
    for factor in (1, 2, 5, 10):
        if value <= step * factor:
            return step * factor
    return value


def per_minute(series: list[dict], label: str) -> Markup:
    """Requests per minute as bars, the 5xx part of each bar in red."""
    top = _nice_max(max((p["requests"] for p in series), default=0))
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM
    slot = plot_w / max(len(series), 1)
    total = sum(p["requests"] for p in series)
    errors = sum(p.get("5xx", 0) for p in series)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}: {total} requests, {errors} with a 5xx status, '
        f'over the last {len(series)} minutes">',
        _axis(top, plot_h),
    ]
    for i, point in enumerate(series):
        x = PAD_LEFT + i * slot + 1
        w = max(slot - 2, 1)
        h = plot_h * point["requests"] / top
        bad = plot_h * point.get("5xx", 0) / top
        at = time.strftime("%H:%M", time.gmtime(point["at"]))
        tip = f'{at} UTC: {point["requests"]} requests, {point.get("5xx", 0)} 5xx'
        parts.append(f'<g><title>{escape(tip)}</title>'
                     f'<rect class="bar" x="{x:.1f}" y="{plot_h - h:.1f}" width="{w:.1f}" '
                     f'height="{h:.1f}"/>'
                     f'<rect class="bar-bad" x="{x:.1f}" y="{plot_h - bad:.1f}" '
                     f'width="{w:.1f}" height="{bad:.1f}"/></g>')
    if series:
        first = time.strftime("%H:%M", time.gmtime(series[0]["at"]))
        last = time.strftime("%H:%M", time.gmtime(series[-1]["at"]))
        parts.append(f'<text class="tick" x="{PAD_LEFT}" y="{HEIGHT - 4}">{first}</text>'
                     f'<text class="tick" x="{WIDTH}" y="{HEIGHT - 4}" '
                     f'text-anchor="end">{last} UTC</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _axis(top: float, plot_h: float) -> str:
    return (f'<line class="axis" x1="{PAD_LEFT}" y1="{plot_h}" x2="{WIDTH}" y2="{plot_h}"/>'
            f'<line class="grid" x1="{PAD_LEFT}" y1="0.5" x2="{WIDTH}" y2="0.5"/>'
            f'<text class="tick" x="{PAD_LEFT - 4}" y="10" text-anchor="end">{top:g}</text>'
            f'<text class="tick" x="{PAD_LEFT - 4}" y="{plot_h}" text-anchor="end">0</text>')


def hbars(values: dict[str, float], label: str, unit: str = "",
          classes: dict[str, str] | None = None) -> Markup:
    """Horizontal bars, one per key, each labelled with its value."""
    row_h, name_w = 26, 110
    height = max(len(values), 1) * row_h
    top = max(values.values(), default=0) or 1
    summary = ", ".join(f"{k}: {v:g}{unit}" for k, v in values.items()) or "no data"
    parts = [f'<svg class="chart hbars" viewBox="0 0 {WIDTH} {height}" role="img" '
             f'aria-label="{escape(label)}: {escape(summary)}">']
    for i, (name, value) in enumerate(values.items()):
        y = i * row_h
        w = (WIDTH - name_w - 90) * value / top
        cls = (classes or {}).get(name, "bar")
        parts.append(f'<text class="tick" x="0" y="{y + 17}">{escape(name)}</text>'
                     f'<rect class="{cls}" x="{name_w}" y="{y + 4}" width="{max(w, 1):.1f}" '
                     f'height="{row_h - 8}"/>'
                     f'<text class="tick" x="{name_w + w + 6:.1f}" y="{y + 17}">'
                     f'{value:g}{escape(unit)}</text>')
    if not values:
        parts.append('<text class="tick" x="0" y="17">no data yet</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def lines(series: dict[str, list[dict]], field: str, label: str, unit: str,
          now: float | None = None, minutes: int = 60) -> Markup:
    """One line per name over the last `minutes` minutes; a dot (with its figure) per point."""
    end = (int((now if now is not None else time.time()) // 60) + 1) * 60
    start = end - minutes * 60
    points = {name: [p for p in pts if p.get(field) is not None and p["at"] >= start]
              for name, pts in series.items()}
    top = _nice_max(max((p[field] for pts in points.values() for p in pts), default=0))
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM
    latest = ", ".join(f"{name} {pts[-1][field]:g}{unit} now" for name, pts in points.items()
                       if pts) or "no data yet"
    parts = [f'<svg class="chart lines" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(label)} over the last {minutes} minutes: '
             f'{escape(latest)}">', _axis(top, plot_h)]
    for n, (name, pts) in enumerate(points.items()):
        xy = [(PAD_LEFT + plot_w * (p["at"] - start + 30) / (end - start),
               plot_h - plot_h * p[field] / top, p) for p in pts]
        if len(xy) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in xy)
            parts.append(f'<polyline class="line line{n % 4}" points="{path}"/>')
        for x, y, p in xy:
            at = time.strftime("%H:%M", time.gmtime(p["at"]))
            tip = f"{name} at {at} UTC: {p[field]:g}{unit}"
            parts.append(f'<circle class="dot line{n % 4}" data-series="{escape(name)}" '
                         f'cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{escape(tip)}</title>'
                         f'</circle>')
    if not any(points.values()):
        parts.append(f'<text class="tick" x="{PAD_LEFT + 8}" y="20">no data yet</text>')
    first = time.strftime("%H:%M", time.gmtime(start))
    last = time.strftime("%H:%M", time.gmtime(end - 60))  # the current minute, as per_minute
    parts.append(f'<text class="tick" x="{PAD_LEFT}" y="{HEIGHT - 4}">{first}</text>'
                 f'<text class="tick" x="{WIDTH}" y="{HEIGHT - 4}" '
                 f'text-anchor="end">{last} UTC</text></svg>')
    return Markup("".join(parts))


def latencies(per_minute: list[dict]) -> dict[str, list[dict]]:
    """The router's per-minute p50 and p95 as two series for `lines`."""
    return {name: [{"at": p["at"], "ms": p[f"{name}_ms"]} for p in per_minute
                   if p.get(f"{name}_ms") is not None] for name in ("p50", "p95")}
