"""MkDocs hooks (``mkdocs.yml``): the generated pages, the navigation, and repository links.

* Pages made from repository files: the README (home), its quickstart, concepts and performance
  sections, ``CHANGELOG.md``, ``CONTRIBUTING.md``, ``LICENSE``, ``benchmarks/README.md``.
* Pages generated from the code: the CLI reference (the commands' ``--help``), the
  configuration reference (the settings models) and the Python API (mkdocstrings, from the
  docstrings).
* The navigation lists the guides that exist in ``docs/`` when the site is built, titled by
  their first heading, so a new guide needs no edit here.
* Links written for the repository (``docs/serving.md`` in the README, ``../README.md#concepts``
  in a guide) are rewritten to the site's pages; a link to a repository file that is not a
  page (a source file, a benchmark result) becomes plain text naming the path. A link to
  nothing is left alone, so MkDocs reports it (and the strict build fails).
"""

from __future__ import annotations

import posixpath
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cli_reference  # noqa: E402
import config_reference  # noqa: E402

# Site pages made from repository files: repository path -> site path.
_COPIED = {
    "README.md": "index.md",
    "CHANGELOG.md": "changelog.md",
    "CONTRIBUTING.md": "contributing.md",
    "benchmarks/README.md": "benchmarks.md",
}
# Pages cut from the README: site path -> (page title, words one of whose the section heading contains).
_README_SECTIONS = {
    "getting-started.md": ("Getting started", ("minutes", "getting started", "quickstart")),
    "concepts.md": ("Concepts", ("concept",)),
    "performance.md": ("Performance", ("performance",)),
}
# Guides in docs/ that the navigation puts under "Project" rather than "Guides".
_PROJECT_DOCS = ("deprecations.md",)
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~)", re.MULTILINE)

# Where each page's text comes from, for rewriting its links: site path -> repository path.
_ORIGIN: dict[str, str] = {}


def _title(markdown: str, fallback: str) -> str:
    for line in markdown.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return fallback


def _sections(markdown: str) -> list[tuple[str, str]]:
    """Split at level-2 headings outside code blocks: [(heading, text including the heading)]."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    fenced = False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            sections.append((line[3:].strip(), []))
        sections[-1][1].append(line)
    return [(heading, "\n".join(lines)) for heading, lines in sections]


def _readme_page(readme: str, title: str, words: tuple[str, ...]) -> str:
    for heading, text in _sections(readme)[1:]:
        if any(word in heading.lower() for word in words):
            if heading.lower() == title.lower():  # "## Concepts" under "# Concepts": keep one
                text = text.split("\n", 1)[1] if "\n" in text else ""
            return f"# {title}\n\n{text.strip()}\n"
    return f"# {title}\n\nSee [the home page](index.md).\n"


def _license_page() -> str:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    return f"# License\n\nProvender is licensed under the Apache License 2.0.\n\n```text\n{text}\n```\n"


def _api_page() -> str:
    return (
        "# Python API\n\n"
        "Generated from the docstrings. Everything below is importable from `provender`"
        " (`import provender as pv`).\n\n"
        "::: provender\n"
        "    options:\n"
        "      show_root_heading: false\n"
        "      show_submodules: false\n"
    )


def _generated() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pages = {site: (ROOT / repo).read_text(encoding="utf-8") for repo, site in _COPIED.items()}
    for site, (title, words) in _README_SECTIONS.items():
        pages[site] = _readme_page(readme, title, words)
        _ORIGIN[site] = "README.md"
    pages["license.md"] = _license_page()
    pages["cli.md"] = cli_reference.render()
    pages["configuration.md"] = config_reference.render()
    pages["api.md"] = _api_page()
    for repo, site in _COPIED.items():
        _ORIGIN[site] = repo
    return pages


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated pages; record where every page comes from."""
    for site, content in _generated().items():
        files.append(File.generated(config, site, content=content))
    for file in files.documentation_pages():
        _ORIGIN.setdefault(file.src_uri, f"docs/{file.src_uri}")
    return files


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Build the navigation from the guides present in ``docs/``."""
    docs = Path(config.docs_dir)
    guides = sorted(
        ((_title(path.read_text(encoding="utf-8"), path.stem), path.name) for path in docs.glob("*.md")),
        key=lambda item: item[0].lower(),
    )
    config.nav = [
        {"Home": "index.md"},
        {"Getting started": "getting-started.md"},
        {"Concepts": "concepts.md"},
        {"Guides": [{title: name} for title, name in guides if name not in _PROJECT_DOCS]},
        {"Reference": [{"CLI": "cli.md"}, {"Configuration": "configuration.md"}, {"Python API": "api.md"}]},
        {"Performance": "performance.md"},
        {
            "Project": [
                *[{title: name} for title, name in guides if name in _PROJECT_DOCS],
                {"Changelog": "changelog.md"},
                {"Contributing": "contributing.md"},
                {"Benchmarks": "benchmarks.md"},
                {"License": "license.md"},
            ]
        },
    ]
    return config


def _site_path(repo_path: str, site_pages: set[str]) -> str | None:
    if repo_path in _COPIED:
        return _COPIED[repo_path]
    if repo_path == "LICENSE":
        return "license.md"
    if repo_path.startswith("docs/") and repo_path.removeprefix("docs/") in site_pages:
        return repo_path.removeprefix("docs/")
    return None


def _rewrite(markdown: str, page: str, site_pages: set[str]) -> str:
    origin = _ORIGIN.get(page, f"docs/{page}")
    from_readme_section = origin == "README.md" and page != "index.md"

    def link(match: re.Match[str]) -> str:
        bang, text, target = match.groups()
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, mailto:, ...
            return match.group(0)
        path, _, anchor = target.partition("#")
        fragment = f"#{anchor}" if anchor else ""
        if not path:
            return f"{bang}[{text}](index.md{fragment})" if from_readme_section else match.group(0)
        repo_path = posixpath.normpath(posixpath.join(posixpath.dirname(origin), path))
        site = _site_path(repo_path, site_pages)
        if site is not None:
            return f"{bang}[{text}]({site}{fragment})"
        if repo_path.startswith("docs/") or not (ROOT / repo_path).exists():
            return match.group(0)  # left for MkDocs, which reports a broken link (an error when strict)
        if path.endswith("/") or repo_path == "docs":
            return text if repo_path == "docs" else f"{text} (`{repo_path}/` in the repository)"
        return f"{text} (`{repo_path}` in the repository)" if text != repo_path else f"`{repo_path}`"

    parts = _FENCE.split(markdown)
    # split() with one group alternates text, fence marker, text...: rewrite outside fences only.
    out, fenced = [], False
    for i, part in enumerate(parts):
        if i % 2 == 1:
            out.append(part)
            fenced = not fenced
            continue
        out.append(part if fenced else _LINK.sub(link, part))
    return "".join(out)


def on_page_markdown(markdown: str, page: Page, files: Files, **_: Any) -> str:
    """Rewrite repository links to site pages."""
    site_pages = {file.src_uri for file in files.documentation_pages()}
    return _rewrite(markdown, page.file.src_uri, site_pages)
