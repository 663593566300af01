"""Expectations enforced on ingestion batches, and the validation report of a job.

Per-value expectations (``not_null``, ``between``, ``one_of``, ``matches``) mark violating rows
in each batch (vectorized, ``pyarrow.compute``); job-wide ones (``max_null_fraction`` on a
feature, ``row_count_between`` on the table) are checked once every row has been seen. The
policy says what happens (:func:`provender.definitions.expect`): ``fail`` (the job fails
before writing), ``skip`` (violating rows are not written; a job-wide violation still fails the
job, as skipping rows cannot repair it) or ``warn`` (everything is written).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from provender.definitions import Feature, FeatureTable
from provender.definitions import expect as ex
from provender.errors import DataError, JobCancelledError
from provender.offline.batches import WriteProgress, write_batches

EXAMPLES = 5
"""Example rows kept per violated expectation."""


@dataclass(slots=True, kw_only=True)
class Violation:
    """One violated expectation: where, how often, and a few example rows (keys and value)."""

    expectation: str
    feature: str | None
    count: int = 0
    examples: list[dict[str, object]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready values."""
        return {
            "expectation": self.expectation,
            "feature": self.feature,
            "count": self.count,
            "examples": self.examples,
        }

    def describe(self) -> str:
        """One line: what was violated, how often, an example."""
        where = f"{self.feature}: " if self.feature else ""
        example = f", e.g. {self.examples[0]}" if self.examples else ""
        return f"{where}{self.expectation} violated by {self.count} row(s){example}"


@dataclass(slots=True, kw_only=True)
class ValidationReport:
    """What a job's validation found.

    Attributes:
        table: the feature table.
        policy: ``fail``, ``skip`` or ``warn``.
        rows_checked: rows the expectations were checked on.
        rows_skipped: violating rows not written (policy ``skip``).
        violations: the violated expectations, in declaration order.
    """

    table: str
    policy: str
    rows_checked: int = 0
    rows_skipped: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether no expectation was violated."""
        return not self.violations

    def to_dict(self) -> dict[str, object]:
        """JSON-ready values (as recorded with the job)."""
        return {
            "table": self.table,
            "policy": self.policy,
            "rows_checked": self.rows_checked,
            "rows_skipped": self.rows_skipped,
            "passed": self.passed,
            "violations": [v.to_dict() for v in self.violations],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ValidationReport:
        """Rebuild a report from :meth:`to_dict`'s output."""
        violations = data.get("violations", [])
        assert isinstance(violations, list)
        return cls(
            table=str(data["table"]),
            policy=str(data["policy"]),
            rows_checked=int(data.get("rows_checked", 0)),  # type: ignore[call-overload]
            rows_skipped=int(data.get("rows_skipped", 0)),  # type: ignore[call-overload]
            violations=[
                Violation(
                    expectation=str(v["expectation"]),
                    feature=v.get("feature"),
                    count=int(v["count"]),
                    examples=list(v.get("examples", [])),
                )
                for v in violations
            ],
        )

    def __str__(self) -> str:
        """A readable summary, one line per violation."""
        head = f"validation of {self.table} (policy {self.policy}): {self.rows_checked} rows checked"
        head += f", {self.rows_skipped} skipped" if self.rows_skipped else ""
        if self.passed:
            return head + ", every expectation met"
        return "\n".join([head + ":", *(f"  {v.describe()}" for v in self.violations)])


class ExpectationError(DataError):
    """Ingestion data violated a feature table's expectations (the job wrote nothing).

    Attributes:
        report: the validation report.
    """

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(f"expectations violated, nothing written: {report}")
        self.report = report


def validation_policy(table: FeatureTable, override: str | None) -> str:
    """The policy of a job: ``override`` if given, else the table's; a bad value is a DataError."""
    policy = table.validation_policy if override is None else override
    if policy not in ex.VALIDATION_POLICIES:
        raise DataError(f"validation_policy {policy!r} is not one of {list(ex.VALIDATION_POLICIES)}")
    return policy


def has_expectations(table: FeatureTable) -> bool:
    """Whether ``table`` or one of its features declares an expectation."""
    return bool(table.expect) or any(f.expect for f in table.features)


