"""On-demand features: features computed at request time from other features and request data.

An :class:`OnDemandFeatures` names a function by its **import path**, ``"package.module:function"``,
never by code: the registry stores the path (plus the version and source digest recorded when it
was applied), and every process that computes the features (a training job, a serving replica)
imports the function from its own installed modules. No code is ever executed from the registry.

The function runs on a batch of rows, the same code offline (over the training set, batch by
batch) and online (over a request's rows). Its input holds one column per input feature, named
like its result column (``<table>__<feature>``), and one per request field (by name); it returns
one column per declared feature (by the feature's name). ``mode`` chooses the batch type:

* ``"pandas"`` (default): a ``pandas.DataFrame`` in, a ``DataFrame`` (or a mapping of columns) out;
* ``"python"``: a ``dict`` of column name to list of plain Python values in, the same out
  (no pandas on the request path: the fastest online).

Examples:
    >>> odf = OnDemandFeatures(
    ...     name="fare_ratio",
    ...     inputs=["trips:fare_mean"],
    ...     request_schema={"fare": ValueType.DOUBLE},
    ...     features=[Feature("ratio", ValueType.DOUBLE)],
    ...     function="my_features.fares:ratio",
    ... )
    >>> odf.function
    'my_features.fares:ratio'
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from provender.definitions._validate import check_identifier, freeze_str_mapping, reduce_definition
from provender.definitions.feature_table import Feature
from provender.definitions.refs import FeatureRef, result_column
from provender.definitions.types import ValueType
from provender.errors import DefinitionError, FeatureRefError

MODES: Final = ("pandas", "python")
"""The batch types a function can take: a pandas DataFrame, or a dict of plain Python lists."""

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_ATTRIBUTE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

__all__ = ["MODES", "OnDemandFeatures", "function_path"]


def function_path(function: object, *, what: str = "OnDemandFeatures") -> str:
    """Return the import path ``"package.module:function"`` of ``function`` (a path or a callable).

    A callable must be defined at the top level of an importable module (not ``__main__``, not a
    lambda or a nested function), so that another process can import it by that path.

    Raises:
        DefinitionError: the path is malformed, or the callable cannot be imported by path.
    """
    if isinstance(function, str):
        module, sep, name = function.partition(":")
        if not sep or not _MODULE.match(module) or not _ATTRIBUTE.match(name):
            raise DefinitionError(
                what, "function", f"{function!r} is not an import path like 'package.module:function'"
            )
        return function
    if not callable(function):
        raise DefinitionError(what, "function", f"must be an import path or a function, got {type(function).__name__}")
    owner = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", "")
    if not isinstance(owner, str) or owner == "__main__" or not _ATTRIBUTE.match(str(qualname)):
        raise DefinitionError(
            what,
            "function",
            f"{qualname or function!r} of module {owner!r} cannot be imported by path by another process; "
            "define it at the top level of an installed module and pass it (or 'package.module:function')",
        )
    if owner.startswith("_provender_definitions_"):
        raise DefinitionError(
            what,
            "function",
            f"{qualname} is defined in a definition file, which other processes (serving) cannot import; "
            "move it into an installed module and pass it (or 'package.module:function')",
        )
    return f"{owner}:{qualname}"


@dataclass(frozen=True, slots=True, kw_only=True)
class OnDemandFeatures:
    """Features computed by a function at request time, from input features and request data.

    Args:
        name: identifier; its features' refs are ``<name>:<feature>``, their columns ``<name>__<feature>``.
        inputs: refs of feature-table features, ``"<table>:<feature>"`` (bare table refs and other
            on-demand features are not accepted); the function sees them as ``<table>__<feature>``.
        request_schema: request fields and their types: taken online from the entity rows of the
            request, offline from the entity source's columns of the same name.
        features: what the function returns, with unique names; its output is converted to
            these types (a value that does not convert is an error naming the feature).
        function: ``"package.module:function"``, or a top-level function of an importable module
            (stored as its path).
        mode: ``"pandas"`` (DataFrame in and out) or ``"python"`` (dict of lists in and out).
        description: free text.
        labels: free-form string tags.
        function_version: recorded by ``apply``: the version of the distribution that provides
            the function's module (``"name==version"``), or None if it is not installed as one.
        function_digest: recorded by ``apply``: a digest of the function's source code, or None.
    """

    name: str
    inputs: Sequence[str]
    features: Sequence[Feature]
    function: str
    request_schema: Mapping[str, ValueType] = field(default_factory=lambda: MappingProxyType({}))
    mode: str = "pandas"
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    function_version: str | None = None
    function_digest: str | None = None

    __reduce__ = reduce_definition

    def __post_init__(self) -> None:
        what = f"OnDemandFeatures {self.name!r}"
        check_identifier(what, "name", self.name)
        object.__setattr__(self, "function", function_path(self.function, what=what))
        if self.mode not in MODES:
            raise DefinitionError(what, "mode", f"{self.mode!r} is not one of {list(MODES)}")
        self._check_inputs(what)
        self._check_request_schema(what)
        self._check_features(what)
        if not isinstance(self.description, str):
            raise DefinitionError(what, "description", "must be a string")
        for name in ("function_version", "function_digest"):
            if not isinstance(getattr(self, name), str | None):
                raise DefinitionError(what, name, "must be a string or None")
        labels = freeze_str_mapping(what, "labels", self.labels)
        object.__setattr__(self, "labels", MappingProxyType(dict(labels)))

    def _check_inputs(self, what: str) -> None:
        if isinstance(self.inputs, str) or not isinstance(self.inputs, Sequence):
            raise DefinitionError(what, "inputs", "must be a list of feature refs like ['table:feature']")
        inputs = tuple(self.inputs)
        for ref in inputs:
            try:
                parsed = FeatureRef.parse(ref)
            except FeatureRefError as exc:
                raise DefinitionError(what, "inputs", str(exc)) from None
            if parsed.feature is None:
                raise DefinitionError(
                    what, "inputs", f"{ref!r} is a bare table ref; name each feature, 'table:feature'"
                )
        if len(set(inputs)) != len(inputs):
            raise DefinitionError(what, "inputs", f"lists a ref twice: {list(inputs)}")
        object.__setattr__(self, "inputs", inputs)

    def _check_request_schema(self, what: str) -> None:
        if not isinstance(self.request_schema, Mapping):
            raise DefinitionError(what, "request_schema", "must map request field names to ValueTypes")
        schema: dict[str, ValueType] = {}
        for name, value_type in self.request_schema.items():
            check_identifier(what, "request_schema", name)
            try:
                schema[name] = ValueType(value_type)
            except ValueError:
                raise DefinitionError(
                    what, "request_schema", f"field {name!r}: {value_type!r} is not a ValueType"
                ) from None
        if not self.inputs and not schema:
            raise DefinitionError(what, "inputs", "has no inputs and no request_schema: the function would see nothing")
        object.__setattr__(self, "request_schema", MappingProxyType(schema))

    def _check_features(self, what: str) -> None:
        if isinstance(self.features, str) or not isinstance(self.features, Sequence):
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
            if feature.expect:
                raise DefinitionError(what, "features", f"feature {feature.name!r}: expectations are not supported")
            seen.add(feature.name)
        object.__setattr__(self, "features", features)

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

    @property
    def input_columns(self) -> tuple[str, ...]:
        """The input features' columns as the function sees them (``<table>__<feature>``), in order."""
        return tuple(FeatureRef.parse(ref).column for ref in self.inputs)

    def output_column(self, feature: str) -> str:
        """The result column of one of its features: ``<name>__<feature>``."""
        return result_column(self.name, feature)
