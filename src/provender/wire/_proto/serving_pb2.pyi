# Generated from protos/provender/serving/v1/serving.proto by `python -m provender.wire._proto.regenerate`. Do not edit.
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeatureStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEATURE_STATUS_UNSPECIFIED: _ClassVar[FeatureStatus]
    FEATURE_STATUS_PRESENT: _ClassVar[FeatureStatus]
    FEATURE_STATUS_NOT_FOUND: _ClassVar[FeatureStatus]
    FEATURE_STATUS_OUTSIDE_MAX_AGE: _ClassVar[FeatureStatus]
    FEATURE_STATUS_NULL_VALUE: _ClassVar[FeatureStatus]
    FEATURE_STATUS_CORRUPT: _ClassVar[FeatureStatus]
FEATURE_STATUS_UNSPECIFIED: FeatureStatus
FEATURE_STATUS_PRESENT: FeatureStatus
FEATURE_STATUS_NOT_FOUND: FeatureStatus
FEATURE_STATUS_OUTSIDE_MAX_AGE: FeatureStatus
FEATURE_STATUS_NULL_VALUE: FeatureStatus
FEATURE_STATUS_CORRUPT: FeatureStatus

class Column(_message.Message):
    __slots__ = ("name", "bool_values", "int64_values", "double_values", "string_values", "bytes_values", "unix_timestamp_us_values", "list_values", "null_rows", "value_type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUES_FIELD_NUMBER: _ClassVar[int]
    INT64_VALUES_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUES_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUES_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUES_FIELD_NUMBER: _ClassVar[int]
    UNIX_TIMESTAMP_US_VALUES_FIELD_NUMBER: _ClassVar[int]
    LIST_VALUES_FIELD_NUMBER: _ClassVar[int]
    NULL_ROWS_FIELD_NUMBER: _ClassVar[int]
    VALUE_TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    bool_values: BoolValues
    int64_values: Int64Values
    double_values: DoubleValues
    string_values: StringValues
    bytes_values: BytesValues
    unix_timestamp_us_values: Int64Values
    list_values: ListValues
    null_rows: _containers.RepeatedScalarFieldContainer[int]
    value_type: str
    def __init__(self, name: _Optional[str] = ..., bool_values: _Optional[_Union[BoolValues, _Mapping]] = ..., int64_values: _Optional[_Union[Int64Values, _Mapping]] = ..., double_values: _Optional[_Union[DoubleValues, _Mapping]] = ..., string_values: _Optional[_Union[StringValues, _Mapping]] = ..., bytes_values: _Optional[_Union[BytesValues, _Mapping]] = ..., unix_timestamp_us_values: _Optional[_Union[Int64Values, _Mapping]] = ..., list_values: _Optional[_Union[ListValues, _Mapping]] = ..., null_rows: _Optional[_Iterable[int]] = ..., value_type: _Optional[str] = ...) -> None: ...

class BoolValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, values: _Optional[_Iterable[bool]] = ...) -> None: ...

class Int64Values(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class DoubleValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class StringValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class BytesValues(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, values: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ListValues(_message.Message):
    __slots__ = ("lists",)
    LISTS_FIELD_NUMBER: _ClassVar[int]
    lists: _containers.RepeatedCompositeFieldContainer[Column]
    def __init__(self, lists: _Optional[_Iterable[_Union[Column, _Mapping]]] = ...) -> None: ...

class StatusColumn(_message.Message):
    __slots__ = ("name", "statuses")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    name: str
    statuses: _containers.RepeatedScalarFieldContainer[FeatureStatus]
    def __init__(self, name: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[FeatureStatus, str]]] = ...) -> None: ...

class GetOnlineFeaturesRequest(_message.Message):
    __slots__ = ("features", "entities", "project", "include_statuses")
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_STATUSES_FIELD_NUMBER: _ClassVar[int]
    features: _containers.RepeatedScalarFieldContainer[str]
    entities: _containers.RepeatedCompositeFieldContainer[Column]
    project: str
    include_statuses: bool
    def __init__(self, features: _Optional[_Iterable[str]] = ..., entities: _Optional[_Iterable[_Union[Column, _Mapping]]] = ..., project: _Optional[str] = ..., include_statuses: _Optional[bool] = ...) -> None: ...

class GetOnlineFeaturesResponse(_message.Message):
    __slots__ = ("columns", "statuses")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    statuses: _containers.RepeatedCompositeFieldContainer[StatusColumn]
    def __init__(self, columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ..., statuses: _Optional[_Iterable[_Union[StatusColumn, _Mapping]]] = ...) -> None: ...