def has_job_wide(table: FeatureTable) -> bool:
    """Whether an expectation of ``table`` needs every row before it can be decided."""
    return bool(table.expect) or any(not e.per_row for f in table.features for e in f.expect)


class Validator:
    """Checks a job's batches against ``table``'s expectations, accumulating a report."""

    def __init__(
        self, table: FeatureTable, *, policy: str, keys: Sequence[str], features: Sequence[Feature] | None = None
    ) -> None:
        self.table = table
        self.features = table.features if features is None else tuple(features)
        self.table_wide = features is None  # the table's own expectations apply to a job's rows only
        self.keys = tuple(keys)
        self.report = ValidationReport(table=table.name, policy=policy)
        self._found: dict[tuple[str | None, str], Violation] = {}
        self._nulls: dict[str, int] = {}
        self.job_wide_failed = False
        """Whether a job-wide expectation failed (known after :meth:`finish`)."""

    def check(self, batch: pa.RecordBatch) -> pa.Array:
        """Count ``batch``'s violations; return the mask of its rows that violate no per-value expectation."""
        self.report.rows_checked += batch.num_rows
        bad_rows = pa.array([False] * batch.num_rows, type=pa.bool_())
        for feature in self.features:
            if not feature.expect:
                continue
            values = batch.column(batch.schema.get_field_index(feature.name))
            self._nulls[feature.name] = self._nulls.get(feature.name, 0) + values.null_count
            for expectation in feature.expect:
                if not expectation.per_row:
                    continue
                mask = pc.fill_null(_violations(expectation, values), False)
                count = int(pc.sum(mask).as_py() or 0)
                if count:
                    self._record(batch, feature.name, expectation.describe(), mask, count)
                    bad_rows = pc.or_(bad_rows, mask)
        return pc.invert(bad_rows)

    def finish(self) -> ValidationReport:
        """Check the job-wide expectations over every row seen; return the report."""
        rows = self.report.rows_checked
        for feature in self.features:
            for expectation in feature.expect:
                if isinstance(expectation, ex.MaxNullFraction):
                    nulls = self._nulls.get(feature.name, 0)
                    if rows and nulls / rows > expectation.fraction:
                        self.job_wide_failed = True
                        self._add(
                            Violation(
                                expectation=f"{expectation.describe()}: {nulls}/{rows} null",
                                feature=feature.name,
                                count=nulls,
                            )
                        )
        for table_expectation in self.table.expect if self.table_wide else ():
            low, high = table_expectation.min, table_expectation.max
            if (low is not None and rows < low) or (high is not None and rows > high):
                self.job_wide_failed = True
                self._add(
                    Violation(expectation=f"{table_expectation.describe()}: {rows} rows", feature=None, count=rows)
                )
        return self.report

    def _record(self, batch: pa.RecordBatch, feature: str, what: str, mask: pa.Array, count: int) -> None:
        violation = self._found.get((feature, what))
        if violation is None:
            violation = Violation(expectation=what, feature=feature)
            self._add(violation)
            self._found[(feature, what)] = violation
        violation.count += count
        if len(violation.examples) < EXAMPLES:
            wanted = [*self.keys, feature]
            rows = batch.select(wanted).filter(mask).slice(0, EXAMPLES - len(violation.examples)).to_pylist()
            violation.examples.extend({k: _json(v) for k, v in row.items()} for row in rows)

    def _add(self, violation: Violation) -> None:
        self.report.violations.append(violation)


def _violations(expectation: ex.FeatureExpectation, values: pa.Array) -> pa.Array:
    """True where a value violates ``expectation`` (null where undecided: counted as not violating)."""
    if isinstance(expectation, ex.NotNull):
        return pc.is_null(values)
    if isinstance(expectation, ex.Between):
        inside = pa.array([True] * len(values), type=pa.bool_())
        if expectation.min is not None:
            inside = pc.and_(inside, pc.greater_equal(values, expectation.min))
        if expectation.max is not None:
            inside = pc.and_(inside, pc.less_equal(values, expectation.max))
        return pc.invert(inside)  # NaN compares false, so it violates
    if isinstance(expectation, ex.OneOf):
        found = pc.is_in(values, value_set=pa.array(list(expectation.values), type=values.type))
        return pc.and_(pc.is_valid(values), pc.invert(found))
    if isinstance(expectation, ex.Matches):
        return pc.invert(pc.match_substring_regex(values, pattern=expectation.anchored))
    raise TypeError(f"{expectation!r} is not checked per value")


