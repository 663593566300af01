# ruff: noqa: E501 - HTML templates read better unwrapped
"""The UI's pages: each function returns ``(title, body, breadcrumbs)`` HTML for :func:`~provender.ui.html.frame`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from provender.definitions import FeatureTable, OnDemandFeatures
from provender.definitions.jobs import JobStatus
from provender.registry.jobs import JobRecord
from provender.registry.store import ChangedItem, RegistryChangeRecord, RegistrySnapshot
from provender.ui import code
from provender.ui import on_demand as on_demand_page
from provender.ui import statistics as stats_page
from provender.ui.data import Hit, OnlineFreshness, ProjectSummary
from provender.ui.html import age, code_block, crumbs, duration, e, empty, highlight, labels, tabs, u, when

Page = tuple[str, str, str]


def projects(summaries: Sequence[ProjectSummary]) -> Page:
    """The first page: every readable project with its counts."""
    if not summaries:
        body = empty(
            "No projects yet.",
            "Define entities and feature tables in a folder and run <code>provender apply</code> "
            "(start with <code>provender init demo</code>).",
        )
        return "Projects", "<h1>Projects</h1>" + body, ""
    cards = "".join(
        f'<section class="card" aria-labelledby="p-{e(s.info.name)}"><h2 id="p-{e(s.info.name)}">'
        f'<a href="{u("projects", s.info.name)}">{e(s.info.name)}</a></h2>'
        f'<p><span class="count">{s.tables}</span> tables · <span class="count">{s.features}</span> features · '
        f'<span class="count">{s.entities}</span> entities'
        f"{f' · <span class=count>{s.on_demand}</span> on-demand' if s.on_demand else ''}</p>"
        f'<p class="muted small">version {s.info.version} · changed {age(s.info.updated_at)}</p></section>'
        for s in summaries
    )
    return "Projects", f'<h1>Projects</h1><div class="grid">{cards}</div>', ""


def _hit_url(hit: Hit) -> str:
    entry = hit.entry
    if entry.kind == "entity":
        return u("projects", entry.project) + f"#entity-{entry.name}"
    if entry.kind.startswith("on-demand"):
        url = u("projects", entry.project, "on-demand", entry.table)
        return url + (f"#feature-{entry.name}" if entry.kind == "on-demand feature" else "")
    url = u("projects", entry.project, "tables", entry.table)
    return url + (f"#feature-{entry.name}" if entry.kind == "feature" else "")


def _is_feature(hit: Hit) -> bool:
    return hit.entry.kind in ("feature", "on-demand feature")


def hit_json(hit: Hit) -> dict[str, object]:
    """A search result as the as-you-type box shows it."""
    entry = hit.entry
    where = f"{entry.project} / {entry.table}" if _is_feature(hit) else entry.project
    return {"kind": entry.kind, "name": entry.name, "project": entry.project, "table": entry.table,
            "description": entry.description or entry.labels, "where": where, "url": _hit_url(hit),
            "score": hit.score}  # fmt: skip


def search(hits: Sequence[Hit], query: str) -> Page:
    """The search results page (the form's fallback, and a shareable URL)."""
    words = query.lower().split()
    if not query.strip():
        body = empty("Type a word to search.", "Search matches names, descriptions, labels and entities.")
    elif not hits:
        body = empty(f"No match for “{e(query)}”.", "Try a shorter word, or browse the projects.")
    else:
        rows = "".join(
            f'<tr><td><span class="tag">{e(h.entry.kind)}</span></td>'
            f'<td><a href="{e(_hit_url(h))}">{highlight(h.entry.name, words)}</a></td>'
            f"<td>{e(h.entry.project)}{' / ' + highlight(h.entry.table, words) if _is_feature(h) else ''}</td>"
            f"<td>{highlight(h.entry.description, words)}"
            f"{' <span class=small>' + highlight(h.entry.labels, words) + '</span>' if h.entry.labels else ''}</td>"
            f'<td class="hide-narrow">{e(h.entry.value_type)}</td></tr>'
            for h in hits
        )
        body = (
            f'<p class="muted">{len(hits)} results, best first.</p><div class="scroll"><table class="list">'
            "<caption class=skip>Search results</caption><thead><tr><th>Kind</th><th>Name</th><th>Where</th>"
            f'<th>Description and labels</th><th class="hide-narrow">Type</th></tr></thead><tbody>{rows}</tbody></table></div>'
        )
    return f"Search: {query}", f"<h1>Search results for “{e(query)}”</h1>{body}", crumbs(("Search", ""))


def _last_jobs(jobs: Sequence[JobRecord]) -> dict[str, JobRecord]:
    last: dict[str, JobRecord] = {}
    for job in jobs:  # newest first
        last.setdefault(job.table, job)
    return last


def _status(job: JobRecord) -> str:
    return f'<span class="status-{e(job.status.value)}">{e(job.status.value)}</span>'


def project(snapshot: RegistrySnapshot, jobs: Sequence[JobRecord]) -> Page:
    """A project: its feature tables (with their last job) and entities."""
    name = snapshot.project
    last = _last_jobs(jobs)
    if not snapshot.feature_tables:
        tables = empty(
            "No feature tables in this project.",
            "Add a <code>FeatureTable</code> and run <code>provender apply</code>.",
        )
    else:
        rows = "".join(
            f'<tr><td><a href="{u("projects", name, "tables", t.name)}">{e(t.name)}</a></td>'
            f"<td>{e(', '.join(t.entities))}</td><td>{len(t.features)}</td>"
            f'<td class="hide-narrow">{labels(t.labels)}</td>'
            f"<td>{_status(last[t.name]) + ' ' + age(last[t.name].finished_at or last[t.name].created_at) if t.name in last else '<span class=muted>no job yet</span>'}</td></tr>"
            for t in sorted(snapshot.feature_tables.values(), key=lambda t: t.name)
        )
        tables = (
            '<div class="scroll"><table class="list"><caption class=skip>Feature tables</caption><thead><tr>'
            '<th>Table</th><th>Entities</th><th>Features</th><th class="hide-narrow">Labels</th><th>Last job</th>'
            f"</tr></thead><tbody>{rows}</tbody></table></div>"
        )
    entities = "".join(
        f'<tr id="entity-{e(x.name)}"><td>{e(x.name)}</td><td>{e(x.value_type.value)}</td><td>{e(x.description)}</td>'
        f"<td>{labels(x.labels)}</td></tr>"
        for x in sorted(snapshot.entities.values(), key=lambda x: x.name)
    )
    entity_table = (
        '<div class="scroll" tabindex="0" role="region" aria-label="Entities"><table class="list"><caption class=skip>Entities</caption><thead><tr><th>Entity</th>'
        f"<th>Type</th><th>Description</th><th>Labels</th></tr></thead><tbody>{entities}</tbody></table></div>"
        if entities else empty("No entities.", "Define an <code>Entity</code> and apply it.")
    )  # fmt: skip
    body = (
        f'<h1>Project {e(name)}</h1><p class="muted">registry version {snapshot.version} · changed '
        f"{when(snapshot.updated_at)}</p>{tabs(name, 'Tables')}<h2>Feature tables</h2>{tables}"
        f"{on_demand_page.listing(snapshot)}<h2>Entities</h2>{entity_table}"
    )
    return f"Project {name}", body, crumbs((name, ""))


def job_rows(jobs: Sequence[JobRecord], *, can_write: bool, show_table: bool) -> str:
    """A table of job records (a cancel button on unfinished ones for writers)."""
    if not jobs:
        return empty("No jobs yet.", "Run an ingestion: <code>provender ingest &lt;table&gt; --start ... --end ...</code> "
                     "or <code>client.start_offline_to_online_ingestion(...)</code>.")  # fmt: skip
    rows = []
    for job in jobs:
        took = (job.finished_at - job.started_at) if job.finished_at and job.started_at else None
        action = ""
        if can_write and job.status in (JobStatus.PENDING, JobStatus.RUNNING):
            action = (
                f'<form method="post" action="{u("ui", "jobs", job.id, "cancel")}">'
                f'<button class="danger" type="submit" data-write-action aria-label="Cancel job {e(job.id)}">'
                "Cancel</button></form>"
            )
        table = (
            f'<td><a href="{u("projects", job.project, "tables", job.table)}">{e(job.table)}</a></td>'
            if show_table
            else ""
        )
        rows.append(
            f'<tr><td><a href="{u("projects", job.project, "jobs", job.id)}">{e(job.id)}</a></td>{table}'
            f"<td>{e(job.kind.value)}</td><td>{_status(job)}</td><td>{job.rows:,}</td><td>{duration(took)}</td>"
            f'<td class="hide-narrow">{when(job.created_at)}</td><td>{e(job.error[:200])}</td><td>{action}</td></tr>'
        )
    head = "<th>Table</th>" if show_table else ""
    return (
        '<div class="scroll"><table class="list"><caption class=skip>Jobs</caption><thead><tr><th>Job</th>'
        f'{head}<th>Kind</th><th>Status</th><th>Rows</th><th>Duration</th><th class="hide-narrow">Created</th>'
        f"<th>Error</th><th><span class=skip>Actions</span></th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _expectations(expectations: Sequence[object]) -> str:
    described = [x.describe() if hasattr(x, "describe") else str(x) for x in expectations]
    return "".join(f"<code>{e(d)}</code> " for d in described) or '<span class="muted">none</span>'


def _source(table: FeatureTable) -> str:
    parts = []
    if table.batch_source is not None:
        s = table.batch_source
        parts.append(f"<dt>Batch source</dt><dd><code>{e(s.path)}</code> ({e(type(getattr(s, 'file_format', s)).__name__)}), "
                     f"event time <code>{e(s.event_timestamp_column)}</code></dd>")  # fmt: skip
    if table.stream_source is not None:
        k = table.stream_source
        parts.append(f"<dt>Stream source</dt><dd>Kafka topic <code>{e(k.topic)}</code> at "
                     f"<code>{e(k.bootstrap_servers)}</code></dd>")  # fmt: skip
    return "".join(parts) or "<dt>Sources</dt><dd class=muted>none</dd>"


def table(
    snapshot: RegistrySnapshot, name: str, jobs: Sequence[JobRecord], online: OnlineFreshness, *, can_write: bool
) -> Page:
    """A feature table: entities, features, labels, sources, max_age, its code, how to read it, its jobs."""
    project_name = snapshot.project
    t = snapshot.feature_tables[name]
    entities = [snapshot.entities[x] for x in t.entities if x in snapshot.entities]
    features = "".join(
        f'<tr id="feature-{e(f.name)}"><td><code>{e(f.name)}</code></td><td>{e(f.value_type.value)}</td>'
        f"<td>{e(f.description)}</td><td>{_expectations(f.expect)}</td></tr>"
        for f in t.features
    )
    last_ok = next((j for j in jobs if j.status is JobStatus.SUCCEEDED), None)
    freshness = (
        f"Last successful ingestion {when(last_ok.finished_at)} ({age(last_ok.finished_at)}), {last_ok.rows:,} rows."
        if last_ok else "Never ingested: run <code>provender ingest</code> for this table."
    )  # fmt: skip
    newest, newest_age, _ = _online_value(t, online)
    online_line = (
        f"Online values: {e(online.problem)}." if online.problem
        else f"Newest online value {newest} ({newest_age})." if name in online.tables
        else "No value online yet."
    )  # fmt: skip
    body = f"""<h1>Feature table {e(name)}</h1>{tabs(project_name, "Tables")}
<div class="card"><dl>
<dt>Entities</dt><dd>{", ".join(f'<a href="{u("projects", project_name)}#entity-{e(x)}">{e(x)}</a>' for x in t.entities)}</dd>
{_source(t)}
<dt>max_age</dt><dd>{duration(t.max_age) if t.max_age else "none (values never expire)"}</dd>
<dt>Labels</dt><dd>{labels(t.labels)}</dd>
<dt>Table expectations</dt><dd>{_expectations(t.expect)} (violations at ingestion: <code>{e(t.validation_policy)}</code>)</dd>
<dt>Freshness</dt><dd id="table-freshness">{online_line}<br>{freshness}</dd></dl>
<p><a href="{u("projects", project_name, "tables", name, "statistics")}">Statistics</a> ·
<a href="{u("projects", project_name, "jobs")}?table={e(name)}">All jobs of this table</a></p></div>
<h2>Features</h2><div class="scroll" tabindex="0" role="region" aria-label="Features"><table class="list"><caption class=skip>Features</caption>
<thead><tr><th>Feature</th><th>Type</th><th>Description</th><th>Expectations</th></tr></thead><tbody>{features}</tbody></table></div>
<h2>Definition</h2>{code_block("definition", "definition", code.table_snippet(t, entities))}
<h2>How to read it</h2>{code_block("reading", "reading code", code.read_table(project_name, t, entities))}
<h2>Recent jobs</h2>{job_rows(jobs[:20], can_write=can_write, show_table=False)}"""
    return f"{name} · {project_name}", body, crumbs((project_name, u("projects", project_name)), (name, ""))


def _online_value(t: FeatureTable, online: OnlineFreshness) -> tuple[str, str, str]:
    """The newest online value's event time, its age, and the last online write, as table cells."""
    if online.problem:
        return '<span class="muted">unknown</span>', "&mdash;", "&mdash;"
    fresh = online.tables.get(t.name)
    if fresh is None:
        return '<span class="muted">none online</span>', "&mdash;", "&mdash;"
    newest_age = age(fresh.newest_event)
    if t.max_age is not None and now() - fresh.newest_event > t.max_age:
        newest_age += f' <span class="status-FAILED">older than max_age ({duration(t.max_age)})</span>'
    return when(fresh.newest_event), newest_age, f"{when(fresh.written_at)} ({age(fresh.written_at)})"


def _online_note(online: OnlineFreshness) -> str:
    if online.problem:
        return f'<p class="muted small" role="status">Online values: {e(online.problem)}.</p>'
    return (
        '<p class="muted small">The newest online value is the newest event time written to the online store '
        "(its age is how stale the freshest value served is); the last write is when a batch last reached it.</p>"
    )


def freshness(
    snapshot: RegistrySnapshot,
    jobs: Sequence[JobRecord],
    online: OnlineFreshness,
    *,
    can_write: bool,
    table: str | None,
) -> Page:
    """Freshness per table (the newest online value and the last successful ingestion) and the recent jobs."""
    name = snapshot.project
    last_ok: dict[str, JobRecord] = {}
    for job in jobs:
        if job.status is JobStatus.SUCCEEDED:
            last_ok.setdefault(job.table, job)
    rows = []
    for t in sorted(snapshot.feature_tables.values(), key=lambda t: t.name):
        newest, newest_age, written = _online_value(t, online)
        ok = last_ok.get(t.name)
        ingested = (
            f'<a href="{u("projects", name, "jobs", ok.id)}">{when(ok.finished_at)}</a> ({age(ok.finished_at)})'
            if ok else "<span class=muted>never</span>"
        )  # fmt: skip
        rows.append(
            f'<tr id="fresh-{e(t.name)}"><th scope="row"><a href="{u("projects", name, "tables", t.name)}">'
            f'{e(t.name)}</a></th><td class="newest">{newest}</td><td class="newest-age">{newest_age}</td>'
            f'<td class="hide-narrow">{written}</td><td class="ingested">{ingested}</td>'
            f"<td>{ok.rows if ok else 0:,}</td></tr>"
        )
    shown = [j for j in jobs if table is None or j.table == table][:100]
    filtered = f" of table <code>{e(table)}</code>" if table else ""
    body = (
        f"<h1>Freshness and jobs · {e(name)}</h1>{tabs(name, 'Freshness & jobs')}"
        '<h2>Freshness</h2><div class="scroll"><table class="list" id="freshness">'
        "<caption class=skip>Freshness per table</caption><thead><tr><th>Table</th>"
        "<th>Newest online value (event time)</th><th>Its age</th><th class=hide-narrow>Last online write</th>"
        f"<th>Last successful ingestion</th><th>Rows</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        f"{_online_note(online)}<h2>Recent jobs{filtered}</h2>"
        f"{job_rows(shown, can_write=can_write, show_table=True)}"
    )
    return f"Jobs · {name}", body, crumbs((name, u("projects", name)), ("Jobs", ""))


def job(record: JobRecord, *, can_write: bool) -> Page:
    """One job record."""
    took = (record.finished_at - record.started_at) if record.finished_at and record.started_at else None
    statistics_link = (
        f'<a href="{u("projects", record.project, "tables", record.table, "statistics")}?current={e(record.id)}">'
        "The statistics this job recorded</a>"
        if record.statistics and record.table else '<span class="muted">none recorded</span>'
    )  # fmt: skip
    body = f"""<h1>Job {e(record.id)}</h1>
<div class="card"><dl>
<dt>Status</dt><dd>{_status(record)}</dd><dt>Kind</dt><dd>{e(record.kind.value)}</dd>
<dt>Table</dt><dd><a href="{u("projects", record.project, "tables", record.table)}">{e(record.table)}</a></dd>
<dt>Rows</dt><dd>{record.rows:,}</dd><dt>Created</dt><dd>{when(record.created_at)}</dd>
<dt>Started</dt><dd>{when(record.started_at)}</dd><dt>Finished</dt><dd>{when(record.finished_at)}</dd>
<dt>Duration</dt><dd>{duration(took)}</dd><dt>Runner</dt><dd>{e(record.runner or "—")}</dd>
<dt>Error</dt><dd>{f'<pre tabindex="0">{e(record.error)}</pre>' if record.error else "none"}</dd>
<dt>Validation</dt><dd id="validation">{_validation(record.validation)}</dd>
<dt>Statistics</dt><dd>{statistics_link}</dd></dl></div>
{job_rows([record], can_write=can_write, show_table=True) if can_write and record.status in (JobStatus.PENDING, JobStatus.RUNNING) else ""}"""
    p = record.project
    return f"Job {record.id}", body, crumbs((p, u("projects", p)), ("Jobs", u("projects", p, "jobs")), (record.id, ""))


def _validation(report: Mapping[str, object] | None) -> str:
    """A job's validation report (as recorded): passed, or each violated expectation with its count."""
    if not report:
        return '<span class="muted">not validated</span>'
    checked, skipped = report.get("rows_checked", 0), report.get("rows_skipped", 0)
    head = (
        f"{_count(checked)} rows checked, {_count(skipped)} skipped (policy <code>{e(report.get('policy', ''))}</code>)"
    )
    violations = report.get("violations")
    if not isinstance(violations, list) or not violations:
        return f'<span class="status-SUCCEEDED">passed</span>: {head}'
    items = "".join(
        f"<li>{e(v.get('feature') or 'table')}: <code>{e(v.get('expectation', ''))}</code> violated by "
        f"{_count(v.get('count', 0))} rows{': e.g. <code>' + e(v['examples'][0]) + '</code>' if v.get('examples') else ''}</li>"
        for v in violations
        if isinstance(v, Mapping)
    )
    return f'<span class="status-FAILED">violations</span>: {head}<ul>{items}</ul>'


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else e(value)


def _diff_lines(lines: Sequence[str]) -> str:
    """A changed definition's readable diff: added lines green, removed red, the rest as ``old → new``."""
    if not lines:
        return ""
    rendered = []
    for line in lines:
        css = "diff-added" if line.startswith("+ ") else "diff-deleted" if line.startswith("- ") else "diff-changed"
        rendered.append(f'<li class="{css}"><code>{e(line).replace(" -&gt; ", " → ")}</code></li>')
    return f'<ul class="diff-lines">{"".join(rendered)}</ul>'


def _change_item(item: ChangedItem) -> str:
    sign = {"added": "+", "deleted": "-"}.get(item.action.value, "~")
    fields = f" ({e(', '.join(item.fields))})" if item.fields else ""
    return (
        f'<li class="diff-{e(item.action.value)}">{sign} {e(item.kind.replace("_", " "))} <strong>{e(item.name)}</strong> '
        f"{e(item.action.value)}{fields}{_diff_lines(item.diff)}</li>"
    )


def history(project_name: str, records: Sequence[RegistryChangeRecord]) -> Page:
    """The project's registry history: who, when, between which versions, and a readable diff of what changed."""
    if not records:
        listing = empty("No recorded changes.", "Changes appear here after <code>provender apply</code>.")
    else:
        items = []
        for r in records:
            changes = "".join(_change_item(i) for i in r.items) or "<li class=muted>no definitions changed</li>"
            items.append(
                f'<li class="card"><p><strong>{e(r.actor)}</strong> · {when(r.changed_at)} · version '
                f"{r.version_before} → {r.version_after}</p><p>{e(r.description)}</p><ul>{changes}</ul></li>"
            )
        listing = f'<ol class="plain">{"".join(items)}</ol>'
    body = f"<h1>History · {e(project_name)}</h1>{tabs(project_name, 'History')}{listing}"
    return f"History · {project_name}", body, crumbs((project_name, u("projects", project_name)), ("History", ""))


MAX_LINEAGE_TABLES = 200


def _sources(t: FeatureTable) -> list[str]:
    found = []
    if t.batch_source is not None:
        kind = "delta" if type(t.batch_source).__name__ == "DeltaSource" else "file"
        found.append(f"{kind}: {t.batch_source.path}")
    if t.stream_source is not None:
        found.append(f"kafka: {t.stream_source.topic}")
    return found


def _feeding_jobs(jobs: Sequence[JobRecord]) -> dict[str, list[JobRecord]]:
    """Per table, its latest job of each kind (jobs are newest first)."""
    latest: dict[tuple[str, str], JobRecord] = {}
    for job in jobs:
        latest.setdefault((job.table, job.kind.value), job)
    per_table: dict[str, list[JobRecord]] = {}
    for (table_name, _), job in latest.items():
        per_table.setdefault(table_name, []).append(job)
    return per_table


def lineage(snapshot: RegistrySnapshot, jobs: Sequence[JobRecord]) -> Page:
    """Sources -> feature tables -> the latest job of each kind that fed them: an SVG graph and the same as a list."""
    name = snapshot.project
    every = sorted(snapshot.feature_tables.values(), key=lambda t: t.name)
    tables = every[:MAX_LINEAGE_TABLES]
    every_view = sorted(snapshot.on_demand_features.values(), key=lambda v: v.name)
    views = every_view[:MAX_LINEAGE_TABLES]
    if not tables and not views:
        graph = empty("Nothing to draw yet.", "Apply a feature table with a batch or stream source.")
    else:
        feeding = _feeding_jobs(jobs)
        width, parts, items, y = 960, [], [], 20
        for t in tables:
            sources, fed_by = _sources(t) or ["(no source)"], feeding.get(t.name, [])
            row_h = 18 * max(len(sources), len(fed_by), 1) + 30
            table_url = u("projects", name, "tables", t.name)
            for k, source in enumerate(sources):
                sy = y + k * 18
                parts.append(f'<text x="10" y="{sy + 14}">{e(source[-44:])}</text>')
                parts.append(f'<line x1="320" y1="{sy + 10}" x2="370" y2="{y + 14}" stroke="#8894a8"/>')
            parts.append(
                f'<a href="{table_url}"><rect x="370" y="{y}" width="230" height="28" rx="6" '
                f'fill="#e8eef9" stroke="#1f5fbf"/><text x="380" y="{y + 18}">{e(t.name[:30])}</text></a>'
            )
            for k, j in enumerate(fed_by):
                jy = y + k * 18
                parts.append(f'<line x1="600" y1="{y + 14}" x2="650" y2="{jy + 14}" stroke="#8894a8"/>')
                parts.append(
                    f'<a href="{u("projects", name, "jobs", j.id)}"><text x="655" y="{jy + 18}">{e(j.kind.value)} '
                    f"{e(j.id)} {e(j.status.value)}</text></a>"
                )
            jobs_text = ", ".join(
                f'<a href="{u("projects", name, "jobs", j.id)}">{e(j.kind.value)} {e(j.id)}</a> ({e(j.status.value)})'
                for j in fed_by
            )
            items.append(
                f'<li>{e(", ".join(sources))} → <a href="{table_url}">{e(t.name)}</a>'
                f"{' ← ' + jobs_text if jobs_text else ' (no job yet)'}</li>"
            )
            y += row_h
        y = _on_demand_lineage(name, views, parts, items, y)
        height = y + 20
        more = "".join(
            f'<p class="muted small">Showing the first {len(shown)} of {len(total)} {what} (by name).</p>'
            for shown, total, what in ((tables, every, "tables"), (views, every_view, "on-demand views"))
            if len(total) > len(shown)
        )
        graph = (
            f'<div class="scroll card"><svg class="lineage" role="group" aria-label="Lineage of {e(name)}: sources, '
            f'feature tables and the jobs that fed them, and the inputs of on-demand features" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
            f'{"".join(parts)}</svg></div>{more}<p class="muted small">Sources (left) feed feature tables (middle); the '
            "right column is the latest job of each kind that wrote each table. On-demand features (dashed) are "
            "computed when read, from the feature tables' features and the request's fields on their left.</p>"
            '<details><summary>Show the lineage as a list</summary><ul class="lineage-list">'
            f"{''.join(items)}</ul></details>"
        )
    body = f"<h1>Lineage · {e(name)}</h1>{tabs(name, 'Lineage')}{graph}"
    return f"Lineage · {name}", body, crumbs((name, u("projects", name)), ("Lineage", ""))


def _on_demand_lineage(
    project: str, views: Sequence[OnDemandFeatures], parts: list[str], items: list[str], y: int
) -> int:
    """Draw each on-demand view below the tables: its input tables and request fields -> the view; return the next y."""
    for view in views:
        inputs: dict[str, list[str]] = {}
        for ref in view.inputs:
            table, _, feature = ref.partition(":")
            inputs.setdefault(table, []).append(feature)
        left = [
            (f"feature table {t} ({', '.join(fs)})", u("projects", project, "tables", t)) for t, fs in inputs.items()
        ]
        if view.request_schema:
            left.append((f"request: {', '.join(view.request_schema)}", ""))
        row_h = 18 * max(len(left), 1) + 30
        view_url = u("projects", project, "on-demand", view.name)
        for k, (label, href) in enumerate(left):
            sy = y + k * 18
            text = f'<text x="10" y="{sy + 14}">{e(label[-50:])}</text>'
            parts.append(f'<a href="{href}">{text}</a>' if href else text)
            parts.append(f'<line x1="320" y1="{sy + 10}" x2="370" y2="{y + 14}" stroke="#8894a8"/>')
        parts.append(
            f'<a href="{view_url}"><rect class="on-demand" x="370" y="{y}" width="230" height="28" rx="6" '
            f'fill="#f4effa" stroke="#6b3fa0" stroke-dasharray="4 3"/><text x="380" y="{y + 18}">{e(view.name[:30])}'
            '</text></a><text x="610" y="' + str(y + 18) + '" class="muted">on demand: computed when read</text>'
        )
        sources = [
            f'feature table <a href="{u("projects", project, "tables", t)}">{e(t)}</a> ({e(", ".join(fs))})'
            for t, fs in inputs.items()
        ]
        if view.request_schema:
            sources.append(f"request ({e(', '.join(view.request_schema))})")
        items.append(f'<li>{", ".join(sources)} → <a href="{view_url}">{e(view.name)}</a> (on demand)</li>')
        y += row_h
    return y


def statistics(
    snapshot: RegistrySnapshot,
    name: str,
    jobs: Sequence[JobRecord],
    *,
    current: str | None = None,
    against: str | None = None,
) -> Page:
    """The statistics a job of the table recorded (the latest, or ``current``), and its drift against ``against``."""
    project_name = snapshot.project
    trail = crumbs((project_name, u("projects", project_name)), (name, u("projects", project_name, "tables", name)),
                     ("Statistics", ""))  # fmt: skip
    return stats_page.statistics(
        snapshot, name, jobs, tabs(project_name, "Tables"), trail, current=current, against=against
    )


def now() -> datetime:
    """The current time (UTC)."""
    return datetime.now(UTC)
