"""A backtest as one self-contained HTML page (`truthloop backtest --html FILE`).

The page is framed as the alert reports are (`report.page`): it reads nothing from anywhere
(inline CSS, script and SVG; a Content-Security-Policy that lets it load nothing), so it opens
the same offline or attached to a ticket. Its timeline chart
draws, over the backtest's period, each metric line the backtest carries (`timeline.Line`) with
its alert's threshold, and below them each alert's firing periods and the fallback's episodes on
lanes. Then the episodes with the metrics around each, the rules against the model on the records
of the episodes (`rulehistory`), the alerts, and a sweep's candidates with the Pareto front
marked.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Sequence

from truthloop.core import report
from truthloop.core.backtest import Backtest, BacktestResult, Episode, Figure, Period
from truthloop.core.metrics import Estimate
from truthloop.core.rulehistory import RulesVsModel
from truthloop.core.spec import format_duration, format_time
from truthloop.core.timeline import Line

MAX_ROWS = 500
"""Rows of a table at most (episodes, sweep candidates); the rest is counted."""

WIDTH, LANE, PLOT, LEFT, RIGHT = 1000, 22, 160, 150, 20


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}g}"


def _signed(x: float | None) -> str:
    return "—" if x is None else f"{x:+.3g}"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _figure(f: Figure | None) -> str:
    if f is None or f.value is None:
        return "—"
    bounds = ""
    if f.lower is not None and f.upper is not None:
        bounds = f" <span class=dim>[{_num(f.lower)}, {_num(f.upper)}]</span>"
    return f"{_num(f.value)}{bounds} <span class=dim>n={f.samples}</span>"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], klass: str = "") -> str:
    """A sortable table of at most `MAX_ROWS` rows; `rows` hold HTML already escaped."""
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = []
    for row in rows[:MAX_ROWS]:
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    more = len(rows) - MAX_ROWS
    tail = f"<p class=dim>… and {more} more not shown.</p>" if more > 0 else ""
    cls = f' class="{klass}"' if klass else ""
    return (
        f'<table{cls} data-sortable="1"><thead><tr>{th}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{tail}"
    )


# -- the timeline --------------------------------------------------------------------------------


def _x(at: float, period: Period) -> float:
    span = max(period.seconds, 1.0)
    return LEFT + (WIDTH - LEFT - RIGHT) * min(max((at - period.start) / span, 0.0), 1.0)


def _bar(period: Period, whole: Period, y: float, klass: str, title: str) -> str:
    x0, x1 = _x(period.start, whole), _x(period.end, whole)
    return (
        f'<rect class="{klass}" x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 1.5):.1f}" '
        f'height="{LANE - 6}"><title>{_e(title)}</title></rect>'
    )


def _span_text(p: Period) -> str:
    end = "the end (still on)" if p.open else format_time(p.end)
    return f"{format_time(p.start)} to {end}, {format_duration(p.seconds)}"


def _lines_svg(lines: Sequence[Line], whole: Period, top: float) -> str:
    """Each line in the plot area from `top`, one shared value axis (the lines' and thresholds'
    range), its threshold dashed."""
    seen = [v for line in lines for v in line.values if v is not None]
    seen += [line.threshold for line in lines if line.threshold is not None]
    if not seen:
        return ""
    low, high = min(seen), max(seen)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    pad = (high - low) * 0.05
    low, high = low - pad, high + pad

    def y(v: float) -> float:
        return top + PLOT * (1 - (v - low) / (high - low))

    parts = [
        f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" class="tick end">{_num(v)}</text>'
        for v in (high - pad, low + pad)
    ]
    for n, line in enumerate(lines):
        klass = f"line c{n % 4}"
        runs: list[list[str]] = [[]]
        for at, v in zip(line.times, line.values, strict=True):
            if v is None:
                runs.append([])
            else:
                runs[-1].append(f"{_x(at, whole):.1f},{y(v):.1f}")
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                parts.append(f'<circle class="{klass}" cx="{cx}" cy="{cy}" r="1.5"/>')
            elif run:
                parts.append(f'<polyline class="{klass}" points="{" ".join(run)}"/>')
        if line.threshold is not None:
            ty = y(line.threshold)
            side = "below" if line.below else "above"
            parts.append(
                f'<line class="threshold c{n % 4}" x1="{LEFT}" x2="{WIDTH - RIGHT}" '
                f'y1="{ty:.1f}" y2="{ty:.1f}"><title>{_e(line.key)}: fires {side} '
                f"{_num(line.threshold)}</title></line>"
            )
        parts.append(
            f'<text x="{LEFT + 4 + 150 * n}" y="{top - 4}" class="legend c{n % 4}">'
            f"{_e(line.key)}</text>"
        )
    return "".join(parts)


def timeline(result: BacktestResult, lines: Sequence[Line] = ()) -> str:
    """The period as an inline SVG: the metric lines, then a lane per alert (its firing periods)
    and the fallback's lane (its episodes), a time axis below."""
    whole = result.period
    top = 24.0
    parts = []
    if lines and any(v is not None for line in lines for v in line.values):
        parts.append(_lines_svg(lines, whole, top))
        top += PLOT + 16
    lanes: list[tuple[str, str, list[tuple[Period, str]]]] = [
        (
            f"alert {a.name}",
            "firing",
            [(p, f"{a.name} firing {_span_text(p)}") for p in a.firing],
        )
        for a in result.alerts
    ]
    lanes.append(
        (
            "fallback",
            "engaged",
            [
                (e.period, f"fallback engaged {_span_text(e.period)}: {e.reason}")
                for e in result.episodes
            ],
        )
    )
    for n, (name, klass, bars) in enumerate(lanes):
        y = top + n * LANE
        parts.append(
            f'<rect class="lane" x="{LEFT}" y="{y:.1f}" width="{WIDTH - LEFT - RIGHT}" '
            f'height="{LANE - 6}"/><text x="{LEFT - 6}" y="{y + LANE - 10:.1f}" '
            f'class="name end">{_e(name)}</text>'
        )
        parts += [_bar(p, whole, y, klass, title) for p, title in bars]
    axis = top + len(lanes) * LANE + 4
    ticks = 6
    for i in range(ticks + 1):
        at = whole.start + whole.seconds * i / ticks
        x = _x(at, whole)
        anchor = "start" if i == 0 else "end" if i == ticks else "middle"
        parts.append(
            f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{axis - 4:.1f}" y2="{axis:.1f}"/>'
            f'<text x="{x:.1f}" y="{axis + 14:.1f}" class="tick" text-anchor="{anchor}">'
            f"{_e(_tick(at))}</text>"
        )
    height = axis + 22
    return (
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {height:.0f}" width="{WIDTH}" '
        f'height="{height:.0f}" role="img" aria-label="timeline">{"".join(parts)}</svg>'
    )


