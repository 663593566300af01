"""On-demand features at run time: import the function safely, run it the same way on every path.

**How the function reaches a process.** The registry stores only the function's import path
(``"package.module:function"``), never code. ``apply`` imports the function once to check it
exists, and records the version of the installed distribution that provides its module
(``"name==version"``, or None if the module is not part of one) and a digest of the function's
source. Every process that computes the features (historical retrieval, the SDK's online reads,
each serving replica) imports the function from *its own* installed modules and refuses it, with
an :class:`~provender.errors.OnDemandFunctionError` naming the features and the function, when
it is missing, not callable, or not the version or source that was applied. So training and
serving run the same code, or fail loudly; deploy the module with the serving image and
re-apply after changing it.

**One conversion path.** Offline (a record batch of the training set) and online (a request's
rows as plain Python values) build the same input: an Arrow table with one column per input
feature (``<table>__<feature>``, typed as registered) and per request field (by name, typed by
``request_schema``); the function gets it as a pandas DataFrame (``mode="pandas"``) or as a dict
of plain Python lists (``mode="python"``). Its output is converted to the declared feature types
with Arrow, then offline kept as Arrow and online turned into plain Python values. So the four
paths (historical, in-process, HTTP, gRPC) give the same values.

**Online shortcuts, equal by construction.** Arrow's ``to_pandas`` costs about 0.25 ms of CPU on
a 1-row table, more than the rest of a read. So online, a column whose values are all of the
numeric or boolean type Arrow would make of them (``_NUMPY``: no null except in float columns,
where Arrow's null is pandas' NaN too) becomes a NumPy array of the very dtype ``to_pandas``
gives, and the DataFrame is built from those arrays; and an output column that is already a
Series (or array) of the declared type's dtype is read with ``tolist()``, NaN as None as Arrow's
``from_pandas`` reads it. Any other column takes the Arrow path. ``tests/unit/test_on_demand_frames.py``
checks both shortcuts against the Arrow conversions on generated values.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.metadata
import inspect
import math
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from provender.definitions.feature_table import Feature
from provender.definitions.on_demand import OnDemandFeatures
from provender.definitions.request import FeatureRequest, RequestedOnDemand
from provender.definitions.types import ValueType
from provender.errors import DataError, OnDemandFunctionError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["OnDemandRunner", "describe_function", "load_function", "record_function"]

Function = Callable[[object], object]

_loaded: dict[tuple[str, str | None, str | None], Function] = {}
_lock = threading.Lock()


def _import(odf: OnDemandFeatures) -> Function:
    module_name, _, attribute = odf.function.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is reported as this error
        raise OnDemandFunctionError(
            odf.name,
            odf.function,
            f"cannot import module {module_name!r} ({type(exc).__name__}: {exc}); install it where the features "
            "are computed (the serving image too)",
        ) from None
    function = getattr(module, attribute, None)
    if function is None or not callable(function):
        raise OnDemandFunctionError(odf.name, odf.function, f"module {module_name!r} has no function {attribute!r}")
    return function  # type: ignore[no-any-return]


@functools.cache
def _distributions() -> Mapping[str, list[str]]:
    return importlib.metadata.packages_distributions()


def describe_function(function: object) -> tuple[str | None, str | None]:
    """Return ``(version, digest)`` of a function: its distribution's ``"name==version"``, its source's digest.

    Either is None when unknown (a module outside any installed distribution, no source file).
    """
    module = str(getattr(function, "__module__", ""))
    names = _distributions().get(module.split(".", 1)[0], [])
    version = None
    if names:
        try:
            version = f"{names[0]}=={importlib.metadata.version(names[0])}"
        except importlib.metadata.PackageNotFoundError:
            version = None
    try:
        source = inspect.getsource(function)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return version, None
    return version, hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def record_function(odf: OnDemandFeatures) -> OnDemandFeatures:
    """Import ``odf``'s function (``apply`` does) and return ``odf`` with its version and digest recorded.

    Raises:
        OnDemandFunctionError: the function cannot be imported.
    """
    version, digest = describe_function(_import(odf))
    return dataclasses.replace(odf, function_version=version, function_digest=digest)


def load_function(odf: OnDemandFeatures) -> Function:
    """Import ``odf``'s function once per process, checking it is the applied version and source.

    Raises:
        OnDemandFunctionError: missing, not callable, or another version or source than applied.
    """
    key = (odf.function, odf.function_version, odf.function_digest)
    function = _loaded.get(key)
    if function is not None:
        return function
    with _lock:
        function = _import(odf)
        version, digest = describe_function(function)
        if odf.function_version is not None and version != odf.function_version:
            raise OnDemandFunctionError(
                odf.name,
                odf.function,
                f"was applied from {odf.function_version}, but this process has {version or 'no distribution'}; "
                "install the applied version, or apply the definitions again",
            )
        if odf.function_digest is not None and digest != odf.function_digest:
            raise OnDemandFunctionError(
                odf.name,
                odf.function,
                f"its source differs from the applied one (digest {digest} here, {odf.function_digest} applied); "
                "deploy the applied code, or apply the definitions again",
            )
        _loaded[key] = function
    return function


Column: TypeAlias = pa.Array | list[object]
"""A column of values of one declared type: an Arrow array, or a list of plain Python values
that Arrow would give exactly the same (see :func:`_convert`)."""


class OnDemandRunner:
    """Computes the on-demand features of one resolved request, online or offline.

    Args:
        request: the resolved request (:meth:`FeatureRequest.resolve`).
        load: imports a function (default :func:`load_function`).
    """

    def __init__(
        self, request: FeatureRequest, *, load: Callable[[OnDemandFeatures], Function] = load_function
    ) -> None:
        self.request = request
        self._load = load
        self._types = request.types

    @property
    def request_fields(self) -> dict[str, ValueType]:
        """Every request field the on-demand features need, with its type."""
        fields: dict[str, ValueType] = {}
        for requested in self.request.on_demand:
            odf = requested.definition
            for name, value_type in odf.request_schema.items():
                known = fields.setdefault(name, value_type)
                if known is not value_type:
                    raise DataError(
                        f"Request field {name!r} is {known} for one of the requested on-demand features and "
                        f"{value_type} for {odf.name!r}; request them separately."
                    )
        return fields

    def run_rows(self, columns: Mapping[str, Sequence[object]]) -> dict[str, list[object]]:
        """Online: compute every requested on-demand column from plain-Python columns.

        ``columns`` holds the fetched feature columns and the request's entity-row columns
        (where the request fields are).

        Raises:
            DataError: a request field is missing or of the wrong type (naming it and the row).
            OnDemandFunctionError: the function is missing, fails, or returns bad output.
        """
        result: dict[str, list[object]] = {}
        for requested in self.request.on_demand:
            odf = requested.definition
            argument: object
            if odf.mode == "pandas":
                argument = self._online_frame(odf, columns)
                rows = len(argument)  # type: ignore[arg-type]
            else:
                inputs = self._online_inputs(odf, columns, arrow=False)
                argument = {name: _plain(values) for name, values in inputs.items()}
                rows = len(next(iter(inputs.values()), ()))
            output = self._call(odf, argument)
            checked = _check_output(requested, output, rows, plain=True)
            for column, values in zip(requested.columns, checked, strict=True):
                result[column] = _plain(values)
        return result

    def run_batch(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        """Offline: compute every requested on-demand column of one record batch of the training set.

        Raises:
            DataError: a request field does not convert to its type.
            OnDemandFunctionError: the function is missing, fails, or returns bad output.
        """
        result: dict[str, pa.Array] = {}
        table = pa.Table.from_batches([batch])
        for requested in self.request.on_demand:
            odf = requested.definition
            arrays = []
            for name, value_type in self._input_types(odf):
                column = table.column(name)
                try:
                    arrays.append(column.cast(value_type.to_arrow()))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise DataError(f"Column {name!r} does not convert to {value_type}: {exc}") from None
            inputs = pa.table(arrays, names=[name for name, _ in self._input_types(odf)])
            argument = inputs.to_pandas() if odf.mode == "pandas" else inputs.to_pydict()
            output = self._call(odf, argument)
            converted = _check_output(requested, output, inputs.num_rows)
            result.update(
                zip(
                    requested.columns,
                    (_arrow(v, f) for v, f in zip(converted, requested.features, strict=True)),
                    strict=True,
                )
            )
        return result

    def _input_types(self, odf: OnDemandFeatures) -> list[tuple[str, ValueType]]:
        return [*((c, self._types[c]) for c in odf.input_columns), *odf.request_schema.items()]

    def _online_frame(self, odf: OnDemandFeatures, columns: Mapping[str, Sequence[object]]) -> object:
        """The pandas input of ``odf``: from NumPy arrays when every column allows, else through Arrow."""
        names, arrays = [], []
        for name, value_type in self._input_types(odf):
            array = _numpy_column(columns.get(name), value_type)
            if array is None:
                break
            names.append(name)
            arrays.append(array)
        else:
            if arrays and all(len(array) == len(arrays[0]) for array in arrays):
                return _frame(tuple(names), arrays)
        inputs = self._online_inputs(odf, columns, arrow=True)
        return pa.table(list(inputs.values()), names=list(inputs)).to_pandas()

    def _online_inputs(
        self, odf: OnDemandFeatures, columns: Mapping[str, Sequence[object]], *, arrow: bool
    ) -> dict[str, Column]:
        inputs: dict[str, Column] = {}
        for name, value_type in self._input_types(odf):
            values = columns.get(name)
            if values is None:
                raise DataError(
                    f"The entity rows have no field {name!r}, a request field ({value_type}) of on-demand "
                    f"features {odf.name!r}; pass it in every entity row."
                )
            try:
                inputs[name] = (
                    pa.array(values, type=value_type.to_arrow())
                    if arrow
                    else _convert(values, value_type, from_pandas=False)
                )
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
                raise DataError(
                    f"Request field {name!r} of on-demand features {odf.name!r} is not {value_type}: {exc}"
                ) from None
        return inputs

    def _call(self, odf: OnDemandFeatures, argument: object) -> object:
        function = self._load(odf)
        try:
            return function(argument)
        except Exception as exc:
            raise OnDemandFunctionError(odf.name, odf.function, f"raised {type(exc).__name__}: {exc}") from exc


_INT64 = range(-(2**63), 2**63)
# Declared types whose plain-Python values are used as they are when every value already has the
# exact type Arrow would give back (so skipping Arrow changes nothing); other types always convert.
_AS_IS: dict[ValueType, Callable[[object], bool]] = {
    ValueType.DOUBLE: lambda v: type(v) is float,
    ValueType.INT64: lambda v: type(v) is int and v in _INT64,
    ValueType.STRING: lambda v: type(v) is str,
    ValueType.BOOL: lambda v: type(v) is bool,
}


def _convert(values: object, value_type: ValueType, *, from_pandas: bool) -> Column:
    """Return ``values`` as a column of ``value_type``: as they are if already exact, else through Arrow.

    Raises:
        pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError: a value does not convert.
    """
    exact = _AS_IS.get(value_type)
    if exact is not None and type(values) is list and all(v is None or exact(v) for v in values):
        return values
    return pa.array(values, type=value_type.to_arrow(), from_pandas=from_pandas)


_FLOAT32_MAX = float(np.finfo(np.float32).max)
# The dtype Arrow's to_pandas gives a column of each type, and which plain values convert to it
# exactly as Arrow converts them (None only where Arrow's null is NaN in pandas too).
_NUMPY: dict[ValueType, tuple[np.dtype[Any], Callable[[object], bool]]] = {
    ValueType.DOUBLE: (np.dtype(np.float64), lambda v: v is None or type(v) is float),
    ValueType.FLOAT: (
        np.dtype(np.float32),
        lambda v: v is None or (type(v) is float and -_FLOAT32_MAX <= v <= _FLOAT32_MAX),
    ),
    ValueType.INT64: (np.dtype(np.int64), lambda v: type(v) is int and v in _INT64),
    ValueType.INT32: (np.dtype(np.int32), lambda v: type(v) is int and -(2**31) <= v < 2**31),
    ValueType.BOOL: (np.dtype(np.bool_), lambda v: type(v) is bool),
}


def _numpy_column(values: Sequence[object] | None, value_type: ValueType) -> npt.NDArray[Any] | None:
    """``values`` as the NumPy array Arrow's ``to_pandas`` would give, or None if not sure it would."""
    entry = _NUMPY.get(value_type)
    if entry is None or type(values) is not list:
        return None
    dtype, exact = entry
    if not all(exact(v) for v in values):
        return None
    return np.array(values, dtype=dtype)


