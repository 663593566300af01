"""``provender apply``: import definition files, show the plan, apply it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import click

from provender.cli.ignore import python_files
from provender.cli.render import echo_table, plural
from provender.cli.state import CliState
from provender.definitions import Definition, Entity, FeatureTable, OnDemandFeatures
from provender.errors import DefinitionError
from provender.registry.diff import MissingPolicy


def find_definition_files(path: Path) -> list[Path]:
    """Return ``path`` itself, or the Python files under it that ``.provenderignore`` does not exclude."""
    if not path.exists():
        raise DefinitionError(str(path), "path", "does not exist")
    if path.is_file():
        return [path]
    return python_files(path)


def read_definitions(path: Path) -> list[Definition]:
    """Import the files under ``path`` and return their module-level Entity, FeatureTable and OnDemandFeatures.

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
            if isinstance(value, Entity | FeatureTable | OnDemandFeatures):
                key = (type(value), value.name)
                other = found.get(key)
                if other and other[0] != value:
                    raise DefinitionError(str(file), value.name, f"defined differently in {other[1]}")
                found.setdefault(key, (value, file))
    entities = [d for d, _ in found.values() if isinstance(d, Entity)]
    feature_tables = [d for d, _ in found.values() if isinstance(d, FeatureTable)]
    on_demand = [d for d, _ in found.values() if isinstance(d, OnDemandFeatures)]
    return [*entities, *feature_tables, *on_demand]


@click.command()
@click.argument("path", type=click.Path(path_type=Path), default=".")
@click.option("--dry-run", is_flag=True, help="Show the plan without applying it (the files are still imported).")
@click.option(
    "--prune", is_flag=True, help="Also delete registered tables and entities that no file defines (and their rows)."
)
@click.pass_obj
def apply(state: CliState, path: Path, dry_run: bool, prune: bool) -> None:
    """Register the Entity, FeatureTable and OnDemandFeatures objects defined in Python files under PATH.

    Every .py file under PATH is imported, that is executed, even with --dry-run, except files
    matching PATH/.provenderignore (gitignore syntax) and the defaults: hidden folders,
    venv/, env/, site-packages/, __pycache__/, build/, dist/, node_modules/. Keep scripts
    out of PATH, list them in .provenderignore, or guard them with `if __name__ == "__main__":`.

    Shows a plan (added / changed / unchanged / refused; registered objects that no file
    defines any more as "not defined", or "deleted" with --prune) and applies it, all or
    nothing. A deleted feature table's online rows are deleted too.

    \b
    Example:
      provender apply . --dry-run
      provender apply .
      provender apply . --prune
    """
    if prune and path.is_file():
        raise click.UsageError(
            f"--prune needs the folder of every definition, not one file ({path}): "
            "everything the file does not define would be deleted",
            ctx=click.get_current_context(),
        )
    files = find_definition_files(path)
    definitions = read_definitions(path)
    if not definitions:
        raise click.ClickException(f"no Entity, FeatureTable or OnDemandFeatures objects found in {path}")
    click.echo(f"Imported {plural(len(files), 'file')}: {', '.join(_shown(f, path) for f in files)}")
    client = state.client(existing_project=False)
    # one file is not every definition: what it does not define is not reported as missing
    missing: MissingPolicy = "prune" if prune else "report" if path.is_dir() else "ignore"
    plan = client.plan(definitions, missing=missing)
    click.echo(f"Plan for project {client.project!r}:")
    echo_table(["ACTION", "KIND", "NAME", "DETAIL"], [(i.action, i.kind, i.name, i.detail) for i in plan.items])
    if plan.is_refused:
        plan.to_change()  # raises RegistryConflictError naming every conflict
    if dry_run:
        click.echo(f"Dry run: {plan.summary()}; nothing applied.")
        return
    applied = client.apply(definitions, missing=missing)
    click.echo(f"Applied: {applied.summary()}. Registry version {client.registry_version()}.")


def _shown(file: Path, root: Path) -> str:
    return str(file.relative_to(root)) if root.is_dir() else str(file)
