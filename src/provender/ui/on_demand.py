# ruff: noqa: E501 - HTML templates read better unwrapped
"""On-demand features in the UI: the project page's listing and a page per on-demand view."""

from __future__ import annotations

from provender.registry.store import RegistrySnapshot
from provender.ui import code
from provender.ui.html import code_block, crumbs, e, labels, tabs, u

Page = tuple[str, str, str]


def _input_link(project: str, ref: str) -> str:
    table, _, feature = ref.partition(":")
    return f'<a href="{u("projects", project, "tables", table)}#feature-{e(feature)}"><code>{e(ref)}</code></a>'


def listing(snapshot: RegistrySnapshot) -> str:
    """The project's on-demand feature views as a table ("" when it has none)."""
    views = sorted(snapshot.on_demand_features.values(), key=lambda v: v.name)
    if not views:
        return ""
    project = snapshot.project
    rows = "".join(
        f'<tr><th scope="row"><a href="{u("projects", project, "on-demand", v.name)}">{e(v.name)}</a></th>'
        f"<td>{', '.join(_input_link(project, ref) for ref in v.inputs)}</td><td>{len(v.features)}</td>"
        f'<td class="hide-narrow"><code>{e(v.function)}</code></td></tr>'
        for v in views
    )
    return (
        '<h2>On-demand features</h2><div class="scroll"><table class="list"><caption class=skip>On-demand features'
        "</caption><thead><tr><th>Name</th><th>Inputs</th><th>Features</th><th class=hide-narrow>Function</th></tr>"
        f"</thead><tbody>{rows}</tbody></table></div>"
    )


def page(snapshot: RegistrySnapshot, name: str) -> Page:
    """One on-demand view: inputs, request fields, features, its function, its code and how to read it."""
    project = snapshot.project
    view = snapshot.on_demand_features[name]
    features = "".join(
        f'<tr id="feature-{e(f.name)}"><td><code>{e(f.name)}</code></td><td>{e(f.value_type.value)}</td>'
        f"<td>{e(f.description)}</td></tr>"
        for f in view.features
    )
    request = ", ".join(f"<code>{e(k)}</code> ({e(t.value)})" for k, t in view.request_schema.items())
    version = " · ".join(x for x in (view.function_version or "", view.function_digest or "") if x)
    body = f"""<h1>On-demand features {e(name)}</h1>{tabs(project, "Tables")}
<div class="card"><dl>
<dt>Description</dt><dd>{e(view.description) or '<span class="muted">none</span>'}</dd>
<dt>Inputs</dt><dd>{", ".join(_input_link(project, ref) for ref in view.inputs)}</dd>
<dt>Request fields</dt><dd>{request or '<span class="muted">none</span>'}</dd>
<dt>Function</dt><dd><code>{e(view.function)}</code> ({e(view.mode)} mode){f" · {e(version)}" if version else ""}</dd>
<dt>Labels</dt><dd>{labels(view.labels)}</dd></dl>
<p class="muted small">Computed when read (online and historical), from the inputs and the request fields; nothing is stored.</p></div>
<h2>Features</h2><div class="scroll" tabindex="0" role="region" aria-label="Features"><table class="list"><caption class=skip>Features</caption>
<thead><tr><th>Feature</th><th>Type</th><th>Description</th></tr></thead><tbody>{features}</tbody></table></div>
<h2>Definition</h2>{code_block("definition", "definition", code.on_demand_snippet(view))}
<h2>How to read it</h2>{code_block("reading", "reading code", code.read_on_demand(project, view, snapshot))}"""
    return f"{name} · {project}", body, crumbs((project, u("projects", project)), (name, ""))
