"""The DuckDB engine against the brute-force oracle, on random data (Hypothesis).

The cases (``tests/support/differential.py``) cover layouts, formats, ``max_age`` edges, ties,
nanosecond and zoned entity times and pandas/Arrow/Parquet entity rows.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, given, settings

from tests.support import pit_oracle
from tests.support.builders import CUSTOMER, DRIVER, ENTITIES, make_client, write_table
from tests.support.differential import Case, cases, check_properties, entity_frame, entity_source


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_duckdb_engine_agrees_with_oracle(case: Case) -> None:
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
        with make_client(root / "project") as client:
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
