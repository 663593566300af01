"""``provender init``: write a small example project."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

# The project file each template is written to (dot files are stored without the dot).
TEMPLATE_FILES = {
    "provender.yaml": "provender.yaml",
    "driver_repo.py": "driver_repo.py",
    "generate_data.py": "generate_data.py",
    "provenderignore": ".provenderignore",
}


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init(directory: Path, force: bool) -> None:
    """Write an example project: provender.yaml, driver definitions, a sample-data script, .provenderignore.

    \b
    Example:
      provender init driver_project && cd driver_project
      python generate_data.py     # a week of hourly driver statistics as Parquet
      provender apply .           # register the definitions
    """
    existing = [name for name in TEMPLATE_FILES.values() if (directory / name).exists()]
    if existing and not force:
        verb = "already exists" if len(existing) == 1 else "already exist"
        raise click.ClickException(f"{directory}: {', '.join(existing)} {verb}; use --force to overwrite")
    directory.mkdir(parents=True, exist_ok=True)
    templates = resources.files("provender.cli") / "templates"
    for template, name in TEMPLATE_FILES.items():
        (directory / name).write_text((templates / template).read_text(encoding="utf-8"), encoding="utf-8")
        click.echo(f"  wrote {directory / name}")
    click.echo(f"Next: cd {directory} && python generate_data.py && provender apply .")
