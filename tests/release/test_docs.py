"""The documentation site builds with warnings as errors, and its generated references are complete."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from scripts.docs import cli_reference, config_reference

from provender.cli.main import cli
from provender.config import Settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_SECONDS = 300


def _build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )


def test_the_site_builds_strictly_with_every_page(tmp_path: Path) -> None:
    result = _build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    for page in ("index", "getting-started/index", "concepts/index", "cli/index", "configuration/index", "api/index",
                 "performance/index", "changelog/index", "contributing/index", "license/index"):  # fmt: skip
        assert (tmp_path / "site" / f"{page}.html").is_file(), page
    for guide in (ROOT / "docs").glob("*.md"):
        assert (tmp_path / "site" / guide.stem / "index.html").is_file(), f"{guide.name} is not in the site"
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    assert 'id="provender.Client.get_historical_features"' in api  # rendered from the docstrings
    assert "Apache License" in (tmp_path / "site" / "license" / "index.html").read_text(encoding="utf-8")


def test_a_broken_link_or_reference_fails_the_build(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for guide in (ROOT / "docs").glob("*.md"):
        (docs / guide.name).write_text(guide.read_text(encoding="utf-8"), encoding="utf-8")
    (docs / "broken.md").write_text(
        "# Broken\n\nSee [nowhere](no-such-page.md) and [the API][provender.NoSuchThing].\n", encoding="utf-8"
    )
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    config["docs_dir"] = str(docs)
    config["hooks"] = [str(ROOT / hook) for hook in config["hooks"]]
    python = next(p for p in config["plugins"] if isinstance(p, dict) and "mkdocstrings" in p)
    python["mkdocstrings"]["handlers"]["python"]["paths"] = [str(ROOT / "src")]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    result = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert "no-such-page.md" in result.stderr
    assert "provender.NoSuchThing" in result.stderr


def test_the_cli_reference_has_every_command() -> None:
    page = cli_reference.render()
    for path, _ in cli_reference._commands(cli, ()):
        assert f" provender {' '.join(path)}\n" in page
        assert f"Usage: provender {' '.join(path)} [OPTIONS]" in page


def test_the_configuration_reference_has_every_key_with_its_variable() -> None:
    page = config_reference.render()

    def keys(model: type, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
        found = []
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            if name == "base_dir":
                continue
            found.append((*prefix, name))
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                found += keys(annotation, (*prefix, name))
        return found

    for key in keys(Settings, ()):
        assert f"| `{'.'.join(key)}` |" in page
        assert f"`PROVENDER_{'__'.join(key).upper()}" in page
    assert "| `online.url` |" in page  # a backend's own option (Redis)
    assert "| `offline.memory_limit` |" in page  # DuckDB's


def test_repository_links_become_site_links_or_text() -> None:
    sys.path.insert(0, str(ROOT / "scripts" / "docs"))
    hooks = importlib.import_module("hooks")  # a top-level module beside its siblings, as MkDocs loads it

    hooks._ORIGIN.update({"index.md": "README.md", "concepts.md": "README.md"})
    pages = {"index.md", "serving.md", "changelog.md", "concepts.md"}
    assert hooks._rewrite("[s](docs/serving.md#auth)", "index.md", pages) == "[s](serving.md#auth)"
    assert hooks._rewrite("[c](CHANGELOG.md)", "index.md", pages) == "[c](changelog.md)"
    assert hooks._rewrite("[r](../README.md#concepts)", "spark.md", pages) == "[r](index.md#concepts)"
    assert hooks._rewrite("[t](#performance)", "concepts.md", pages) == "[t](index.md#performance)"
    assert hooks._rewrite("[plan](src/provender/offline/plan.py)", "index.md", pages) == (
        "plan (`src/provender/offline/plan.py` in the repository)"
    )
    # A link to nothing is left for MkDocs to report; code blocks are never touched.
    assert hooks._rewrite("[x](docs/nope.md)", "index.md", pages) == "[x](docs/nope.md)"
    fenced = "```\n[s](docs/serving.md)\n```\n"
    assert hooks._rewrite(fenced, "index.md", pages) == fenced