def _tick(at: float) -> str:
    """A time axis label: month-day and minute, UTC (the header gives the years)."""
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%m-%d %H:%M")


# -- the sections ---------------------------------------------------------------------------------


def _summary(result: BacktestResult) -> str:
    episodes = len(result.episodes) + result.episodes_omitted
    share = result.fallback_seconds / result.period.seconds if result.period.seconds else None
    return (
        f"{episodes} episode{'s' if episodes != 1 else ''} of fallback, engaged "
        f"{format_duration(result.fallback_seconds)} ({_pct(share)} of the period) and answering "
        f"{_pct(result.fallback_share)} of the model's {result.predictions} predictions; "
        f"{result.engagements_per_day:.2f} engagements a day"
    )


def _episodes_html(episodes: Sequence[Episode], omitted: int = 0) -> str:
    if not episodes:
        return (
            '<section id="episodes"><h2>Episodes</h2><p>The fallback would not have engaged.'
            "</p></section>"
        )
    keys = sorted({k for e in episodes for k in e.metrics})
    head = ["engaged", "released", "for", "predictions", "why"]
    for key in keys:
        head += [f"{key} before", f"{key} during", f"{key} after"]
    rows = []
    for e in episodes:
        p = e.period
        row = [
            _e(format_time(p.start)),
            "still on at the end" if p.open else _e(format_time(p.end)),
            _e(format_duration(p.seconds)),
            str(e.predictions),
            _e(e.reason),
        ]
        for key in keys:
            around = e.metrics.get(key)
            row += (
                [_figure(around.before), _figure(around.during), _figure(around.after)]
                if around
                else ["—"] * 3
            )
        rows.append(row)
    more = f"<p class=dim>… and {omitted} later ones the answer leaves out.</p>" if omitted else ""
    return f'<section id="episodes"><h2>Episodes</h2>{_table(head, rows)}{more}</section>'


def _alerts_html(result: BacktestResult) -> str:
    rows = [
        [
            _e(a.name),
            f"<code>{_e(a.key)}</code>",
            str(len(a.firing) + a.firing_omitted),
            _e(format_duration(sum(p.seconds for p in a.firing)))
            + (f" <span class=dim>(the first {len(a.firing)})</span>" if a.firing_omitted else ""),
            str(a.pendings),
        ]
        for a in result.alerts
    ]
    table = _table(["alert", "reads", "fired", "firing for", "went pending"], rows)
    unread = ""
    if result.unread:
        unread = (
            f"<p class=dim>Not replayed (no input from the stored minutes): "
            f"{_e(', '.join(result.unread))}.</p>"
        )
    return f'<section id="alerts"><h2>Alerts</h2>{table}{unread}</section>'


