"""The status page as one self-contained HTML document (inline CSS and SVG; no script, CDN or web font).

It refreshes itself every few seconds while files are in flight and less often when idle. Elements carry
``data-*`` attributes (stage, request id, ISO times) so tests and scripts can read values without parsing text.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from shared.contracts import parse_iso
from shared.status import STAGES, Minute, Snapshot, Timeline

REFRESH_FLOWING_SECONDS = 3
REFRESH_IDLE_SECONDS = 15

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f4f6f8;
color:#1d2329;font-size:14px}
header{background:#17324d;color:#fff;padding:12px 24px;display:flex;justify-content:space-between;align-items:baseline}
header h1{font-size:20px;margin:0}header a{color:#cfe3ff}
main{max-width:1280px;margin:0 auto;padding:16px 24px;display:grid;grid-template-columns:1fr 1fr;gap:16px}
section{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
section.wide{grid-column:1 / span 2}
h2{font-size:15px;margin:0 0 8px;color:#17324d}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e6e9ed;
vertical-align:top}th{font-weight:600;color:#4a5560;font-size:12px;text-transform:uppercase}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{flex:1;min-width:120px;background:#f7f9fb;border-radius:6px;
padding:8px 12px}.card b{display:block;font-size:24px}.card span{color:#4a5560;font-size:12px}
.ok{color:#1a7f37}.bad{color:#c62828}.muted{color:#7a8590}.time{font-variant-numeric:tabular-nums;white-space:nowrap}
.delta{color:#7a8590;font-size:11px;display:block}.name{word-break:break-all;max-width:320px}
svg text{font-size:11px;fill:#4a5560}
"""


def _time(value: str | None) -> str:
    if not value:
        return ""
    try:
        return parse_iso(value).strftime("%H:%M:%S.%f")[:-3]
    except ValueError:
        return value


def _seconds(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    try:
        return (parse_iso(b) - parse_iso(a)).total_seconds()
    except ValueError:
        return None


def _fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _millis(value: float | None) -> str:
    return "" if value is None else f"{value:.0f} ms"


def _timeline_row(item: Timeline, key_query: str) -> str:
    cells = []
    previous: str | None = None
    for stage in STAGES:
        at = item.times.get(stage)
        delta = _seconds(previous, at) if previous else None
        delta_html = f'<span class="delta">+{_fmt_seconds(delta)}</span>' if delta is not None else ""
        cells.append(
            f'<td class="time" data-stage="{stage}" data-time="{escape(at or "")}">{_time(at)}{delta_html}</td>'
        )
        previous = at or previous
    state_class = "ok" if item.state == "succeeded" else "bad" if item.state == "failed" else ""
    state = escape(item.state)
    if item.error_code:
        link = f"status/errors/{quote(item.request_id)}{key_query}"
        state += f' (<a href="{escape(link)}">{escape(item.error_code)}</a>)'
    rows = (
        ""
        if item.rows_scored is None
        else f"{item.rows_scored}" + (f" / {item.rows_failed} bad" if item.rows_failed else "")
    )
    return (
        f'<tr data-request-id="{escape(item.request_id)}" data-state="{escape(item.state)}">'
        f'<td class="name">{escape(item.input_name)}<span class="delta">{escape(item.model)}</span></td>'
        f'<td class="{state_class}">{state}</td><td class="num">{escape(rows)}</td>{"".join(cells)}</tr>'
    )


def _chart(minutes: list[Minute]) -> str:
    """Files per minute (bars, left axis) and p50 latency (line, right axis) over the last hour."""
    width, height, left, right, top, bottom = 1180, 200, 44, 56, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    most = max([m.files for m in minutes] + [1])
    slowest = max([m.p50_seconds or 0.0 for m in minutes] + [0.001])
    step = plot_w / max(len(minutes), 1)
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="throughput and latency">']
    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e9ed"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{most * fraction:.0f}</text>')
        parts.append(f'<text x="{width - right + 6}" y="{y + 4:.1f}">{_fmt_seconds(slowest * fraction)}</text>')
    points = []
    for i, minute in enumerate(minutes):
        x = left + i * step
        bar = plot_h * minute.files / most
        failed = plot_h * minute.failed / most
        title = f"{minute.start}: {minute.files} files, p50 {_fmt_seconds(minute.p50_seconds)}"
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{top + plot_h - bar:.1f}" width="{max(step - 2, 1):.1f}" height="{bar:.1f}"'
            f' fill="#5b8fd1" data-files="{minute.files}"><title>{escape(title)}</title></rect>'
        )
        if failed:
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{top + plot_h - failed:.1f}" width="{max(step - 2, 1):.1f}"'
                f' height="{failed:.1f}" fill="#e57373"/>'
            )
        if minute.p50_seconds is not None:
            points.append(f"{x + step / 2:.1f},{top + plot_h * (1 - minute.p50_seconds / slowest):.1f}")
    if points:
        parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="#e08a00" stroke-width="2"/>')
    for i in (0, 15, 30, 45, 59):
        if i < len(minutes):
            label = minutes[i].start[11:16]
            parts.append(f'<text x="{left + i * step:.1f}" y="{height - 8}">{label}</text>')
    parts.append("</svg>")
    parts.append(
        '<p class="muted">Bars: files finished per minute (left axis; red: failed). '
        "Line: median time from the trigger picking a file up to its output or error record (right axis).</p>"
    )
    return "".join(parts)


