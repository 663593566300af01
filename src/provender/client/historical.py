"""Historical retrieval at the SDK's edge: entity sources in, training data out."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import pyarrow as pa

from provender.config import StorageSection
from provender.definitions import FeatureTable
from provender.errors import BackendError, DataError
from provender.ingestion.validation import ValidationReport, validate_training_set
from provender.offline.engine import EntityRows, RetrievalJob
from provender.offline.lineage import SourceInput
from provender.offline.lineage import to_json as lineage_to_json
from provender.offline.objectstore import is_object_store_url, list_files, open_store, store_dataset, write_parquet
from provender.offline.plan import RetrievalPlan, is_compatible
from provender.on_demand import OnDemandRunner

if TYPE_CHECKING:
    import pandas as pd

_T = TypeVar("_T")


def to_entity_rows(entity_source: object, *, storage: StorageSection | None = None) -> EntityRows:
    """Convert what a user hands ``get_historical_features`` to :class:`EntityRows`, once.

    Accepts a pandas DataFrame (never modified), a pyarrow Table, or a Parquet path: a file, a
    directory or a glob (local), or an ``s3://`` or ``gs://`` file or prefix (read with
    ``storage``, the object stores' settings, else the standard environment variables).
    """
    if is_object_store_url(entity_source):
        assert isinstance(entity_source, str)
        return _object_store_rows(entity_source, storage)
    if isinstance(entity_source, pa.Table):
        return EntityRows(schema=entity_source.schema, table=entity_source)
    if isinstance(entity_source, str | Path):
        return _parquet_rows(str(entity_source))
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(entity_source, pd.DataFrame):
        table = pa.Table.from_pandas(entity_source, preserve_index=False)
        return EntityRows(schema=table.schema, table=table.replace_schema_metadata(None))
    raise DataError(
        f"entity_source must be a pandas DataFrame, a pyarrow Table or a Parquet path, "
        f"got {type(entity_source).__name__}"
    )


def _object_store_rows(url: str, storage: StorageSection | None) -> EntityRows:
    what = f"The entity source ({url})"
    store = open_store(url, storage, what)
    files = list_files(store, url, suffix=".parquet", what=what, partition_column=None, dates=None)
    try:
        schema = store_dataset(store, files, root=None).schema
    except OSError as exc:
        raise DataError(f"{what}: cannot read: {store.scrub(str(exc))}") from None
    return EntityRows(schema=schema, paths=tuple(files))


def _parquet_rows(path: str) -> EntityRows:
    import pyarrow.dataset as ds  # imports pandas: only when a path is given

    try:
        if any(c in path for c in "*?["):
            import glob

            files = sorted(glob.glob(path, recursive=True))
            if not files:
                raise DataError(f"The entity source glob {path!r} matches no files.")
            dataset = ds.dataset(files, format="parquet")
        else:
            if "://" not in path and not Path(path).exists():
                raise DataError(f"The entity source {path!r} does not exist.")
            dataset = ds.dataset(path, format="parquet")
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError(f"Cannot read the entity source {path!r} as Parquet: {exc}") from exc
    if not dataset.files:
        raise DataError(f"The entity source {path!r} holds no Parquet files.")
    files = sorted(dataset.files)
    scheme = path.split("://", 1)[0] if "://" in path else "file"
    if scheme != "file":  # pyarrow lists object-store files without their scheme; engines need it back
        files = [f if "://" in f else f"{scheme}://{f}" for f in files]
    return EntityRows(schema=dataset.schema, paths=tuple(files))


def on_demand_job(job: RetrievalJob, plan: RetrievalPlan, entity_schema: pa.Schema) -> RetrievalJob:
    """Return ``job``, or, if the plan requests on-demand features, a job computing them batch by batch.

    Raises:
        DataError: the entity source lacks a request field, or has it with a type that does not convert.
    """
    request = plan.request
    if request is None or not request.on_demand:
        return job
    runner = OnDemandRunner(request)
    for name, value_type in runner.request_fields.items():
        users = ", ".join(r.definition.name for r in request.on_demand if name in r.definition.request_schema)
        if name not in entity_schema.names:
            raise DataError(
                f"The entity source has no column {name!r}, a request field of on-demand features {users} "
                f"(columns: {', '.join(entity_schema.names)})."
            )
        found, declared = entity_schema.field(name).type, value_type.to_arrow()
        numeric = pa.types.is_floating(declared) and pa.types.is_integer(found)
        if not (numeric or is_compatible(declared, found)):
            raise DataError(
                f"Column {name!r} of the entity source has type {found}, but it is request field {name!r} "
                f"({value_type}) of on-demand features {users}."
            )
    return _OnDemandJob(job, runner, entity_columns=plan.entity_columns)


class _OnDemandJob:
    """A retrieval whose on-demand features are computed over each record batch the engine streams."""

    def __init__(self, job: RetrievalJob, runner: OnDemandRunner, *, entity_columns: tuple[str, ...]) -> None:
        self._job, self._runner, self._entity_columns = job, runner, entity_columns

    @property
    def inputs(self) -> object:
        """The wrapped job's lineage (None if its engine records none)."""
        return getattr(self._job, "inputs", None)

    def to_arrow_reader(self) -> pa.RecordBatchReader:
        reader = self._job.to_arrow_reader()
        request = self._runner.request
        fields = [reader.schema.field(name) for name in self._entity_columns]
        for column in request.columns:
            index = reader.schema.get_field_index(column)
            fields.append(
                reader.schema.field(index) if index >= 0 else pa.field(column, request.types[column].to_arrow())
            )
        schema = pa.schema(fields)

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in reader:
                computed = self._runner.run_batch(batch)
                arrays = [computed[name] if name in computed else batch.column(name) for name in schema.names]
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)

        return pa.RecordBatchReader.from_batches(schema, batches())

    def to_arrow(self) -> pa.Table:
        return self.to_arrow_reader().read_all()

    def to_parquet(self, path: str | Path) -> int:
        import pyarrow.parquet as pq

        reader = self.to_arrow_reader()
        rows = 0
        with pq.ParquetWriter(str(path), reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
                rows += batch.num_rows
        return rows


class HistoricalJob:
    """The result of ``get_historical_features``; the join runs when a result is asked for.

    Examples:
        >>> job.to_pandas()  # doctest: +SKIP
        >>> job.to_parquet("training.parquet")  # doctest: +SKIP
    """

    def __init__(
        self,
        job: RetrievalJob,
        *,
        output_columns: tuple[str, ...],
        track: Callable[[], RunReport | None] | None = None,
        expectations: Sequence[tuple[FeatureTable, Sequence[str], Mapping[str, str]]] = (),
        check_output: Callable[[str | Path], None] | None = None,
        storage: StorageSection | None = None,
    ) -> None:
        self._job = job
        self._storage = storage
        self.output_columns = output_columns
        self._track = track
        self._expectations = tuple(expectations)
        self._check_output = check_output
        self._record_id: str | None = None

    @property
    def id(self) -> str | None:
        """The id of the job record of the last result computed (``to_pandas``, ``to_arrow``, ``to_parquet``).

        Each result is one retrieval, recorded as a job (kind ``historical``, with its lineage):
        ``client.get_job(job.id)``. None before a result is computed, or if the registry refused the record.
        """
        return self._record_id

    def _recorded(self, produce: Callable[[], _T], rows_of: Callable[[_T], int]) -> _T:
        """Run ``produce``, recorded as a job in the registry (RUNNING, then SUCCEEDED or FAILED)."""
        report = None if self._track is None else self._track()
        if report is None:
            return produce()
        record = getattr(report, "record", None)
        self._record_id = getattr(record, "id", None)
        try:
            result = produce()
        except BaseException as exc:
            report.failed(f"{type(exc).__name__}: {exc}")
            raise
        inputs = getattr(self._job, "inputs", None)
        report.succeeded(rows_of(result), lineage=None if inputs is None else lineage_to_json(inputs))
        return result

    def lineage(self) -> tuple[SourceInput, ...]:
        """What the training set is read from: per feature table, its files or Delta version.

        Files come with their sizes and modification times (Delta files also with the table
        version); pruned partitions and files are not listed.

        Raises:
            BackendError: the engine does not record lineage.
        """
        inputs = getattr(self._job, "inputs", None)
        if inputs is None:
            raise BackendError(f"The {type(self._job).__name__} engine job does not record lineage yet.")
        return tuple(inputs)

    def to_arrow(self) -> pa.Table:
        """Return the training set as an Arrow table."""
        return self._recorded(self._job.to_arrow, lambda table: table.num_rows)

    def to_pandas(self) -> pd.DataFrame:
        """Return the training set as a pandas DataFrame (timestamps UTC-aware)."""
        return self.to_arrow().to_pandas()

    def to_arrow_reader(self) -> pa.RecordBatchReader:
        """Stream the training set in record batches."""
        return self._job.to_arrow_reader()

    def validate(self) -> ValidationReport:
        """Check the training set against its features' expectations (``not_null`` flags values missing at T).

        Runs the retrieval (streaming) and returns the same kind of report as ingestion, policy
        ``"report"``; a violation names the result column (``<table>__<feature>``).
        """
        return validate_training_set(self._job.to_arrow_reader(), self._expectations)

    def to_parquet(self, path: str | Path) -> int:
        """Stream the training set to a Parquet file without holding it in memory; return its rows.

        ``path`` may be an ``s3://`` or ``gs://`` object (written with the object stores'
        settings): it appears only once complete.

        Raises:
            SourcePathNotAllowedError: ``path`` is outside ``sources.allowed_roots``.
        """
        if self._check_output is not None:
            self._check_output(path)
        if is_object_store_url(path):
            url, what = str(path), "The training set's output"
            return self._recorded(
                lambda: write_parquet(self._storage, url, self._job.to_arrow_reader(), what=what), lambda rows: rows
            )
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return self._recorded(lambda: self._job.to_parquet(path), lambda rows: rows)


class RunReport(Protocol):
    """How a retrieval reports its outcome to its job record."""

    def succeeded(self, rows: int, *, lineage: Mapping[str, object] | None = None) -> None:
        """Record the job SUCCEEDED with ``rows`` rows and ``lineage`` (what it read)."""
        ...

    def failed(self, error: str) -> None:
        """Record the job FAILED with ``error``."""
        ...