def _rules_html(rules: RulesVsModel | None) -> str:
    """The rules against the model (`rulehistory.RulesVsModel`), or why there is no comparison."""
    if rules is None:
        return ""
    metric = rules.metric
    model, mine = rules.model.get(metric), rules.rules.get(metric)
    diff = rules.difference

    def shown(e: Estimate | None) -> str:
        if e is None or e.value is None:
            return "—"
        if e.lower is None or e.upper is None:
            return _num(e.value)
        return f"{_num(e.value)} <span class=dim>[{_num(e.lower)}, {_num(e.upper)}]</span>"

    verdict = {"better": "the rules did better", "worse": "the rules did worse"}
    said = verdict.get(diff.verdict, "can't tell") if diff is not None else "no records"
    rows = [
        ["model", shown(model)],
        ["rules", shown(mine)],
        [
            "rules − model",
            "—"
            if diff is None or diff.difference is None
            else f"{diff.difference:+.3g} <span class=dim>[{_signed(diff.lower)}, "
            f"{_signed(diff.upper)}]</span> <b>{_e(said)}</b>",
        ],
    ]
    skipped = "".join(f"<li>{s.records} {_e(s.reason)}: {_e(s.detail)}</li>" for s in rules.skipped)
    by_rule = ", ".join(f"rules[{i}] {n}" for i, n in enumerate(rules.by_rule))
    sample = ""
    if rules.sample < 1:
        sample = (
            f" (a uniform sample of {_pct(rules.sample)} drawn by prediction ID, "
            f"{rules.sampled_out} left out)"
        )
    return (
        f'<section id="rules"><h2>Rules against the model in the episodes</h2>'
        f"<p>{rules.compared} of {rules.records} labeled records judged on both sides{sample} "
        f"({_e(metric)}, 95% intervals); answers by rule: {_e(by_rule) or 'none'}; "
        f"{rules.no_rule} no rule answered (the model did).</p>"
        f"{_table(['', metric], rows)}"
        + (f"<p>Left out:</p><ul>{skipped}</ul>" if skipped else "")
        + "</section>"
    )


def _sweep_html(backtest: Backtest) -> str:
    sweep = backtest.sweep
    parts = []
    if sweep is not None and sweep.candidates:
        names = list(sweep.candidates[0].values)
        rows = []
        for c in sweep.candidates:
            s = c.score
            rows.append(
                [
                    *(_num(c.values.get(n), 6) for n in names),
                    str(s.false_engagements),
                    f"{s.detected} of {s.degradations}",
                    "—" if s.mean_delay is None else _e(format_duration(s.mean_delay)),
                    _e(format_duration(s.fallback_seconds)),
                    '<b class="pareto">★</b>' if c.pareto else "",
                ]
            )
        head = [*names, "false engagements", "detected", "mean delay", "in fallback", "Pareto"]
        parts.append(
            f'<section id="sweep"><h2>Sweep</h2><p class=dim>scored on {_e(sweep.metric)} '
            f"(target {_num(sweep.target)}); ★ on the Pareto front</p>"
            f"{_table(head, rows, 'sweep')}</section>"
        )
    if backtest.suggestions:
        items = "".join(
            f"<li><code>alerts[{_e(s.alert)}].{_e(s.field)}={_num(s.value, 6)}</code>: "
            f"{_e(s.why)}</li>"
            for s in backtest.suggestions
        )
        parts.append(f'<section id="suggest"><h2>Suggested</h2><ul>{items}</ul></section>')
    return "".join(parts)


STYLE = """
.verdict{font-size:1.1em;font-weight:600}
svg.timeline{max-width:100%;height:auto}
svg .lane{fill:#f6f8fa}svg .firing{fill:#cf222e}svg .engaged{fill:#bf8700}
svg text{font-size:11px;fill:#1b1f24}svg text.end{text-anchor:end}svg .axis{stroke:#656d76}
svg .tick{fill:#656d76}svg .line{fill:none;stroke-width:1.5}svg circle.line{stroke-width:0}
svg .threshold{stroke-dasharray:4 3;stroke-width:1}
svg .c0{stroke:#0969da;fill:#0969da}svg .c1{stroke:#8250df;fill:#8250df}
svg .c2{stroke:#1a7f37;fill:#1a7f37}svg .c3{stroke:#57606a;fill:#57606a}
svg polyline.line{fill:none}svg text.legend{stroke:none}
.pareto{color:#1a7f37}
"""
"""The timeline's and the sweep's style, added to the reports' (`report.STYLE`)."""


def render(backtest: Backtest) -> str:
    """`backtest` as one self-contained HTML page."""
    result = backtest.result
    p = result.period
    transitions = len(result.transitions) + result.transitions_omitted
    sections = [
        f"<header><h1>{_e(result.monitor)}: backtest</h1>"
        f'<p class="verdict">{_e(_summary(result))}</p>'
        f"<p class=dim>{_e(format_time(p.start))} to {_e(format_time(p.end))} "
        f"({_e(format_duration(p.seconds))}, {result.minutes} minutes stepped); window "
        f"{_e(format_duration(result.window))}; transitions: {transitions}; times are UTC</p>"
        "</header>",
        f'<section id="timeline"><h2>Timeline</h2>{timeline(result, backtest.lines)}</section>',
        _episodes_html(result.episodes, result.episodes_omitted),
        _rules_html(backtest.rules),
        _alerts_html(result),
        _sweep_html(backtest),
    ]
    title = f"{result.monitor}: backtest {format_time(p.start)} to {format_time(p.end)}"
    return report.page(title, "".join(sections), "backtest", STYLE)
