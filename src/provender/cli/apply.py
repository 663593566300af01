"""``provender apply``: import definition files, show the plan, apply it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import click

from provender.cli.render import echo_table
from provender.cli.state import CliState
from provender.definitions import Definition, Entity, FeatureTable
from provender.errors import DefinitionError
from provender.registry.diff import Action

_SKIP_DIRS = {".venv", "venv", ".git", "__pycache__", ".provender", "data", "node_modules"}


def find_definition_files(path: Path) -> list[Path]:
    """Return the Python files under ``path`` (or ``path`` itself), skipping venvs and data."""
    if not path.exists():
        raise DefinitionError(str(path), "path", "does not exist")
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*.py")
        if not any(part in _SKIP_DIRS or part.startswith(".") for part in p.relative_to(path).parts[:-1])
    )


def read_definitions(path: Path) -> list[Definition]:
    """Import the files under ``path`` and return their module-level Entity and FeatureTable objects.

    Raises:
        DefinitionError: a file fails to import (the message names the file), or two files
            define different objects with the same name.
    """
    found: dict[tuple[type, str], tuple[Definition, Path]] = {}
    for n, file in enumerate(find_definition_files(path)):
        module_name = f"_provender_definitions_{n}_{file.stem}"
        spec = importlib.util.spec_from_file_location(module_name, file)
        if spec is None or spec.loader is None:
            raise DefinitionError(str(file), "file", "cannot be imported as Python")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(file.parent))
        try:
            spec.loader.exec_module(module)
        except DefinitionError as exc:
            raise DefinitionError(str(file), exc.field, str(exc)) from exc
        except Exception as exc:
            raise DefinitionError(str(file), "file", f"failed to import: {type(exc).__name__}: {exc}") from exc
        finally:
            sys.path.remove(str(file.parent))
        for value in vars(module).values():
            if isinstance(value, Entity | FeatureTable):
                key = (type(value), value.name)
                other = found.get(key)
                if other and other[0] != value:
                    raise DefinitionError(str(file), value.name, f"defined differently in {other[1]}")
                found.setdefault(key, (value, file))
    entities = [d for d, _ in found.values() if isinstance(d, Entity)]
    feature_tables = [d for d, _ in found.values() if isinstance(d, FeatureTable)]
    return [*entities, *feature_tables]


@click.command()
@click.argument("path", type=click.Path(path_type=Path), default=".")
@click.option("--dry-run", is_flag=True, help="Show the plan without applying it.")
@click.pass_obj
def apply(state: CliState, path: Path, dry_run: bool) -> None:
    """Register the Entity and FeatureTable objects defined in Python files under PATH.

    Shows a plan (added / changed / unchanged / refused) and applies it, all or nothing.

    \b
    Example:
      provender apply driver_repo.py --dry-run
      provender apply .
    """
    definitions = read_definitions(path)
    if not definitions:
        raise click.ClickException(f"no Entity or FeatureTable objects found in {path}")
    client = state.client()
    plan = client.plan(definitions)
    click.echo(f"Plan for project {client.project!r}:")
    echo_table(["ACTION", "KIND", "NAME", "DETAIL"], [(i.action, i.kind, i.name, i.detail) for i in plan.items])
    summary = ", ".join(f"{plan.count(a)} {a}" for a in Action)
    if plan.is_refused:
        plan.to_change()  # raises RegistryConflictError naming every conflict
    if dry_run:
        click.echo(f"Dry run: {summary}; nothing applied.")
        return
    applied = client.apply(definitions)
    click.echo(
        f"Applied: {', '.join(f'{applied.count(a)} {a}' for a in Action)}. "
        f"Registry version {client.registry_version()}."
    )