def render(snapshot: Snapshot, key_query: str = "") -> str:
    """``key_query`` (``?code=...`` or empty) is appended to the page's own links."""
    refresh = REFRESH_FLOWING_SECONDS if snapshot.flowing else REFRESH_IDLE_SECONDS
    totals = snapshot.totals
    in_flight_total = sum(snapshot.in_flight.values())
    cards = [
        ("in flight", in_flight_total, "in-flight"),
        ("succeeded", totals.get("succeeded", 0), "succeeded"),
        ("failed", totals.get("failed", 0), "failed"),
        ("finished, last hour", snapshot.window_files, "window-files"),
        ("p50 trigger to output, last hour", _fmt_seconds(snapshot.window_p50_seconds), "window-p50"),
    ]
    cards_html = "".join(
        f'<div class="card" data-card="{kind}"><b>{escape(str(value))}</b><span>{escape(label)}</span></div>'
        for label, value, kind in cards
    )
    flight_rows = "".join(
        f'<tr data-stage="{escape(stage)}"><td>{escape(stage)}</td>'
        f'<td class="num" data-count="{count}">{count}</td></tr>'
        for stage, count in snapshot.in_flight.items()
    )
    timeline_rows = "".join(_timeline_row(item, key_query) for item in snapshot.recent) or (
        '<tr><td colspan="8" class="muted">no files yet</td></tr>'
    )
    error_rows = (
        "".join(
            f'<tr data-error-code="{escape(group.code)}"><td>{escape(group.code)}</td>'
            f'<td class="num" data-count="{group.count}">{group.count}</td><td>'
            + "<br>".join(
                f'<a href="{escape(f"status/errors/{quote(rid)}{key_query}")}" data-request-id="{escape(rid)}">'
                f"{escape(name)}</a>"
                for rid, name in group.latest
            )
            + "</td></tr>"
            for group in snapshot.errors
        )
        or '<tr><td colspan="3" class="muted">no errors</td></tr>'
    )
    sb_rows = "".join(
        f'<tr data-subscription="{escape(d.topic)}/{escape(d.subscription)}"><td>{escape(d.topic)}</td>'
        f'<td>{escape(d.subscription)}</td><td class="num" data-active="{d.active}">{d.active}</td>'
        f'<td class="num {"bad" if d.dead_lettered else ""}" data-dead-lettered="{d.dead_lettered}">'
        f"{d.dead_lettered}</td></tr>"
        for d in snapshot.subscriptions
    )
    if snapshot.subscriptions_error:
        sb_rows += f'<tr><td colspan="4" class="bad">Service Bus: {escape(snapshot.subscriptions_error)}</td></tr>'
    endpoint_rows = "".join(
        f'<tr data-model="{escape(e.model)}" data-healthy="{str(e.healthy).lower()}"><td>{escape(e.model)}</td>'
        f'<td class="{"ok" if e.healthy else "bad"}">{"up" if e.healthy else "down"}</td>'
        f'<td>{escape(e.detail)}</td><td class="num">{_millis(e.latency_ms)}</td></tr>'
        for e in snapshot.endpoints
    )
    stage_heads = "".join(f"<th>{stage}</th>" for stage in STAGES)
    generated = _time(snapshot.generated_at)
    json_link = escape("status" + (key_query + "&" if key_query else "?") + "format=json")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{refresh}">
<title>Inference pipeline status</title><style>{_CSS}</style></head>
<body data-generated-at="{escape(snapshot.generated_at)}" data-flowing="{str(snapshot.flowing).lower()}">
<header><h1>Inference pipeline</h1><div>updated {generated} UTC, every {refresh} s &middot;
<a href="{json_link}">JSON</a></div></header>
<main>
<section class="wide"><div class="cards">{cards_html}</div></section>
<section id="in-flight"><h2>In flight by stage</h2><table><tr><th>stage</th><th>files</th></tr>{flight_rows}</table>
</section>
<section id="endpoints"><h2>Model routes: endpoint health</h2><table><tr><th>model</th><th>state</th><th>detail</th>
<th>probe</th></tr>{endpoint_rows}</table></section>
<section class="wide" id="chart"><h2>Last hour: files finished per minute and latency</h2>{_chart(snapshot.minutes)}
</section>
<section class="wide" id="recent"><h2>Latest files</h2><table><tr><th>file</th><th>state</th><th>rows</th>
{stage_heads}</tr>{timeline_rows}</table></section>
<section id="errors"><h2>Errors by code</h2><table><tr><th>code</th><th>files</th><th>latest error records</th></tr>
{error_rows}</table></section>
<section id="servicebus"><h2>Service Bus subscriptions</h2><table><tr><th>topic</th><th>subscription</th>
<th>active</th><th>dead-lettered</th></tr>{sb_rows}</table></section>
</main></body></html>
"""
