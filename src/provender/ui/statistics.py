# ruff: noqa: E501 - HTML templates read better unwrapped
"""The statistics page: per feature the statistics a job recorded, charted, and the drift between two chosen jobs.

Charts are inline SVG with their numbers as text too: a histogram has labelled axes (the
feature's values on x, counts on y), each bar a tooltip, and the same bins in a table behind a
"Show as a table" disclosure; top values are a table with a bar per count. A screen reader
reads the table, and a reader of the page sees the axes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from provender.offline.drift import compare
from provender.offline.statistics import QUANTILES, TableStatistics
from provender.registry.jobs import JobRecord
from provender.registry.store import RegistrySnapshot
from provender.ui.html import e, empty, error_box, u, when

Page = tuple[str, str, str]

# The histogram's drawing: a plot area inside margins (left for the count labels, bottom for the values).
_W, _H = 380, 190
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 12, 12, 48
_X_TICKS = 4  # value labels at 5 edges: first, quarters, last
MAX_JOBS = 200  # the newest jobs with statistics offered as current and baseline


def statistics(  # noqa: PLR0913 - the page's inputs
    snapshot: RegistrySnapshot,
    name: str,
    jobs: Sequence[JobRecord],
    tabs: str,
    crumbs: str,
    *,
    current: str | None = None,
    against: str | None = None,
) -> Page:
    """The statistics recorded by a job of the table (the latest, or ``current``), and the drift against ``against``."""
    title = f"Statistics · {name}"
    recorded = [j for j in jobs if j.statistics][:MAX_JOBS]  # newest first
    if not recorded:
        body = empty(
            "No statistics recorded for this table yet.",
            "Run an ingestion (each one records the statistics of the rows it writes), or compute them: "
            f"<code>client.get_statistics(&quot;{e(name)}&quot;, start=..., end=...)</code>.",
        )
        return title, f"<h1>Statistics · {e(name)}</h1>{tabs}{body}", crumbs
    problems = []
    shown = recorded[0]
    if current is not None:
        chosen = next((j for j in recorded if j.id == current), None)
        if chosen is None:
            problems.append(
                f"No job {current!r} among the {len(recorded)} newest with statistics for this table; showing the latest."
            )
        else:
            shown = chosen
    base = None
    if against is not None:
        base = next((j for j in recorded if j.id == against), None)
        if base is None:
            problems.append(
                f"No job {against!r} among the {len(recorded)} newest with statistics for this table to compare with."
            )
        elif base.id == shown.id:
            problems.append("The baseline and the current job are the same job: choose two different jobs.")
            base = None
    project = snapshot.project
    job_link = f'<a href="{u("projects", project, "jobs", shown.id)}">{e(shown.id)}</a>'
    body = (
        f"{''.join(error_box(p) for p in problems)}<p>Recorded by job {job_link} ({when(shown.created_at)})"
        f"{_window(shown.statistics or {})}.</p>{_form(recorded, shown, base)}"
    )
    if base is not None:
        body += _drift(base, shown)
    body += "".join(feature_card(f) for f in _stat_features(shown.statistics or {}))
    return title, f"<h1>Statistics · {e(name)}</h1>{tabs}{body}", crumbs


def _window(stats: Mapping[str, object]) -> str:
    start, end, rows = stats.get("start"), stats.get("end"), stats.get("rows")
    try:
        window = f", rows with event times from {when(_time(start))} to {when(_time(end))}"
    except (TypeError, ValueError):
        return ""
    return window + (f", {rows:,} rows" if isinstance(rows, int) else "")


def _time(value: object) -> datetime:
    if not isinstance(value, str):
        raise TypeError(value)
    return datetime.fromisoformat(value)


def _option(job: JobRecord, selected: bool) -> str:
    stamp = job.created_at.strftime("%Y-%m-%d %H:%M:%S")
    return f'<option value="{e(job.id)}"{" selected" if selected else ""}>{e(job.id)} · {e(stamp)}</option>'


def _form(recorded: Sequence[JobRecord], shown: JobRecord, base: JobRecord | None) -> str:
    """Two lists of the jobs with statistics: the current job (shown) and the baseline to compare with."""
    if len(recorded) < 2:
        return '<p class="muted">Drift: no other job with statistics to compare with yet (run another ingestion).</p>'
    index = next(i for i, j in enumerate(recorded) if j.id == shown.id)
    default_base = base or (recorded[index + 1] if index + 1 < len(recorded) else recorded[index - 1])
    currents = "".join(_option(j, j.id == shown.id) for j in recorded)
    bases = "".join(_option(j, j.id == default_base.id) for j in recorded)
    return (
        '<form class="card drift-form" method="get"><fieldset><legend>Drift between two jobs</legend>'
        f'<label for="against">Baseline job</label> <select id="against" name="against">{bases}</select> '
        f'<label for="current">Current job</label> <select id="current" name="current">{currents}</select> '
        '<button type="submit">Compare</button></fieldset></form>'
    )


def _drift(base: JobRecord, current: JobRecord) -> str:
    report = compare(
        TableStatistics.from_dict(base.statistics or {}), TableStatistics.from_dict(current.statistics or {})
    )
    rows = "".join(
        f"<tr><th scope=row>{e(f.name)}</th><td>{_number(f.psi)}</td><td>{_number(f.js_distance)}</td>"
        f"<td>{'<strong class=status-FAILED>drifted</strong>' if f.drifted else e(f.note) or 'ok'}</td></tr>"
        for f in report.features
    )
    order = (
        "" if base.created_at <= current.created_at else ' <span class="muted">(the baseline is the newer job)</span>'
    )
    return (
        f'<h2>Drift of {e(current.id)} against {e(base.id)}{order}</h2><div class="scroll" tabindex="0" role="region" aria-label="Drift per feature"><table class="list" id="drift">'
        "<caption class=skip>Drift per feature</caption><thead><tr><th>Feature</th><th>PSI</th>"
        f"<th>Jensen-Shannon distance</th><th>Verdict (PSI &ge; {report.psi_threshold:g} or JS &ge; "
        f"{report.js_threshold:g} is drift)</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )


def _number(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "&mdash;" if value is None else e(value)


def _stat_features(stats: Mapping[str, object]) -> list[Mapping[str, object]]:
    features = stats.get("features")
    return [f for f in features if isinstance(f, Mapping)] if isinstance(features, list) else []


def feature_card(f: Mapping[str, object]) -> str:
    """One feature's recorded statistics as a card: its numbers, quantiles and chart."""
    keys = ("count", "null_count", "nan_count", "mean", "std", "min", "max", "zeros", "distinct_count",
            "min_length", "max_length", "mean_length")  # fmt: skip
    cells = "".join(f"<dt>{k}</dt><dd>{_number(f[k])}</dd>" for k in keys if f.get(k) is not None)
    quantiles = f.get("quantiles")
    if isinstance(quantiles, list) and len(quantiles) == len(QUANTILES):
        values = " · ".join(f"p{100 * q:g} {_number(v)}" for q, v in zip(QUANTILES, quantiles, strict=True))
        cells += f"<dt>quantiles</dt><dd>{values}</dd>"
    name = str(f.get("name"))
    chart = ""
    histogram = f.get("histogram")
    if (
        isinstance(histogram, Mapping)
        and isinstance(histogram.get("counts"), list)
        and isinstance(histogram.get("edges"), list)
    ):
        chart = histogram_chart(name, [float(x) for x in histogram["edges"]], [int(c) for c in histogram["counts"]])
    top_values = f.get("top_values")
    if isinstance(top_values, list) and top_values:
        pairs = [(str(v[0]), int(v[1])) for v in top_values if isinstance(v, list | tuple) and len(v) == 2]
        chart = top_values_chart(name, pairs)
    return f'<section class="card" id="stats-{e(name)}" aria-labelledby="h-{e(name)}"><h2 id="h-{e(name)}">{e(name)}</h2><dl>{cells}</dl>{chart}</section>'


