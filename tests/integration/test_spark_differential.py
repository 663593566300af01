"""The Spark engine against the oracle and the DuckDB engine, on the DuckDB suite's random cases.

Uses the random cases of ``tests/support/differential.py`` (as the DuckDB differential test does) (layouts,
formats, nanosecond and zoned times, ties, max_age edges, pandas/Arrow/Parquet entity rows)
with fewer examples, since every Spark retrieval costs about a second. Each example must match
the oracle and be equal, row by row and type by type, to the DuckDB engine's result.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

from tests.support import pit_oracle
from tests.support.builders import CUSTOMER, DRIVER, ENTITIES, make_client, write_table
from tests.support.differential import Case, cases, check_properties, entity_frame, entity_source

pytestmark = [pytest.mark.service, pytest.mark.slow]

SPARK_EXAMPLES = 12


def _same(spark: pa.Table, duck: pa.Table) -> None:
    assert spark.schema == duck.schema, f"schemas differ:\nspark: {spark.schema}\nduckdb: {duck.schema}"
    assert spark.to_pylist() == duck.to_pylist()


@settings(
    max_examples=SPARK_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(case=cases())
def test_spark_engine_agrees_with_oracle_and_duckdb(
    case: Case, spark_engine: object, spark_options: dict[str, object]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tables = [
            write_table(
                t.table,
                t.rows,
                entities=ENTITIES,
                root=root / "data",
                layout=t.layout,
                file_format=t.file_format,
                schema=t.schema,
            )
            for t in case.tables
        ]
        frame = entity_frame(case)
        before = frame.copy(deep=True)
        source = entity_source(case, frame, root)
        with make_client(root / "spark", offline=spark_options) as client:
            client.apply([DRIVER, CUSTOMER, *tables])
            result = client.get_historical_features(case.refs, source).to_arrow()
        pd.testing.assert_frame_equal(frame, before)
        expected = pit_oracle.retrieve(
            case.entity_rows,
            [pit_oracle.SourceData(table=t, rows=c.rows) for t, c in zip(tables, case.tables, strict=True)],
            case.refs,
            entity_columns=case.entity_columns,
        )
        pit_oracle.assert_matches(result, expected)
        check_properties(result, case)
        with make_client(root / "duckdb") as client:
            client.apply([DRIVER, CUSTOMER, *tables])
            duck = client.get_historical_features(case.refs, source).to_arrow()
        _same(result, duck)
