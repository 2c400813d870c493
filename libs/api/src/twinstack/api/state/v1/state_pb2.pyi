import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from twinstack.api.common.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReportedField(_message.Message):
    __slots__ = ("value", "time")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    value: _types_pb2.Value
    time: _timestamp_pb2.Timestamp
    def __init__(self, value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TwinState(_message.Message):
    __slots__ = ("twin_id", "reported", "last_seen_time", "revision")
    class ReportedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ReportedField
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ReportedField, _Mapping]] = ...) -> None: ...
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    REPORTED_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    reported: _containers.MessageMap[str, ReportedField]
    last_seen_time: _timestamp_pb2.Timestamp
    revision: int
    def __init__(self, twin_id: _Optional[str] = ..., reported: _Optional[_Mapping[str, ReportedField]] = ..., last_seen_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class GetStateRequest(_message.Message):
    __slots__ = ("twin_id",)
    TWIN_ID_FIELD_NUMBER: _ClassVar[int]
    twin_id: str
    def __init__(self, twin_id: _Optional[str] = ...) -> None: ...

class GetStateResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: TwinState
    def __init__(self, state: _Optional[_Union[TwinState, _Mapping]] = ...) -> None: ...