def _label(value: float) -> str:
    return f"{value:.4g}"


def histogram_chart(name: str, edges: Sequence[float], counts: Sequence[int]) -> str:
    """An SVG histogram with labelled axes (``name``'s values on x, counts on y) and the bins as a table."""
    if not counts or len(edges) != len(counts) + 1:
        return ""
    top = max(counts) or 1
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    bar_w = plot_w / len(counts)
    base_y = _TOP + plot_h
    parts = []
    for i, count in enumerate(counts):
        height = plot_h * count / top
        parts.append(
            f'<rect class="bar" x="{_LEFT + i * bar_w + 0.5:.1f}" y="{base_y - height:.1f}" width="{max(bar_w - 1, 0.5):.1f}" '
            f'height="{height:.1f}"><title>{e(_label(edges[i]))} to {e(_label(edges[i + 1]))}: {count:,}</title></rect>'
        )
    for tick in (0, top // 2, top) if top > 1 else (0, top):  # y: counts, with grid lines
        y = base_y - plot_h * tick / top
        parts.append(f'<line class="grid" x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick y-tick" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick:,}</text>')
    bins = len(counts)
    positions = sorted({round(bins * k / _X_TICKS) for k in range(_X_TICKS + 1)})
    for index in positions:  # x: the feature's values at bin edges
        x = _LEFT + index * bar_w
        anchor = "start" if index == 0 else "end" if index == bins else "middle"
        parts.append(f'<line class="axis" x1="{x:.1f}" y1="{base_y}" x2="{x:.1f}" y2="{base_y + 4}"/>')
        parts.append(
            f'<text class="tick x-tick" x="{x:.1f}" y="{base_y + 16}" text-anchor="{anchor}">{e(_label(edges[index]))}</text>'
        )
    parts.append(f'<line class="axis" x1="{_LEFT}" y1="{base_y}" x2="{_W - _RIGHT}" y2="{base_y}"/>')
    parts.append(f'<line class="axis" x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{base_y}"/>')
    parts.append(
        f'<text class="axis-title x-title" x="{_LEFT + plot_w / 2:.1f}" y="{_H - 8}" text-anchor="middle">{e(name)} (value)</text>'
    )
    parts.append(
        f'<text class="axis-title y-title" x="14" y="{_TOP + plot_h / 2:.1f}" text-anchor="middle" transform="rotate(-90 14 {_TOP + plot_h / 2:.1f})">count</text>'
    )
    label = (
        f"Histogram of {name}: {bins} bins of values from {_label(edges[0])} to {_label(edges[-1])} on the x axis, "
        f"counts from 0 to {max(counts):,} on the y axis"
    )
    rows = "".join(
        f"<tr><td>{e(_label(edges[i]))} to {e(_label(edges[i + 1]))}{']' if i == bins - 1 else ')'}</td><td>{c:,}</td></tr>"
        for i, c in enumerate(counts)
    )
    return (
        f'<figure class="chart"><svg class="histogram" role="img" aria-label="{e(label)}" viewBox="0 0 {_W} {_H}" '
        f'width="{_W}" height="{_H}">{"".join(parts)}</svg>'
        f"<figcaption><details><summary>Show the histogram of {e(name)} as a table</summary>"
        f'<table class="list small"><caption class=skip>Histogram of {e(name)}</caption><thead><tr>'
        f"<th scope=col>{e(name)} (value range)</th><th scope=col>Count</th></tr></thead><tbody>{rows}</tbody></table>"
        "</details></figcaption></figure>"
    )


def top_values_chart(name: str, pairs: Sequence[tuple[str, int]]) -> str:
    """The most frequent values of ``name`` as a table: value, count, and a bar for the count."""
    if not pairs:
        return ""
    top = max(c for _, c in pairs) or 1
    rows = "".join(
        f'<tr><th scope="row"><code>{e(v)}</code></th><td>{c:,}</td><td><svg class="hbar" aria-hidden="true" '
        f'viewBox="0 0 100 10" width="160" height="10"><rect width="{100 * c / top:.1f}" height="10"/></svg></td></tr>'
        for v, c in pairs
    )
    return (
        f'<table class="list top-values"><caption>Most frequent values of {e(name)}</caption><thead><tr>'
        f"<th scope=col>Value</th><th scope=col>Count</th><th scope=col><span class=skip>Bar</span></th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
