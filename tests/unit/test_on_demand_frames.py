"""The online shortcuts of pandas mode equal the Arrow conversions they skip (``provender.on_demand``).

Online, a request's plain values become the function's DataFrame through NumPy arrays (not
``pa.table(...).to_pandas()``), and the function's numeric columns become plain values through
``tolist()`` (not ``pa.array(..., from_pandas=True).to_pylist()``). Generated values (nulls, NaN,
infinities, -0.0, ints sent for doubles, values beyond FLOAT's range) go through the online path
with pandas' internals, through the online path without them, and through the offline path
(a record batch, Arrow all the way): every value and every input dtype must be the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import provender as pv
import provender.on_demand as on_demand
from provender.definitions.request import FeatureRequest
from provender.errors import OnDemandFunctionError

V = pv.ValueType
TABLE = pv.FeatureTable(
    name="t",
    entities=["driver_id"],
    features=[
        pv.Feature("a", V.INT64),
        pv.Feature("b", V.FLOAT),
        pv.Feature("c", V.DOUBLE),
        pv.Feature("d", V.BOOL),
        pv.Feature("e", V.INT32),
    ],
    batch_source=pv.FileSource(path="unused", event_timestamp_column="event_timestamp"),
)
INPUT_TYPES = {"t__a": V.INT64, "t__b": V.FLOAT, "t__c": V.DOUBLE, "t__d": V.BOOL, "t__e": V.INT32, "r": V.DOUBLE}
OUTPUTS = [
    pv.Feature("a", V.INT64),
    pv.Feature("b", V.FLOAT),
    pv.Feature("c", V.DOUBLE),
    pv.Feature("d", V.BOOL),
    pv.Feature("e", V.INT32),
    pv.Feature("dtypes", V.STRING),
]


def runner(function: str, features: Sequence[pv.Feature] = OUTPUTS, mode: str = "pandas") -> on_demand.OnDemandRunner:
    odf = pv.OnDemandFeatures(
        name="copies",
        inputs=[f"t:{name}" for name in "abcde"],
        request_schema={"r": V.DOUBLE},
        features=list(features),
        function=f"tests.support.on_demand_functions:{function}",
        mode=mode,
    )
    request = FeatureRequest.resolve(
        ["copies"],
        feature_tables={"t": TABLE},
        entities={"driver_id": pv.Entity(name="driver_id", value_type=V.INT64)},
        on_demand_features={"copies": odf},
    )
    return on_demand.OnDemandRunner(request, load=lambda _: on_demand._import(odf))


@contextmanager
def without_pandas_internals() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(on_demand, "_pandas_hooks", lambda: (None, None))
        yield


def same(values: Sequence[object]) -> list[tuple[type, str]]:
    """Values compared with their types (1 is not 1.0, -0.0 is not 0.0)."""
    return [(type(v), repr(v)) for v in values]


FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([-0.0, 3.4028235e38, 3.5e38, 1e-46])
VALUES = {
    V.INT64: st.none() | st.integers(-(2**63), 2**63 - 1),
    V.FLOAT: st.none() | FLOATS,
    V.DOUBLE: st.none() | FLOATS,
    V.BOOL: st.none() | st.booleans(),
    V.INT32: st.none() | st.integers(-(2**31), 2**31 - 1),
}


@st.composite
def columns(draw: st.DrawFn) -> dict[str, list[object]]:
    rows = draw(st.integers(1, 4))
    nulls = draw(st.booleans())  # half the examples without nulls: the shortcut's own case

    def values(value_type: pv.ValueType) -> list[object]:
        strategy = VALUES[value_type]
        if not nulls:
            strategy = strategy.filter(lambda v: v is not None)
        return draw(st.lists(strategy, min_size=rows, max_size=rows))

    result = {name: values(value_type) for name, value_type in INPUT_TYPES.items()}
    if draw(st.booleans()):  # a JSON client's whole amounts
        result["r"] = [int(v) if isinstance(v, float) and v.is_integer() and abs(v) < 2**53 else v for v in result["r"]]
    return result


def outcome(compute: Callable[[], dict[str, list[object]]]) -> object:
    """The values (with their types) or the error (e.g. a null made the INT64 column float64, so a
    big value no longer converts back: the same on every path)."""
    try:
        return {name: same(values) for name, values in compute().items()}
    except OnDemandFunctionError as error:
        return str(error)


def offline(run: on_demand.OnDemandRunner, values: dict[str, list[object]]) -> dict[str, list[object]]:
    arrays = [pa.array(values[name], type=value_type.to_arrow()) for name, value_type in INPUT_TYPES.items()]
    batch = pa.RecordBatch.from_arrays(arrays, names=list(INPUT_TYPES))
    return {name: array.to_pylist() for name, array in run.run_batch(batch).items()}


@settings(max_examples=300, deadline=None)
@given(columns())
def test_online_values_and_input_dtypes_equal_offline_with_and_without_pandas_internals(
    values: dict[str, list[object]],
) -> None:
    run = runner("typed_copies")
    expected = outcome(lambda: offline(run, values))
    with without_pandas_internals():
        public = outcome(lambda: run.run_rows(values))
    assert outcome(lambda: run.run_rows(values)) == expected
    assert public == expected


@settings(max_examples=200, deadline=None)
@given(columns())
def test_the_input_frame_equals_arrows_to_pandas(values: dict[str, list[object]]) -> None:
    arrow = pa.table(
        [pa.array(values[name], type=value_type.to_arrow()) for name, value_type in INPUT_TYPES.items()],
        names=list(INPUT_TYPES),
    ).to_pandas()
    arrays = [on_demand._numpy_column(values[name], value_type) for name, value_type in INPUT_TYPES.items()]
    for name, array in zip(INPUT_TYPES, arrays, strict=True):
        if array is not None:
            pd.testing.assert_series_equal(pd.Series(array, name=name), arrow[name], check_exact=True)
    if all(array is not None for array in arrays):
        frame = on_demand._frame(tuple(INPUT_TYPES), arrays)  # type: ignore[arg-type]
        pd.testing.assert_frame_equal(frame, arrow, check_exact=True)
        with without_pandas_internals():
            public = on_demand._frame(tuple(INPUT_TYPES), arrays)  # type: ignore[arg-type]
        pd.testing.assert_frame_equal(public, arrow, check_exact=True)


@pytest.mark.parametrize(
    ("value_type", "dtype"),
    [(V.DOUBLE, np.float64), (V.FLOAT, np.float32), (V.INT64, np.int64), (V.INT32, np.int32), (V.BOOL, np.bool_)],
)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_an_output_array_of_the_declared_dtype_reads_as_arrow_reads_it(
    value_type: pv.ValueType, dtype: type[np.generic], data: st.DataObject
) -> None:
    raw = data.draw(st.lists(VALUES[value_type].filter(lambda v: v is not None), max_size=5))
    if value_type is V.FLOAT:
        raw = [v for v in raw if not abs(v) > 3.4028235e38]  # type: ignore[arg-type]
    array = np.array(raw, dtype=dtype)
    got = on_demand._from_numpy(array, value_type)
    assert got is not None
    assert same(got) == same(pa.array(pd.Series(array), type=value_type.to_arrow(), from_pandas=True).to_pylist())


def test_an_output_array_of_another_dtype_is_left_to_arrow() -> None:
    assert on_demand._from_numpy(np.array([1.0, 2.0]), V.FLOAT) is None
    assert on_demand._from_numpy(np.array([1, 2]), V.DOUBLE) is None
    assert on_demand._from_numpy(np.array([[1.0]]), V.DOUBLE) is None
    assert on_demand._from_numpy(pd.array([1.0, None], dtype="Float64"), V.DOUBLE) is None
    assert on_demand._from_numpy([1.0], V.DOUBLE) is None


def test_the_pandas_internals_the_shortcuts_use_are_there() -> None:
    """A pandas without them still gives the same values, only slower: this test says so."""
    from_arrays, iter_arrays = on_demand._pandas_hooks()
    assert from_arrays is not None and iter_arrays is not None


def test_duplicated_output_columns_are_the_same_error_online_and_offline() -> None:
    run = runner("duplicated_columns", [pv.Feature("c", V.DOUBLE)])
    values: dict[str, list[object]] = {name: [1] if name.endswith(("a", "e")) else [1.0] for name in INPUT_TYPES}
    values["t__d"] = [True]
    with pytest.raises(OnDemandFunctionError) as online:
        run.run_rows(values)
    with pytest.raises(OnDemandFunctionError) as from_batch:
        offline(run, values)
    assert "returned columns ['c', 'c']; a declared feature appears twice" in str(online.value)
    assert str(online.value) == str(from_batch.value)


@pytest.mark.parametrize("function", ["added_to_input", "added_to_input_python"])
def test_a_function_may_return_its_input_with_the_features_added(function: str) -> None:
    """Columns other than the declared features (here the inputs themselves) are ignored, on both paths."""
    run = runner(function, [pv.Feature("c", V.DOUBLE)], mode="python" if function.endswith("_python") else "pandas")
    values: dict[str, list[object]] = {name: [1] if name.endswith(("a", "e")) else [1.5] for name in INPUT_TYPES}
    values["t__d"] = [True]
    values["t__c"], values["r"] = [1.5, None], [2.0, 3.0]
    for name in INPUT_TYPES:
        values[name] = (values[name] * 2)[:2]
    assert run.run_rows(values) == {"copies__c": [3.5, None]}
    assert offline(run, values) == {"copies__c": [3.5, None]}
