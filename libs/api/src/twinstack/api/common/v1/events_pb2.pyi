import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from twinstack.api.common.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChangeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_KIND_UNSPECIFIED: _ClassVar[ChangeKind]
    CHANGE_KIND_CREATED: _ClassVar[ChangeKind]
    CHANGE_KIND_UPDATED: _ClassVar[ChangeKind]
    CHANGE_KIND_DELETED: _ClassVar[ChangeKind]

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    SEVERITY_INFO: _ClassVar[Severity]
    SEVERITY_WARNING: _ClassVar[Severity]
    SEVERITY_CRITICAL: _ClassVar[Severity]
CHANGE_KIND_UNSPECIFIED: ChangeKind
CHANGE_KIND_CREATED: ChangeKind
CHANGE_KIND_UPDATED: ChangeKind
CHANGE_KIND_DELETED: ChangeKind
SEVERITY_UNSPECIFIED: Severity
SEVERITY_INFO: Severity
SEVERITY_WARNING: Severity
SEVERITY_CRITICAL: Severity

class TelemetryBatch(_message.Message):
    __slots__ = ("model_id", "ingest_time", "frame", "connection")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    INGEST_TIME_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    ingest_time: _timestamp_pb2.Timestamp
    frame: _types_pb2.TelemetryFrame
    connection: DeviceConnection
    def __init__(self, model_id: _Optional[str] = ..., ingest_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., frame: _Optional[_Union[_types_pb2.TelemetryFrame, _Mapping]] = ..., connection: _Optional[_Union[DeviceConnection, _Mapping]] = ...) -> None: ...

class DeviceConnection(_message.Message):
    __slots__ = ("change", "time")
    class Change(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CHANGE_UNSPECIFIED: _ClassVar[DeviceConnection.Change]
        CHANGE_BORN: _ClassVar[DeviceConnection.Change]
        CHANGE_DIED: _ClassVar[DeviceConnection.Change]
    CHANGE_UNSPECIFIED: DeviceConnection.Change
    CHANGE_BORN: DeviceConnection.Change
    CHANGE_DIED: DeviceConnection.Change
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    change: DeviceConnection.Change
    time: _timestamp_pb2.Timestamp
    def __init__(self, change: _Optional[_Union[DeviceConnection.Change, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TwinChangedEvent(_message.Message):
    __slots__ = ("twin_id", "model_id", "kind", "revision", "time", "changed_properties", "previous_model_id")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    CHANGED_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    model_id: str
    kind: ChangeKind
    revision: int
    time: _timestamp_pb2.Timestamp
    changed_properties: _containers.RepeatedScalarFieldContainer[str]
    previous_model_id: str
    def __init__(self, twin_id: _Optional[str] = ..., model_id: _Optional[str] = ..., kind: _Optional[_Union[ChangeKind, str]] = ..., revision: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., changed_properties: _Optional[_Iterable[str]] = ..., previous_model_id: _Optional[str] = ...) -> None: ...

class ModelChangedEvent(_message.Message):
    __slots__ = ("model_id", "kind", "revision", "time")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    kind: ChangeKind
    revision: int
    time: _timestamp_pb2.Timestamp
    def __init__(self, model_id: _Optional[str] = ..., kind: _Optional[_Union[ChangeKind, str]] = ..., revision: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RelationshipChangedEvent(_message.Message):
    __slots__ = ("relationship_id", "source_id", "name", "target_id", "kind", "revision", "time")
    RELATIONSHIP_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    relationship_id: str
    source_id: str
    name: str
    target_id: str
    kind: ChangeKind
    revision: int
    time: _timestamp_pb2.Timestamp
    def __init__(self, relationship_id: _Optional[str] = ..., source_id: _Optional[str] = ..., name: _Optional[str] = ..., target_id: _Optional[str] = ..., kind: _Optional[_Union[ChangeKind, str]] = ..., revision: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AlertEvent(_message.Message):
    __slots__ = ("twin_id", "rule_id", "field", "severity", "active", "value", "time", "message", "state_revision")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    rule_id: str
    field: str
    severity: Severity
    active: bool
    value: float
    time: _timestamp_pb2.Timestamp
    message: str
    state_revision: int
    def __init__(self, twin_id: _Optional[str] = ..., rule_id: _Optional[str] = ..., field: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ..., active: _Optional[bool] = ..., value: _Optional[float] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., state_revision: _Optional[int] = ...) -> None: ...

class DesiredChangedEvent(_message.Message):
    __slots__ = ("twin_id", "desired", "delta_fields", "state_revision", "time")
    class DesiredEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _types_pb2.Value
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ...) -> None: ...
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELDS_FIELD_NUMBER: _ClassVar[int]
    STATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    desired: _containers.MessageMap[str, _types_pb2.Value]
    delta_fields: _containers.RepeatedScalarFieldContainer[str]
    state_revision: int
    time: _timestamp_pb2.Timestamp
    def __init__(self, twin_id: _Optional[str] = ..., desired: _Optional[_Mapping[str, _types_pb2.Value]] = ..., delta_fields: _Optional[_Iterable[str]] = ..., state_revision: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PredictedAlertEvent(_message.Message):
    __slots__ = ("twin_id", "model_id", "condition", "severity", "message", "probability", "time_to_failure_p50_s", "horizon_s", "forecast_id", "start_time", "state_revision")
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    TIME_TO_FAILURE_P50_S_FIELD_NUMBER: _ClassVar[int]
    HORIZON_S_FIELD_NUMBER: _ClassVar[int]
    FORECAST_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    STATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    model_id: str
    condition: str
    severity: Severity
    message: str
    probability: float
    time_to_failure_p50_s: float
    horizon_s: float
    forecast_id: str
    start_time: _timestamp_pb2.Timestamp
    state_revision: int
    def __init__(self, twin_id: _Optional[str] = ..., model_id: _Optional[str] = ..., condition: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ..., message: _Optional[str] = ..., probability: _Optional[float] = ..., time_to_failure_p50_s: _Optional[float] = ..., horizon_s: _Optional[float] = ..., forecast_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state_revision: _Optional[int] = ...) -> None: ...
