"""Generate the configuration reference from the settings models (``docs`` site; ``make docs``).

Every key of :class:`provender.config.Settings`, recursively, and the options of every backend
registered under the ``provender.offline_engines`` and ``provender.online_stores`` entry points:
its key, type, default, environment variable and description (the ``Attributes:`` section of
the model's docstring). Nothing is written by hand, so the page cannot drift from the code.

Run alone to print the page: ``python scripts/docs/config_reference.py``.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Iterator
from enum import Enum
from importlib.metadata import entry_points
from typing import Any

from griffe import Docstring, DocstringSectionKind
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from provender.config import ENV_NESTING, ENV_PREFIX, Settings

# Keys that are set by the loader, not by users.
_INTERNAL = {"base_dir"}
_BACKEND_GROUPS = {"offline": "provender.offline_engines", "online": "provender.online_stores"}
_SELECTOR = {"offline": "engine", "online": "store"}


def type_name(annotation: Any) -> str:
    """A readable type: ``int``, ``str | None``, ``'none' | 'token' | 'jwt'``, ``list[str]``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(arg) for arg in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        inner = ", ".join("..." if arg is Ellipsis else type_name(arg) for arg in args)
        return f"{name}[{inner}]"
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def default_text(field: FieldInfo) -> str:
    """The default as it would be written in ``provender.yaml`` (JSON-ish), or ``required``."""
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value, default=str)


def attribute_docs(model: type[BaseModel]) -> dict[str, str]:
    """The ``Attributes:`` entries of a model's Google-style docstring, by name."""
    if not model.__doc__:
        return {}
    sections = Docstring(model.__doc__, lineno=1).parse("google", warnings=False)
    found = {}
    for section in sections:
        if section.kind is DocstringSectionKind.attributes:
            for attribute in section.value:
                found[attribute.name] = " ".join(attribute.description.split())
    return found


def _rows(model: type[BaseModel], path: tuple[str, ...]) -> Iterator[tuple[str, str, str, str, str]]:
    docs = attribute_docs(model)
    for name, field in model.model_fields.items():
        if name in _INTERNAL:
            continue
        key = (*path, name)
        env = ENV_PREFIX + ENV_NESTING.join(key).upper()
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield ".".join(key), "section", "", env + ENV_NESTING + "...", docs.get(name, "")
            yield from _rows(annotation, key)
            continue
        description = docs.get(name) or field.description or ""
        if path and name == _SELECTOR.get(path[0]) and len(key) == 2:
            backends = sorted(e.name for e in entry_points(group=_BACKEND_GROUPS[path[0]]))
            names = ", ".join(f"`{backend}`" for backend in backends)
            description = f"the backend, by entry-point name: {names} (its options are listed below)."
        yield ".".join(key), type_name(annotation), default_text(field), env, description


def _table(rows: list[tuple[str, str, str, str, str]]) -> list[str]:
    lines = ["| key | type | default | environment variable | description |", "|---|---|---|---|---|"]
    for key, kind, default, env, description in rows:
        cells = [f"`{key}`", _code(kind), _code(default), f"`{env}`", _escape(description)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def _escape(text: str) -> str:
    # Markdown tables: a literal pipe ends a cell; RST-style double backticks read as code.
    return re.sub(r"``([^`]+)``", r"`\1`", text).replace("|", "\\|")


def _backends(section: str) -> Iterator[tuple[str, type[BaseModel] | None, str]]:
    for entry_point in sorted(entry_points(group=_BACKEND_GROUPS[section]), key=lambda e: e.name):
        try:
            backend = entry_point.load()
        except ImportError as exc:  # an optional extra that is not installed where the docs are built
            yield entry_point.name, None, f"`pip install 'provender[...]'` is needed to list its options ({exc.name})"
            continue
        yield entry_point.name, backend.config_model, backend.__doc__ or ""


def render() -> str:
    """Return the configuration reference page (Markdown)."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the settings models in `src/provender/config.py` and the backends' own",
        "option models when the site is built; it lists every key.",
        "",
        "Settings are read, lowest to highest precedence, from the defaults, `provender.yaml`",
        f"(or the file named by `{ENV_PREFIX}CONFIG`), `{ENV_PREFIX}*` environment variables (nested",
        f"keys joined with `{ENV_NESTING}`), and explicit arguments. Relative paths are resolved",
        "against the configuration file's directory. An unknown key fails at start-up with a",
        "did-you-mean. Lists can be given in the environment as comma-separated names, mappings as JSON.",
        "",
        "## Settings",
        "",
        *_table(list(_rows(Settings, ()))),
    ]
    for section, title in (("offline", "Offline engines"), ("online", "Online stores")):
        selector = _SELECTOR[section]
        lines += [
            "",
            f"## {title} (`{section}.{selector}`)",
            "",
            f"The `{section}:` section holds `{selector}` (the backend's name) and that backend's own",
            "options, validated against its model below.",
        ]
        for name, model, doc in _backends(section):
            summary = doc.strip().splitlines()[0] if doc.strip() else ""
            lines += ["", f"### `{section}.{selector}: {name}`", ""]
            if summary:
                lines += [_escape(summary), ""]
            if model is None:
                lines.append(doc)
                continue
            rows = [row for row in _rows(model, (section,)) if row[0] != f"{section}.{selector}"]
            lines += _table(rows) if rows else ["No options."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render())
