"""Small HTML helpers: escaping, the page frame, highlighting, times."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from html import escape
from urllib.parse import quote


def e(value: object) -> str:
    """Escape ``value`` for HTML text or a quoted attribute."""
    return escape(str(value), quote=True)


def u(*parts: str) -> str:
    """Return a URL path from parts, each percent-encoded."""
    return "/" + "/".join(quote(p, safe="") for p in parts)


def highlight(text: str, words: list[str]) -> str:
    """Escape ``text`` and wrap every case-insensitive occurrence of ``words`` in ``<mark>``."""
    words = [w for w in words if w]
    if not words:
        return e(text)
    pattern = re.compile("|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)), re.IGNORECASE)
    out, last = [], 0
    for match in pattern.finditer(text):
        out.append(e(text[last : match.start()]))
        out.append(f"<mark>{e(match.group(0))}</mark>")
        last = match.end()
    out.append(e(text[last:]))
    return "".join(out)


def when(value: datetime | None) -> str:
    """Return a ``<time>`` element for ``value`` (UTC), or an em dash."""
    if value is None:
        return "&mdash;"
    return f'<time datetime="{e(value.isoformat())}">{e(value.strftime("%Y-%m-%d %H:%M:%S UTC"))}</time>'


def age(value: datetime | None, now: datetime | None = None) -> str:
    """Return how long ago ``value`` was, e.g. ``3 min ago``."""
    if value is None:
        return "never"
    delta = (now or datetime.now(UTC)) - value
    return f"in {duration(-delta)}" if delta < timedelta(0) else f"{duration(delta)} ago"


def duration(delta: timedelta | None) -> str:
    """Return ``delta`` as ``1.2 s``, ``3 min``, ``2 h`` or ``4 d``."""
    if delta is None:
        return "&mdash;"
    seconds = delta.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def frame(title: str, body: str, *, subject: str, query: str = "", crumbs: str = "", can_logout: bool = False) -> str:
    """Return a whole page: the header with the search box, landmarks, and ``body`` in ``<main>``."""
    logout = ' · <a href="/logout">Sign out</a>' if can_logout else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · Provender</title>
<link rel="stylesheet" href="/ui/static/ui.css">
<link rel="icon" href="data:,">
</head><body>
<a class="skip" href="#content">Skip to content</a>
<header class="top" role="banner">
<a class="brand" href="/">Provender</a>
<form role="search" action="/search" method="get">
<label for="q" class="skip">Search tables, features, entities, labels, descriptions</label>
<input id="q" name="q" type="search" value="{e(query)}" autocomplete="off" aria-controls="live"
 aria-describedby="live-help" placeholder="Search tables, features, entities, labels, descriptions">
<button type="submit">Search</button>
<span id="live-help" class="skip">Results appear as you type: the down arrow moves into them, Escape closes them.</span>
<span id="live-status" class="skip" role="status"></span>
<div id="live" role="region" aria-label="Search results" hidden></div>
</form>
<span class="who">Signed in as <strong>{e(subject)}</strong>{logout}</span>
</header>
<main id="content" tabindex="-1">
{f'<nav class="crumbs" aria-label="Breadcrumb">{crumbs}</nav>' if crumbs else ""}
{body}
</main>
<script src="/ui/static/ui.js" defer></script>
</body></html>"""


def empty(message: str, next_step: str) -> str:
    """Return an empty state: what is missing and what to do next."""
    return f'<div class="empty" role="status"><p><strong>{message}</strong></p><p>{next_step}</p></div>'


def error_box(message: str) -> str:
    """Return an error shown in the page."""
    return f'<div class="error" role="alert"><strong>Error:</strong> {e(message)}</div>'


def crumbs(*links: tuple[str, str]) -> str:
    """Return the breadcrumb trail: Projects, then ``(text, href)`` links (no href: the current page)."""
    parts = ['<a href="/">Projects</a>']
    parts += [f'<a href="{e(href)}">{e(text)}</a>' if href else e(text) for text, href in links]
    return " / ".join(parts)


def tabs(project: str, current: str) -> str:
    """Return the project's section navigation with ``current`` marked."""
    sections = [
        ("Tables", u("projects", project)),
        ("Freshness & jobs", u("projects", project, "jobs")),
        ("History", u("projects", project, "history")),
        ("Lineage", u("projects", project, "lineage")),
    ]
    links = "".join(
        f'<a href="{href}"{" aria-current=page" if name == current else ""}>{name}</a>' for name, href in sections
    )
    return f'<nav class="tabs" aria-label="Project sections">{links}</nav>'


def labels(values: Mapping[str, str]) -> str:
    """Return labels as tags (or "none")."""
    return (
        "".join(f'<span class="tag">{e(k)}={e(v)}</span>' for k, v in values.items())
        or '<span class="muted">none</span>'
    )


def code_block(block_id: str, label: str, text: str) -> str:
    """Return a code block with a Copy button."""
    return (
        f'<div class="code"><button class="copy" type="button" data-for="{block_id}" aria-label="Copy {e(label)}">'
        f'Copy</button><pre tabindex="0" aria-label="{e(label)}"><code id="{block_id}">{e(text)}</code></pre></div>'
    )
