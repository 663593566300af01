"""The DuckDB engine's deterministic retrieval tests, run on the Spark engine.

The tests are those of ``tests/unit/offline/test_retrieval.py`` and ``test_bad_input.py`` that
reach the offline engine (the others test the plan, which both engines share), imported here
unchanged. An autouse fixture makes their ``make_client`` open projects with the session's
local Spark engine, so the same assertions hold for both engines. Tests about DuckDB's own
settings stay DuckDB-only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import provender as pv
from tests.support import builders
from tests.unit.offline import test_bad_input, test_retrieval
from tests.unit.offline.test_bad_input import (  # noqa: F401 - collected here, with their fixtures
    test_missing_source_path_names_the_table,
    test_narrower_entity_keys_are_accepted,
    test_null_event_timestamp_names_the_row,
    test_source_column_of_the_wrong_type,
    test_source_directory_without_files,
    test_source_event_timestamp_that_is_not_a_time,
    test_source_missing_a_column,
    test_source_missing_its_created_column,
    test_the_fixture_data_is_good,
    test_unreadable_source_file,
)
from tests.unit.offline.test_retrieval import (  # noqa: F401 - collected here, with their fixtures
    DAY0,
    test_a_max_age_longer_than_any_calendar_means_no_bound,
    test_an_empty_entity_source_gives_an_empty_typed_result,
    test_aware_entity_times_are_converted_to_utc,
    test_aware_extra_columns_keep_their_instants,
    test_columns_differing_only_in_case_stay_apart,
    test_created_time_breaks_ties_and_missing_created_ranks_lowest,
    test_csv_sources,
    test_csv_with_an_empty_created_column,
    test_csv_with_another_delimiter,
    test_date_entity_times_mean_midnight_utc,
    test_entity_source_kinds_give_the_same_result,
    test_extra_columns_of_exotic_types_pass_through,
    test_extra_columns_pass_through_unchanged,
    test_field_mapping_renames_source_columns,
    test_max_age_exactly_at_the_bound,
    test_naive_times_are_utc_whatever_the_local_time_zone,
    test_nanosecond_entity_times_never_see_the_future,
    test_nothing_in_any_partition_gives_nulls,
    test_null_keys_match_nothing,
    test_output_types_are_the_declared_ones,
    test_pandas_arrow_and_parquet_results_are_equal,
    test_partition_dates_are_utc_dates,
    test_partitions_outside_the_window_are_not_opened,
    test_the_callers_dataframe_is_not_modified,
    test_the_known_answer,
    test_without_max_age_only_later_partitions_are_skipped,
)

pytestmark = [pytest.mark.service, pytest.mark.slow]

# Their fixtures, found by pytest in this module's namespace.
client = test_bad_input.client
sourceless = test_bad_input.sourceless
project = test_retrieval.project
local_time_zone = test_retrieval.local_time_zone


@pytest.fixture(autouse=True)
def on_spark(monkeypatch: pytest.MonkeyPatch, spark_engine: object, spark_options: dict[str, object]) -> Iterator[None]:
    """Open every project of the imported tests with the shared local Spark session."""

    def make_client(project_dir: Path, *, offline: dict[str, object] | None = None) -> pv.Client:
        assert offline is None, "a test with its own offline settings is DuckDB-specific"
        opened = builders.make_client(project_dir, offline=spark_options)
        assert opened.settings.offline.engine == "spark"
        return opened

    for module in (test_retrieval, test_bad_input):
        monkeypatch.setattr(module, "make_client", make_client)
    yield