def _from_numpy(array: object, value_type: ValueType) -> list[object] | None:
    """A 1-d array of exactly ``value_type``'s dtype as plain values (NaN as None), else None."""
    entry = _NUMPY.get(value_type)
    if entry is None or type(array) is not np.ndarray or array.dtype != entry[0] or array.ndim != 1:
        return None
    plain: list[object] = array.tolist()
    if array.dtype.kind == "f" and np.isnan(array).any():
        plain = [None if math.isnan(v) else v for v in plain]  # type: ignore[arg-type]
    return plain


@functools.cache
def _pandas_hooks() -> tuple[Callable[..., Any] | None, Callable[[Any], Iterator[object]] | None]:
    """Return pandas' own column-array constructor and reader, if this pandas has them (2.x does).

    ``DataFrame._from_arrays`` is what ``DataFrame(dict)`` ends in, without re-checking arrays
    already built here (about 40 us of a 1-row frame's 80); ``DataFrame._iter_column_arrays``
    gives a column's array without building a Series (about 40 us per column). Both are pandas
    internals: without them (another pandas) the public constructor and ``frame[name]`` are used,
    and ``tests/unit/test_on_demand_frames.py`` fails so the change is seen.
    """
    import pandas as pd

    from_arrays = getattr(pd.DataFrame, "_from_arrays", None)
    iter_arrays = getattr(pd.DataFrame, "_iter_column_arrays", None)
    return from_arrays, iter_arrays