def _json(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def ingest_validated(
    table: FeatureTable,
    *,
    policy: str,
    read: Callable[[], pa.RecordBatchReader],
    write: Callable[[pa.Table], int],
    job: WriteProgress,
) -> ValidationReport:
    """Validate and write the rows ``read()`` streams, by ``policy``; return the report.

    With ``fail``, or with a job-wide expectation, the rows are read twice: once to check (nothing
    written), then to write. Otherwise one pass checks and writes each batch.

    Raises:
        ExpectationError: a violation under ``fail``, or a job-wide one under ``skip``.
    """
    keys = table.entities
    validator = Validator(table, policy=policy, keys=keys)
    if policy == "fail" or has_job_wide(table):
        for batch in read():
            if getattr(job, "is_cancelled", False):
                raise JobCancelledError(f"job {job.id} was cancelled while validating")
            validator.check(batch)
        report = validator.finish()
        if not report.passed and (policy == "fail" or (policy == "skip" and validator.job_wide_failed)):
            raise ExpectationError(report)
        masks = Validator(table, policy=policy, keys=keys)  # the second pass's masks; its counts are discarded
        write_batches(_filtered(read(), masks, report, skip=policy == "skip"), write, job)
        return report
    reader = _filtered(read(), validator, validator.report, skip=policy == "skip")
    write_batches(reader, write, job)
    return validator.finish()


def _filtered(
    reader: pa.RecordBatchReader, validator: Validator, report: ValidationReport, *, skip: bool
) -> pa.RecordBatchReader:
    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            keep = validator.check(batch)
            if skip:
                kept = batch.filter(keep)
                report.rows_skipped += batch.num_rows - kept.num_rows
                batch = kept  # noqa: PLW2901 (the batch written is the filtered one)
            yield batch

    return pa.RecordBatchReader.from_batches(reader.schema, batches())


def validate_training_set(
    reader: pa.RecordBatchReader, checks: Sequence[tuple[FeatureTable, Sequence[str], Mapping[str, str]]]
) -> ValidationReport:
    """Check a retrieved training set against its features' per-value and null-fraction expectations.

    Args:
        reader: the training set's batches.
        checks: per feature table, its requested features' expectations: the table, the key
            columns, and ``{feature name: result column}``.

    Returns:
        One report (policy ``"report"``); a violation names the result column.
    """
    validators = []
    for table, keys, columns in checks:
        features = [f for f in table.features if f.name in columns and f.expect]
        if features:
            validators.append((Validator(table, policy="report", keys=keys, features=features), columns))
    report = ValidationReport(table="training set", policy="report")
    for batch in reader:
        report.rows_checked += batch.num_rows
        for validator, columns in validators:
            keys = list(validator.keys)
            renamed = [*keys, *columns.values()]
            names = [*keys, *columns.keys()]
            validator.check(pa.RecordBatch.from_arrays([batch.column(c) for c in renamed], names=names))
    for validator, columns in validators:
        for violation in validator.finish().violations:
            assert violation.feature is not None
            column = columns[violation.feature]
            violation.examples = [
                {(column if k == violation.feature else k): v for k, v in example.items()}
                for example in violation.examples
            ]
            violation.feature = column
            report.violations.append(violation)
    return report


def violated_by_row(table: FeatureTable, rows: pa.Table) -> dict[int, str]:
    """Rows of ``rows`` violating a per-value expectation: index -> ``"<feature>: <expectation>"`` (the first)."""
    found: dict[int, str] = {}
    for feature in table.features:
        for expectation in feature.expect:
            if not expectation.per_row:
                continue
            values = rows.column(feature.name).combine_chunks()
            mask = pc.fill_null(_violations(expectation, values), False)
            for index in pc.indices_nonzero(mask).to_pylist():
                found.setdefault(index, f"{feature.name}: {expectation.describe()}")
    return found
