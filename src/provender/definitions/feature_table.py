"""Features and feature tables: named, typed values keyed by entities, with their sources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType

from provender.definitions import expect as _expect
from provender.definitions._validate import check_identifier, freeze_str_mapping, reduce_definition
from provender.definitions.aggregation import Aggregation
from provender.definitions.source import BatchSource, DeltaSource, FileSource, KafkaSource, SqlSource
from provender.definitions.types import ValueType
from provender.errors import DefinitionError


@dataclass(frozen=True, slots=True)
class Feature:
    """A named, typed value of a feature table.

    Examples:
        >>> Feature("conv_rate", ValueType.FLOAT)
        Feature(name='conv_rate', value_type=<ValueType.FLOAT: 'FLOAT'>, description='')
    """

    name: str
    value_type: ValueType
    description: str = ""
    expect: Sequence[_expect.FeatureExpectation] = field(default=(), repr=False)
    """What the values must satisfy (:mod:`provender.definitions.expect`), enforced at ingestion."""

    def __post_init__(self) -> None:
        what = f"Feature {self.name!r}"
        check_identifier(what, "name", self.name)
        try:
            object.__setattr__(self, "value_type", ValueType(self.value_type))
        except ValueError:
            raise DefinitionError(
                what, "value_type", f"{self.value_type!r} is not a ValueType; use one of {list(ValueType)}"
            ) from None
        if not isinstance(self.description, str):
            raise DefinitionError(what, "description", "must be a string")
        if isinstance(self.expect, str) or not isinstance(self.expect, Sequence):
            raise DefinitionError(what, "expect", "must be a list of expectations, e.g. [pv.expect.not_null()]")
        for item in self.expect:
            if isinstance(item, _expect.RowCountBetween):
                raise DefinitionError(what, "expect", "row_count_between is a feature table's expectation")
            if not isinstance(item, _expect.FeatureExpectation):
                raise DefinitionError(what, "expect", f"{item!r} is not an expectation (see pv.expect)")
            problem = item.problem(self.value_type)
            if problem is not None:
                raise DefinitionError(what, "expect", problem)
        object.__setattr__(self, "expect", tuple(self.expect))


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureTable:
    """Features that share entities and sources, such as ``driver_statistics``.

    Args:
        name: identifier; result columns are named ``<name>__<feature>``.
        entities: names of one or more registered entities (several make a composite key).
        features: the features, with unique names.
        batch_source: where historical rows live (files). At least one source is required.
        stream_source: optional Kafka topic with fresh rows.
        max_age: values older than this (relative to the lookup time) count as missing;
            ``None`` means they never expire.
        labels: free-form string tags.
        expect: the table's expectations over a job's rows (``pv.expect.row_count_between``).
        validation_policy: what ingestion does with rows violating an expectation: ``"fail"``
            (the job fails, nothing written), ``"skip"`` (violating rows not written) or
            ``"warn"`` (everything written); a job may override it.
        aggregations: windowed aggregations over the batch source's events
            (:mod:`provender.definitions.aggregation`); each is a feature of the table named by
            its ``name``, appended to ``features`` after the declared ones. Their inputs are
            declared features; a table with aggregations needs a ``batch_source``.
    """

    name: str
    entities: Sequence[str]
    features: Sequence[Feature]
    batch_source: BatchSource | None = None
    stream_source: KafkaSource | None = None
    max_age: timedelta | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    expect: Sequence[_expect.TableExpectation] = ()
    validation_policy: str = "fail"
    aggregations: Sequence[Aggregation] = ()

    __reduce__ = reduce_definition

    def __post_init__(self) -> None:
        what = f"FeatureTable {self.name!r}"
        check_identifier(what, "name", self.name)
        self._check_entities(what)
        self._check_features(what)
        self._add_aggregations(what)
        if self.batch_source is None and self.stream_source is None:
            raise DefinitionError(what, "batch_source", "a feature table needs a batch_source or a stream_source")
        if self.batch_source is not None and not isinstance(self.batch_source, FileSource | DeltaSource | SqlSource):
            raise DefinitionError(
                what,
                "batch_source",
                f"must be a FileSource, a DeltaSource or a SqlSource, got {type(self.batch_source).__name__}",
            )
        if self.stream_source is not None and not isinstance(self.stream_source, KafkaSource):
            raise DefinitionError(
                what, "stream_source", f"must be a KafkaSource, got {type(self.stream_source).__name__}"
            )
        if self.max_age is not None and (not isinstance(self.max_age, timedelta) or self.max_age <= timedelta(0)):
            raise DefinitionError(what, "max_age", f"must be a positive timedelta or None, got {self.max_age!r}")
        self._check_expectations(what)
        labels = freeze_str_mapping(what, "labels", self.labels)
        object.__setattr__(self, "labels", MappingProxyType(dict(labels)))

    def _check_entities(self, what: str) -> None:
        if isinstance(self.entities, str) or not isinstance(self.entities, Sequence):
            raise DefinitionError(what, "entities", "must be a list of entity names, e.g. ['driver_id']")
        entities = tuple(self.entities)
        if not entities:
            raise DefinitionError(what, "entities", "lists no entities; add at least one entity name")
        for name in entities:
            check_identifier(what, "entities", name)
        if len(set(entities)) != len(entities):
            raise DefinitionError(what, "entities", f"lists an entity twice: {list(entities)}")
        object.__setattr__(self, "entities", entities)

    def _check_features(self, what: str) -> None:
        if not isinstance(self.features, Sequence) or isinstance(self.features, str):
            raise DefinitionError(what, "features", "must be a list of Feature objects")
        features = tuple(self.features)
        if not features:
            raise DefinitionError(what, "features", "lists no features; add at least one Feature")
        seen: set[str] = set()
        for feature in features:
            if not isinstance(feature, Feature):
                raise DefinitionError(what, "features", f"must hold Feature objects, got {type(feature).__name__}")
            if feature.name in seen:
                raise DefinitionError(what, "features", f"feature name {feature.name!r} appears twice")
            if feature.name in self.entities:
                raise DefinitionError(what, "features", f"feature {feature.name!r} has the name of an entity")
            seen.add(feature.name)
        object.__setattr__(self, "features", features)

    def _check_expectations(self, what: str) -> None:
        if isinstance(self.expect, str) or not isinstance(self.expect, Sequence):
            raise DefinitionError(
                what, "expect", "must be a list of expectations, e.g. [pv.expect.row_count_between(1)]"
            )
        for item in self.expect:
            if not isinstance(item, _expect.RowCountBetween):
                raise DefinitionError(
                    what, "expect", f"{item!r} is not a table expectation; declare value expectations on the Feature"
                )
            problem = item.problem()
            if problem is not None:
                raise DefinitionError(what, "expect", problem)
        object.__setattr__(self, "expect", tuple(self.expect))
        if self.validation_policy not in _expect.VALIDATION_POLICIES:
            raise DefinitionError(
                what,
                "validation_policy",
                f"{self.validation_policy!r} is not one of {list(_expect.VALIDATION_POLICIES)}",
            )

    def _add_aggregations(self, what: str) -> None:
        if isinstance(self.aggregations, str) or not isinstance(self.aggregations, Sequence):
            raise DefinitionError(what, "aggregations", "must be a list of Aggregation objects")
        aggregations = tuple(self.aggregations)
        if aggregations and self.batch_source is None:
            raise DefinitionError(what, "aggregations", "need a batch_source: aggregates are computed from its events")
        derived = {a.name for a in aggregations if isinstance(a, Aggregation)}
        # A feature equal to an aggregation's own (as dataclasses.replace passes back) is not declared.
        declared = {f.name: f for f in self.features if f.name not in derived}
        features = list(declared.values())
        for aggregation in aggregations:
            if not isinstance(aggregation, Aggregation):
                raise DefinitionError(
                    what, "aggregations", f"must hold Aggregation objects, got {type(aggregation).__name__}"
                )
            source = declared.get(aggregation.column)
            if source is None and aggregation.column in derived:
                raise DefinitionError(
                    what,
                    "aggregations",
                    f"aggregation {aggregation.name!r} reads column {aggregation.column!r}, which is also the "
                    "name of an aggregation of the table; name each aggregation apart from the columns "
                    f"aggregations read (e.g. '{aggregation.column}_{aggregation.function}')",
                )
            if source is None:
                raise DefinitionError(
                    what,
                    "aggregations",
                    f"aggregation {aggregation.name!r} reads column {aggregation.column!r}, which is not a "
                    f"declared feature; declared: {', '.join(declared) or '(none)'}",
                )
            if aggregation.name in {f.name for f in features} or aggregation.name in self.entities:
                raise DefinitionError(what, "aggregations", f"name {aggregation.name!r} is already used")
            output = aggregation.output_type(source.value_type)
            features.append(Feature(aggregation.name, output, aggregation.description))
        for feature in self.features:
            if feature.name in derived and feature not in features:
                raise DefinitionError(
                    what, "features", f"feature {feature.name!r} has the name of an aggregation of the table"
                )
        object.__setattr__(self, "aggregations", aggregations)
        object.__setattr__(self, "features", tuple(features))

    @property
    def source_features(self) -> tuple[Feature, ...]:
        """The features read from the source as they are (the declared ones, not aggregations)."""
        derived = {a.name for a in self.aggregations}
        return tuple(f for f in self.features if f.name not in derived)

    def get_aggregation(self, name: str) -> Aggregation | None:
        """Return the aggregation whose feature is called ``name``, or None."""
        for aggregation in self.aggregations:
            if aggregation.name == name:
                return aggregation
        return None

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The features' names, in declaration order."""
        return tuple(f.name for f in self.features)

    def get_feature(self, name: str) -> Feature | None:
        """Return the feature called ``name``, or None."""
        for feature in self.features:
            if feature.name == name:
                return feature
        return None
