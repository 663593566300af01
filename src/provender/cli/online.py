"""``provender online get``: look up the latest feature values of some entity rows."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import datetime

import click

from provender.cli.render import echo_json, echo_table, format_value
from provender.cli.retrieve import split_refs
from provender.cli.state import CliState
from provender.client import Client
from provender.definitions import ValueType
from provender.online.read import FeatureStatus, parse_text, to_entity_value

# Split "a=1,b=x" before each "<identifier>=", so a string value may itself hold commas.
_PAIRS = re.compile(r",(?=[A-Za-z_][A-Za-z0-9_]*=)")


@click.group()
def online() -> None:
    """Read the online store."""


@online.command("get")
@click.option(
    "--features",
    "-f",
    "features",
    multiple=True,
    required=True,
    help="Feature refs 'table:feature' or 'table' (repeat, or separate with commas).",
)
@click.option(
    "--entity",
    "-e",
    "entities",
    multiple=True,
    required=True,
    help="One entity row as name=value pairs, e.g. driver_id=1001 or driver_id=1001,customer_id=7 "
    "(repeat for several rows); request fields of on-demand features too (distance_km=12.5). "
    "BYTES values are UTF-8 text or 0x-prefixed hex.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON as the HTTP service answers: {'columns': ..., 'statuses': ...}."
)
@click.pass_obj
def get(state: CliState, features: tuple[str, ...], entities: tuple[str, ...], as_json: bool) -> None:
    """Print the latest stored values of features for one or more entity rows.

    Values that are missing print as null with their status (NOT_FOUND, OUTSIDE_MAX_AGE,
    NULL_VALUE, CORRUPT).

    \b
    Example:
      provender online get -f driver_statistics -e driver_id=1001 -e driver_id=1002
      provender online get -f driver_statistics:conv_rate -e driver_id=1001 --json
    """
    client = state.client()
    fields = {name: t for odf in client.list_on_demand_features() for name, t in odf.request_schema.items()}
    rows = [parse_entity_row(client, text, request_fields=fields) for text in entities]
    response = client.get_online_features(split_refs(features), rows)
    values, statuses = response.to_dict(), response.statuses()
    if as_json:
        echo_json(
            {
                "columns": {name: [_jsonable(v) for v in column] for name, column in values.items()},
                "statuses": {name: [str(s) for s in column] for name, column in statuses.items()},
            }
        )
        return
    headers = ["FEATURE", *entities]
    table_rows = []
    for column in response.feature_columns:
        cells = [
            format_value(value) if status is FeatureStatus.PRESENT else f"null ({status})"
            for value, status in zip(values[column], statuses[column], strict=True)
        ]
        table_rows.append([column, *cells])
    echo_table(headers, table_rows)


def parse_entity_row(
    client: Client, text: str, *, request_fields: Mapping[str, ValueType] | None = None
) -> dict[str, object]:
    """Parse ``"driver_id=1001,customer_id=7"`` into a row, each value typed by its entity.

    A name that is a request field of on-demand features (``request_fields``) is typed by it.

    Raises:
        click.BadParameter: a pair is not ``name=value`` or a value does not parse.
        EntityNotFoundError: an unknown entity name (with a hint).
    """
    row: dict[str, object] = {}
    for pair in _PAIRS.split(text):
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{pair!r} is not name=value (e.g. driver_id=1001)", param_hint="--entity")
        field = (request_fields or {}).get(name.strip())
        try:
            if field is not None:
                row[name.strip()] = parse_text(value, field, what=f"request field {name.strip()!r}")
                continue
            entity = client.get_entity(name.strip())
            row[entity.name] = to_entity_value(value, entity)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--entity") from None
    return row


def _jsonable(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value
