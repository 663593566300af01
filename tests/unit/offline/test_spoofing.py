"""A pass-through column named like a feature's result column is refused, in-process, on every read."""

from __future__ import annotations

from pathlib import Path

import pytest

import provender as pv
from tests.support.builders import CUSTOMER, DRIVER, make_client, with_source_path
from tests.support.retrieval import PAIRS, STATS, entities

SPOOFS = ["driver_stats__trips", "driver_stats__conv_rate"]


@pytest.mark.parametrize("column", SPOOFS)
@pytest.mark.parametrize("refs", [["driver_stats"], ["driver_stats:trips", "driver_stats:conv_rate"]])
def test_historical_and_online_refuse_spoofed_columns(tmp_path: Path, column: str, refs: list[str]) -> None:
    tables = [with_source_path(t, str(tmp_path / "missing" / t.name)) for t in (STATS, PAIRS)]
    with make_client(tmp_path / "project") as client:
        client.apply([DRIVER, CUSTOMER, *tables])
        with pytest.raises(pv.DataError, match=rf"named like result columns: '{column}'"):
            client.get_historical_features(refs, entities(**{column: [1, 2]}))
        with pytest.raises(pv.DataError, match=rf"named like result columns: '{column}'"):
            client.get_online_features(refs, [{"driver_id": 1, column: 99}, {"driver_id": 2, column: 98}])
        # Other pass-through names still pass through.
        rows = client.get_online_features(refs, [{"driver_id": 1, "driver_stats_trips": 5}]).to_dict()
        assert rows["driver_stats_trips"] == [5]
