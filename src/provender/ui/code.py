"""Python shown by the UI: definitions as code that recreates them, and code that reads their features.

:func:`python` writes a definition (or any value in one) as the constructor call that rebuilds
it, leaving out fields at their defaults; the snippets are tested by executing them.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping, Sequence
from datetime import timedelta

from provender.definitions import Entity, FeatureTable, OnDemandFeatures
from provender.registry.store import RegistrySnapshot


def python(value: object) -> str:  # noqa: PLR0911 - one return per kind of value
    """Python source that recreates ``value`` (a definition, a source, a format, ...)."""
    if isinstance(value, enum.Enum):
        return f"pv.{type(value).__name__}.{value.name}"
    if isinstance(value, timedelta):
        return f"timedelta(seconds={value.total_seconds():g})"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {python(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(python(v) for v in value) + "]"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        constructor = f"pv.{type(value).__name__}"
        if type(value).__module__ == "provender.definitions.expect":
            constructor = f"pv.expect.{getattr(value, 'kind', type(value).__name__)}"
        args = []
        for f in dataclasses.fields(value):
            current = getattr(value, f.name)
            if f.default is not dataclasses.MISSING and current == f.default:
                continue
            if f.default_factory is not dataclasses.MISSING and current == f.default_factory():
                continue
            args.append(f"{f.name}={python(current)}")
        one_line = f"{constructor}({', '.join(args)})"
        if len(one_line) <= 88:
            return one_line
        inner = ",\n".join("    " + a.replace("\n", "\n    ") for a in args)
        return f"{constructor}(\n{inner},\n)"
    return repr(value)


def table_snippet(table: FeatureTable, entities: Sequence[Entity]) -> str:
    """The Python that recreates ``table`` (and its entities)."""
    lines = ["import provender as pv"]
    if table.max_age is not None:
        lines.insert(0, "from datetime import timedelta")
    lines.append("")
    lines += [f"{x.name} = {python(x)}" for x in entities]
    lines.append(f"{table.name} = {python(table)}")
    return "\n".join(lines)


# Example values by type, for the entity keys and request fields of the reading code.
_EXAMPLES: dict[str, object] = {"INT32": 1001, "INT64": 1001, "STRING": "1001", "BYTES": "1001", "BOOL": True,
                                "FLOAT": 1.5, "DOUBLE": 1.5}  # fmt: skip
MAX_READ_REFS = 4  # more features than this: the snippet reads them all by the table's name


def read_table(project: str, table: FeatureTable, entities: Sequence[Entity]) -> str:
    """Runnable code reading ``table``: historical, online, and the serving service's HTTP API (example keys)."""
    types = {x.name: x.value_type.value for x in entities}
    keys = {name: _EXAMPLES.get(types.get(name, "INT64"), 1001) for name in table.entities}
    refs = [f"{table.name}:{f.name}" for f in table.features]
    return _read(project, [table.name] if len(refs) > MAX_READ_REFS else refs, keys)


def on_demand_snippet(view: OnDemandFeatures) -> str:
    """The Python that recreates the on-demand features ``view``."""
    return f"import provender as pv\n\n{view.name} = {python(view)}"


def read_on_demand(project: str, view: OnDemandFeatures, snapshot: RegistrySnapshot) -> str:
    """Runnable code reading ``view``'s features: the entity keys of its inputs' tables and its request fields."""
    keys: dict[str, object] = {}
    for ref in view.inputs:
        table = snapshot.feature_tables.get(ref.split(":", 1)[0])
        for name in table.entities if table is not None else ():
            entity = snapshot.entities.get(name)
            keys.setdefault(name, _EXAMPLES.get(entity.value_type.value if entity else "INT64", 1001))
    for name, value_type in view.request_schema.items():
        keys.setdefault(name, _EXAMPLES.get(value_type.value))
    return _read(project, [f"{view.name}:{f.name}" for f in view.features], keys)


def _read(project: str, refs: Sequence[str], keys: Mapping[str, object]) -> str:
    row = ", ".join(f"{k!r}: {v!r}" for k, v in keys.items())
    columns = ", ".join(f"{k!r}: [{v!r}]" for k, v in keys.items())
    body = json.dumps({"project": project, "features": list(refs), "entities": {k: [v] for k, v in keys.items()}})
    return "\n".join([
        "import pandas as pd",
        "import provender as pv",
        "",
        f"client = pv.Client(project={project!r})  # in the project's folder (its provender.yaml)",
        f"refs = {list(refs)!r}",
        "",
        "# point in time (training data): one row per entity key and time, with event_timestamp",
        f"entity_rows = pd.DataFrame({{{columns}, 'event_timestamp': [pd.Timestamp.now(tz='UTC')]}})",
        "training = client.get_historical_features(refs, entity_rows).to_pandas()",
        "",
        "# the latest values (online), one mapping per entity row",
        f"online = client.get_online_features(refs, [{{{row}}}]).to_dict()",
        "",
        "# the serving service (provender serve), over HTTP:",
        "# curl -s localhost:6566/v1/online-features -H 'Content-Type: application/json' \\",
        f"#   -d '{body}'",
    ])  # fmt: skip