def _frame(names: tuple[str, ...], arrays: list[npt.NDArray[Any]]) -> object:
    """A DataFrame of ``arrays`` (1-d, equal lengths) named ``names``, with a fresh RangeIndex."""
    import pandas as pd

    from_arrays, _ = _pandas_hooks()
    if from_arrays is None:
        return pd.DataFrame(dict(zip(names, arrays, strict=True)), copy=False)
    # A copy of a cached column Index: the function may rename it without touching the next call's.
    columns = _column_index(names).copy()
    return from_arrays(arrays, columns=columns, index=pd.RangeIndex(len(arrays[0])), verify_integrity=False)


@functools.lru_cache(maxsize=256)
def _column_index(names: tuple[str, ...]) -> Any:  # noqa: ANN401 - a pandas Index (pandas is imported lazily)
    import pandas as pd

    return pd.Index(names)


def _frame_arrays(output: object) -> dict[object, object]:
    """The NumPy arrays of a DataFrame's columns (named once each: checked before), without building Series."""
    _, iter_arrays = _pandas_hooks()
    if iter_arrays is None:
        return {}
    names = output.columns  # type: ignore[attr-defined]
    return {name: array for name, array in zip(names, iter_arrays(output), strict=True) if type(array) is np.ndarray}


class _FrameColumns(Mapping[object, object]):
    """A DataFrame's columns by name, each Series built only when asked for."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame
        self._names = list(frame.columns)

    def __contains__(self, name: object) -> bool:
        return name in self._names  # (Mapping's own would build the Series)

    def __getitem__(self, name: object) -> object:
        if name not in self._names:
            raise KeyError(name)
        return self._frame[name]

    def __iter__(self) -> Iterator[object]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _plain(column: Column) -> list[object]:
    return column if isinstance(column, list) else column.to_pylist()


def _arrow(column: Column, feature: Feature) -> pa.Array:
    return column if isinstance(column, pa.Array) else pa.array(column, type=feature.value_type.to_arrow())


def _check_output(requested: RequestedOnDemand, output: object, rows: int, *, plain: bool = False) -> list[Column]:
    """The requested features' columns of ``output``, converted to their declared types.

    ``plain`` (online): columns may come back as plain-value lists read straight from NumPy.

    Raises:
        OnDemandFunctionError: not a table holding each declared column once (other columns, such as the
            input frame's own, are ignored), a value that does not convert (naming the feature), or another
            number of values than rows.
    """
    odf = requested.definition

    def fail(problem: str) -> OnDemandFunctionError:
        return OnDemandFunctionError(odf.name, odf.function, problem)

    columns = _output_columns(output)
    if columns is None:
        kind = "a pandas DataFrame or a mapping" if odf.mode == "pandas" else "a dict of lists"
        raise fail(f"returned {type(output).__name__}; expected {kind} with columns {list(odf.feature_names)}")
    missing = [name for name in odf.feature_names if name not in columns]
    if missing:
        raise fail(
            f"returned columns {[str(c) for c in columns]}; missing {missing} (declared {list(odf.feature_names)})"
        )
    named = [name for name in columns if name in odf.feature_names]
    if len(set(named)) != len(named):  # a frame may repeat a name
        raise fail(f"returned columns {[str(c) for c in columns]}; a declared feature appears twice")
    pandas = odf.mode == "pandas"
    arrays = _frame_arrays(output) if plain and type(columns) is _FrameColumns else {}
    converted = []
    for feature in requested.features:
        try:
            column = _from_numpy(arrays.get(feature.name), feature.value_type)
            if column is None:
                column = _convert(columns[feature.name], feature.value_type, from_pandas=pandas)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            raise fail(f"feature {feature.name!r} ({feature.value_type}): cannot convert its values: {exc}") from None
        if len(column) != rows:
            raise fail(f"feature {feature.name!r}: returned {len(column)} values for {rows} rows")
        converted.append(column)
    return converted


def _output_columns(output: object) -> Mapping[object, object] | None:
    if isinstance(output, Mapping):
        return output
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        return None
    if isinstance(output, pd.DataFrame):
        return _FrameColumns(output)
    return None
